"""Throughput and lock latency of the real worker on a real local broker, against baselines.

    .venv/bin/python bench/worker_bench.py [--events 20000] [--users 2000] [--bursts 40]
        [--phases single:16384:0.005,batch:16384:0.005,batch:524288:0.02] [--batch 256]
        [--profile FILE.txt]

The worker signs its lock commands with a key pair made for this run (RELAYGUARD_SIGNING_KEY /
RELAYGUARD_VERIFY_KEYS in its environment); --profile runs py-spy (pip install py-spy) on the
last phase's worker while it works through the events and writes the collapsed stacks to FILE.

The same N events are produced twice: as single-event records (topics "s.*") and as batch
records the way relays with `batch_records=True` send them (topics "b.*": every --batch events
in order grouped by the partition their user hashes to, one record per partition).

1. Baselines: a bare aiokafka consumer reading and JSON-decoding the N events, once from the
   single records, once from the batch records (every inner event decoded).
2. Worker phases (--phases, each records:producer batch bytes:producer linger s): a fresh
   `relayguard worker` (own group and tables) on that topic set, from ready until its /metrics
   counts all N events (decode, validate, dedupe, enrich, every detector, table + changelog,
   outputs). Comparing phases gives the effect of batch records and of the producer sizing.
3. Core: the same N events through the pure core (roof.replay.Replayer, user and IP keys, every
   detector) in this process, no Kafka: the ceiling the worker's shell takes a share of.
4. Lock latency, against the last phase's worker, with batch records: for each of B spammers,
   time from handing its 11-message burst to a running producer to the lock command being
   readable on the lock topic; idle, then with ordinary background traffic at --background
   (0.5) of the measured worker rate. p50 / p90 / p99 / max.
Timing figures only; nothing here is pass/fail.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import random
import re
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import subprocess

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from bench_keys import worker_key_env

from relayguard.foundation import gc_tuning
from relayguard.foundation.core_params import build_core_params
from relayguard.foundation.settings import Settings, Topics
from relayguard.foundation.topics import ensure_topics, standard_topics
from relayguard.roof.broker.fetch import stderr_progress
from relayguard.roof.broker.server import LocalBroker
from relayguard.roof.demo_geodb import write_city_db
from relayguard.roof.replay import Replayer
from relayguard.roof.worker_process import WorkerProcess
from relayguard.stream import batch_codec, codec
from relayguard.stream.records import Event, LoginEvent, SendEvent

IPS = ["192.0.2.10", "192.0.2.130", "198.51.100.7", "203.0.113.9", "2001:db8::5"]
PARTITIONS = 4


def traffic(n: int, n_users: int, t0: float, seed: int = 7) -> list[Event]:
    """Users at home (one IP each, as real clients are), 30% logins (10% of them failed)."""
    rnd = random.Random(seed)
    out: list[Event] = []
    for i in range(n):
        u = rnd.randrange(n_users)
        user, ip = f"u{u}@example.com", IPS[u % len(IPS)]
        t = t0 + i * 0.01
        if rnd.random() < 0.3:
            out.append(LoginEvent(str(uuid.uuid4()), t, "bench", user, ip, rnd.random() > 0.1,
                                  "TLSv1.3", "PLAIN"))
        else:
            out.append(SendEvent(str(uuid.uuid4()), t, "bench", user, ip, user, 1, 2000))
    return out


def keyed(events: list[Event]) -> list[tuple[bytes, bytes]]:
    return [((e.user or e.client_ip).encode(), codec.encode_event(e)) for e in events]


async def send_events(producer: AIOKafkaProducer, topic: str, events: list[Event],
                      batch: int) -> int:
    """Hand events to `producer` as single records (batch 0) or as the relay's batch records:
    every `batch` events grouped by partition (relay/producer.py). Returns records sent."""
    items = keyed(events)
    if not batch:
        for key, value in items:
            await producer.send(topic, value, key=key)
        return len(items)
    records = 0
    for start in range(0, len(items), batch):
        groups = batch_codec.group_by_partition(items[start:start + batch], PARTITIONS)
        for part, group in groups.items():
            for _, record in batch_codec.pack(v for _, v in group):
                await producer.send(topic, record, partition=part)
                records += 1
    return records


def new_producer(bootstrap: str, linger_ms: int = 20) -> AIOKafkaProducer:
    return AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=linger_ms,
                            max_batch_size=512 * 1024)


async def produce(bootstrap: str, topic: str, events: list[Event], batch: int) -> int:
    producer = new_producer(bootstrap)
    await producer.start()
    try:
        n = await send_events(producer, topic, events, batch)
        await producer.flush()
        return n
    finally:
        await producer.stop()


async def baseline(bootstrap: str, topic: str, n: int) -> float:
    """Bare consume + decode of n events (single records or batch records)."""
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=None,
                                auto_offset_reset="earliest")
    await consumer.start()
    start, seen = time.perf_counter(), 0
    try:
        while seen < n:
            for records in (await consumer.getmany(timeout_ms=500, max_records=5000)).values():
                for r in records:
                    data = orjson.loads(r.value)
                    seen += len(data["events"]) if data.get("type") == "event_batch" else 1
        return n / (time.perf_counter() - start)
    finally:
        await consumer.stop()


def processed(worker: WorkerProcess) -> int:
    text = worker.get("/metrics") or ""
    return sum(int(v) for v in re.findall(r'^relayguard_worker_events_total\{[^}]*\} (\d+)$',
                                          text, re.M))


BURST_TIMEOUT = 30.0  # seconds a burst's lock is waited for
FLUSH_SECONDS = 0.01  # --flush-ms: how often the background's "relay" hands events over


async def background(producer: AIOKafkaProducer, topic: str, rate: float, batch: int,
                     stop: asyncio.Event) -> int:
    """Ordinary traffic at `rate` events/s (new users, nothing to lock) until `stop`, handed
    over every FLUSH_SECONDS (a relay's sender hands over what accumulated meanwhile)."""
    sent, start, seed = 0, time.perf_counter(), 100
    while not stop.is_set():
        due = int((time.perf_counter() - start) * rate)
        if due > sent:
            seed += 1
            await send_events(producer, topic, traffic(due - sent, 5000, time.time(), seed),
                              batch)
            sent = due
        await asyncio.sleep(FLUSH_SECONDS)
    return sent


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, max(0, round(q * len(s)) - 1))]


async def await_lock(consumer: AIOKafkaConsumer, user: str, start: float,
                     poll_ms: int) -> bool:
    """Read the lock topic until a command for `user` shows up, BURST_TIMEOUT after `start`
    at most (perf_counter time); whether it did."""
    key = codec.lock_key("user", user)
    while time.perf_counter() - start < BURST_TIMEOUT:
        for records in (await consumer.getmany(timeout_ms=poll_ms)).values():
            if any(r.key == key for r in records):
                return True
    return False


async def lock_latencies(bootstrap: str, topics: Topics, bursts: int, batch: int,
                         rate: float = 0.0) -> list[float]:
    consumer = AIOKafkaConsumer(topics.locks, bootstrap_servers=bootstrap, group_id=None,
                                auto_offset_reset="latest")
    await consumer.start()
    producer = new_producer(bootstrap, linger_ms=5)
    await producer.start()
    stop = asyncio.Event()
    bg = asyncio.create_task(background(producer, topics.events, rate, batch, stop)) \
        if rate else None
    await asyncio.sleep(2)
    out = []
    try:
        for b in range(bursts):
            user = f"spammer{b}-{uuid.uuid4().hex[:4]}"
            now = time.time()
            burst: list[Event] = [SendEvent(str(uuid.uuid4()), now + i * 0.1, "bench", user,
                                            IPS[0], user, 1, 100) for i in range(11)]
            start = time.perf_counter()
            await send_events(producer, topics.events, burst, batch)
            found = await await_lock(consumer, user, start, poll_ms=50)
            # a burst whose lock never came within the timeout counts as the timeout: the
            # figures are then a lower bound (the report says how many timed out)
            out.append(time.perf_counter() - start)
            if not found:
                print(f"burst {b}: no lock within {BURST_TIMEOUT:.0f} s", file=sys.stderr)
        return out
    finally:
        stop.set()
        if bg:
            await bg
        await producer.stop()
        await consumer.stop()


def core_rate(events: list[Event]) -> float:
    """With the collector thresholds the worker runs with (foundation/gc_tuning), so the
    worker's share of the core compares like with like."""
    rep = Replayer(build_core_params(Settings()), kinds=("user", "ip"))
    before = gc.get_threshold()
    gc.set_threshold(*gc_tuning.THROUGHPUT)
    try:
        start = time.perf_counter()
        for e in events:
            rep.feed(e)
        return len(events) / (time.perf_counter() - start)
    finally:
        gc.set_threshold(*before)


def start_profile(pid: int, out: Path) -> subprocess.Popen[bytes]:
    spy = Path(sys.executable).with_name("py-spy")
    return subprocess.Popen([str(spy), "record", "--pid", str(pid), "--format", "raw",
                             "--rate", "200", "--output", str(out)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def start_worker(work: Path, bs: str, name: str, prefix: str, batch_bytes: int,
                 linger: float, city: Path, keys: dict[str, str]) -> WorkerProcess:
    worker = WorkerProcess({"RELAYGUARD_BOOTSTRAP_SERVERS": bs, **keys,
                            "RELAYGUARD_APP_ID": f"bench-{name}",
                            "RELAYGUARD_TOPICS__PREFIX": prefix,
                            "RELAYGUARD_PARTITIONS": str(PARTITIONS),
                            "RELAYGUARD_WORKER_PRODUCER_BATCH_BYTES": str(batch_bytes),
                            "RELAYGUARD_WORKER_PRODUCER_LINGER_SECONDS": str(linger),
                            "RELAYGUARD_GEOIP_CITY_DB": str(city),
                            "RELAYGUARD_DATA_DIR": str(work / name)}, work / f"{name}.log")
    worker.start(timeout=180)
    return worker


def drain_rate(worker: WorkerProcess, n: int, profile: Path | None) -> float:
    spy = start_profile(worker.proc.pid, profile) if profile and worker.proc else None
    start, done_at_start = time.perf_counter(), processed(worker)
    while processed(worker) < n:
        time.sleep(0.5)  # /metrics costs the worker CPU: poll gently
    rate = (n - done_at_start) / (time.perf_counter() - start)
    if spy:
        spy.send_signal(2)  # SIGINT: py-spy writes its file and exits
        spy.wait(30)
    return rate


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--events", type=int, default=20000)
    ap.add_argument("--users", type=int, default=2000)
    ap.add_argument("--bursts", type=int, default=40)
    ap.add_argument("--batch", type=int, default=256,
                    help="events per relay hand-over (grouped into one record per partition)")
    ap.add_argument("--phases", default="single:16384:0.005,batch:16384:0.005,"
                    "batch:524288:0.02", help="worker runs: records:batch bytes:linger s, ...")
    ap.add_argument("--background", type=float, default=0.5,
                    help="background traffic during the second latency run, as a share of the "
                         "measured worker rate")
    ap.add_argument("--flush-ms", type=float, default=10.0,
                    help="background traffic handed over every this many ms (batch size)")
    ap.add_argument("--profile", type=Path, help="py-spy collapsed stacks of the last phase")
    args = ap.parse_args()
    global FLUSH_SECONDS
    FLUSH_SECONDS = args.flush_ms / 1000
    phases = [(m, int(b), float(s)) for m, b, s in (p.split(":") for p in args.phases.split(","))]
    work = Path(tempfile.mkdtemp(prefix="relayguard-bench-"))
    broker = LocalBroker(data_dir=work / "broker", progress=stderr_progress)
    broker.start()
    workers: list[WorkerProcess] = []
    try:
        bs = broker.bootstrap
        topic_sets = {"single": Topics(prefix="s."), "batch": Topics(prefix="b.")}
        for topics in topic_sets.values():
            asyncio.run(ensure_topics(bs, standard_topics(Settings(
                bootstrap_servers=bs, partitions=PARTITIONS, topics=topics))))
        events = traffic(args.events, args.users, time.time() - args.events * 0.01)
        print(f"producing {len(events)} events for {args.users} users ...", file=sys.stderr)
        asyncio.run(produce(bs, topic_sets["single"].events, events, 0))
        n_batches = asyncio.run(produce(bs, topic_sets["batch"].events, events, args.batch))
        base_single = asyncio.run(baseline(bs, topic_sets["single"].events, len(events)))
        base_batch = asyncio.run(baseline(bs, topic_sets["batch"].events, len(events)))
        city = write_city_db(work / "c.mmdb")
        keys = worker_key_env()
        rates = []
        for i, (mode, batch_bytes, linger) in enumerate(phases):
            print(f"phase {i}: {mode} records, producer {batch_bytes} B / {linger} s ...",
                  file=sys.stderr)
            worker = start_worker(work, bs, f"w{i}", topic_sets[mode].prefix, batch_bytes,
                                  linger, city, keys)
            workers.append(worker)
            last = i == len(phases) - 1
            rates.append(drain_rate(worker, len(events), args.profile if last else None))
            if not last:
                worker.stop()
        core = core_rate(events)
        mode = phases[-1][0]
        batch = args.batch if mode == "batch" else 0
        lat = asyncio.run(lock_latencies(bs, topic_sets[mode], args.bursts, batch))
        bg_rate = rates[-1] * args.background
        bg_lat = asyncio.run(lock_latencies(bs, topic_sets[mode], args.bursts, batch, bg_rate))
        print(f"events: {len(events)} for {args.users} users; batch records: {n_batches} "
              f"({len(events) / n_batches:.0f} events each); {PARTITIONS} partitions")
        print(f"baseline  bare aiokafka consume+decode, single records: {base_single:10,.0f} "
              "events/s")
        print(f"baseline  bare aiokafka consume+decode, batch records : {base_batch:10,.0f} "
              "events/s")
        print(f"core      pure core, same events, no Kafka            : {core:10,.0f} events/s")
        for (m, b, s), rate in zip(phases, rates, strict=True):
            base = base_single if m == "single" else base_batch
            print(f"worker    {m:6} records, producer {b:>7} B {s * 1000:3.0f} ms: "
                  f"{rate:8,.0f} events/s = {rate / core:6.1%} of core, "
                  f"{rate / base_single:5.2%} of bare single, {rate / base:5.2%} of bare "
                  f"{m}")
        for label, values in (("idle worker", lat),
                              (f"background {bg_rate:,.0f} events/s ({args.background:.0%} of "
                               f"the last phase's rate, handed over every {args.flush_ms:g} "
                               "ms)", bg_lat)):
            print(f"lock latency ({mode} records, produced -> lock readable), {label}, "
                  f"{len(values)} bursts: p50 {statistics.median(values) * 1000:.0f} ms, "
                  f"p90 {pct(values, 0.9) * 1000:.0f} ms, p99 {pct(values, 0.99) * 1000:.0f} "
                  f"ms, max {max(values) * 1000:.0f} ms")
    finally:
        for worker in workers:
            worker.stop()
        broker.stop()


if __name__ == "__main__":
    main()
