"""Scale-out: throughput of 1, 2 and 4 worker processes in one group on one broker.

    .venv/bin/python bench/scale_bench.py [--events 12000] [--users 2000] [--partitions 8]
        [--workers 1,2,4] [--records batch]

For each worker count k: a fresh topic set and group, k `relayguard worker` processes started
and all ready (partitions assigned, recovery done), then N events (batch records as relays with
`batch_records=True` send them, or single records) produced; the rate is N / (time from the
first event produced until the workers' /metrics together count all N). Per core figures
divide by min(k, CPUs); the host's load average is printed with each run (the host is shared,
so the other tenants' load is part of every figure). Timing figures only; nothing is pass/fail.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import worker_bench
from bench_keys import worker_key_env

from relayguard.foundation.settings import Settings, Topics
from relayguard.foundation.topics import ensure_topics, standard_topics
from relayguard.roof.broker.fetch import stderr_progress
from relayguard.roof.broker.server import LocalBroker
from relayguard.roof.demo_geodb import write_city_db
from relayguard.roof.worker_process import WorkerProcess
from relayguard.stream.records import Event


def all_ready(workers: list[WorkerProcess], settle: float = 3.0, timeout: float = 240) -> None:
    """Every worker answers /ready 200 for `settle` seconds in a row (the group is stable)."""
    deadline = time.monotonic() + timeout
    since: float | None = None
    while time.monotonic() < deadline:
        if all(w.status("/ready") == 200 for w in workers):
            since = since or time.monotonic()
            if time.monotonic() - since >= settle:
                return
        else:
            since = None
        time.sleep(0.3)
    raise RuntimeError("workers never all ready together")


def run(work: Path, bs: str, k: int, partitions: int, events: list[Event],
        batch: int, city: Path, keys: dict[str, str]) -> float:
    prefix = f"k{k}."
    settings = Settings(bootstrap_servers=bs, partitions=partitions, topics=Topics(prefix=prefix))
    asyncio.run(ensure_topics(bs, standard_topics(settings)))
    env = {"RELAYGUARD_BOOTSTRAP_SERVERS": bs, **keys, "RELAYGUARD_APP_ID": f"scale-{k}",
           "RELAYGUARD_TOPICS__PREFIX": prefix, "RELAYGUARD_PARTITIONS": str(partitions),
           "RELAYGUARD_GEOIP_CITY_DB": str(city),
           # short group timeouts: joins settle in seconds
           "RELAYGUARD_SESSION_TIMEOUT_SECONDS": "6",
           "RELAYGUARD_HEARTBEAT_INTERVAL_SECONDS": "1"}
    workers = [WorkerProcess({**env, "RELAYGUARD_DATA_DIR": str(work / f"k{k}-{i}")},
                             work / f"k{k}-{i}.log") for i in range(k)]
    try:
        for w in workers:
            w.start_process()
        all_ready(workers)
        start = time.perf_counter()
        asyncio.run(worker_bench.produce(bs, settings.topics.events, events, batch))
        while sum(worker_bench.processed(w) for w in workers) < len(events):
            time.sleep(0.5)
        return len(events) / (time.perf_counter() - start)
    finally:
        for w in workers:
            w.stop()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--events", type=int, default=12000)
    ap.add_argument("--users", type=int, default=2000)
    ap.add_argument("--partitions", type=int, default=8)
    ap.add_argument("--workers", default="1,2,4")
    ap.add_argument("--records", choices=("batch", "single"), default="batch")
    ap.add_argument("--batch", type=int, default=256)
    args = ap.parse_args()
    worker_bench.PARTITIONS = args.partitions  # the batch grouping must match the topic
    counts = [int(k) for k in args.workers.split(",")]
    cpus = os.cpu_count() or 1
    work = Path(tempfile.mkdtemp(prefix="relayguard-scale-"))
    broker = LocalBroker(data_dir=work / "broker", progress=stderr_progress)
    broker.start()
    try:
        city = write_city_db(work / "c.mmdb")
        keys = worker_key_env()
        events = worker_bench.traffic(args.events, args.users,
                                      time.time() - args.events * 0.01)
        batch = args.batch if args.records == "batch" else 0
        rows = []
        for k in counts:
            load = os.getloadavg()[0]
            print(f"{k} worker(s) ...", file=sys.stderr)
            rows.append((k, run(work, broker.bootstrap, k, args.partitions, events, batch,
                                city, keys), load))
        one = rows[0][1]
        print(f"{args.events} events, {args.users} users, {args.records} records, "
              f"{args.partitions} partitions, {cpus} CPUs")
        for k, rate, load in rows:
            print(f"workers {k}: {rate:8,.0f} events/s, x{rate / one:4.2f} of {counts[0]}, "
                  f"{rate / min(k, cpus):8,.0f} events/s per core in use, "
                  f"{rate / k:8,.0f} per worker (load average before: {load:.1f})")
    finally:
        broker.stop()


if __name__ == "__main__":
    main()
