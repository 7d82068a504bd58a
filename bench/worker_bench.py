"""Throughput and lock latency of the real worker on a real local broker, against a baseline.

    .venv/bin/python bench/worker_bench.py [--events 20000] [--users 2000] [--bursts 20]
        [--profile FILE.txt]

The worker signs its lock commands with a key pair made for this run (RELAYGUARD_SIGNING_KEY /
RELAYGUARD_VERIFY_KEYS in its environment); --profile runs py-spy (pip install py-spy) on the
worker's main thread while it works through the events and writes the collapsed stacks to FILE.

1. Baseline: a bare aiokafka consumer reading and JSON-decoding the same N events (the floor
   any Kafka consumer pays on this machine).
2. Worker: the same N events through `relayguard worker` (decode, validate, dedupe, enrich,
   every detector, table write + changelog, outputs); throughput counted from the moment the
   worker is ready until its /metrics counts all N.
3. Core: the same N events through the pure core (roof.replay.Replayer, user and IP keys, every
   detector) in this process, no Kafka: the ceiling the worker's shell takes a share of.
4. Lock latency: for each of B spammers, time from producing an 11-message burst to the lock
   command being readable on the lock topic; p50/p90/max.
   Then again with ordinary background traffic at --background (0.5) of the measured worker
   rate: the issue's "detection latency at half capacity".
Timing figures only; nothing here is pass/fail.
"""

from __future__ import annotations

import argparse
import asyncio
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

from relayguard.foundation.core_params import build_core_params
from relayguard.foundation.settings import Settings, Topics
from relayguard.foundation.topics import ensure_topics, standard_topics
from relayguard.roof.broker.fetch import stderr_progress
from relayguard.roof.broker.server import LocalBroker
from relayguard.roof.demo_geodb import write_city_db
from relayguard.roof.replay import Replayer
from relayguard.roof.worker_process import WorkerProcess
from relayguard.stream import codec
from relayguard.stream.records import Event, LoginEvent, SendEvent

IPS = ["192.0.2.10", "192.0.2.130", "198.51.100.7", "203.0.113.9", "2001:db8::5"]


def traffic(n: int, n_users: int, t0: float) -> list[Event]:
    """Users at home (one IP each, as real clients are), 30% logins (10% of them failed)."""
    rnd = random.Random(7)
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


async def produce(bootstrap: str, topic: str, events: list[Event]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=20)
    await producer.start()
    try:
        for e in events:
            await producer.send(topic, codec.encode_event(e), key=(e.user or e.client_ip).encode())
        await producer.flush()
    finally:
        await producer.stop()


async def baseline(bootstrap: str, topic: str, n: int) -> float:
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=None,
                                auto_offset_reset="earliest")
    await consumer.start()
    start, seen = time.perf_counter(), 0
    try:
        while seen < n:
            for records in (await consumer.getmany(timeout_ms=500, max_records=5000)).values():
                for r in records:
                    orjson.loads(r.value)
                    seen += 1
        return n / (time.perf_counter() - start)
    finally:
        await consumer.stop()


def processed(worker: WorkerProcess) -> int:
    text = worker.get("/metrics") or ""
    return sum(int(v) for v in re.findall(r'^relayguard_worker_events_total\{[^}]*\} (\d+)$',
                                          text, re.M))


async def background(bootstrap: str, topic: str, rate: float, stop: asyncio.Event) -> int:
    """Ordinary traffic at `rate` events/s (new users, nothing to lock) until `stop`."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    await producer.start()
    sent, start = 0, time.perf_counter()
    try:
        while not stop.is_set():
            due = int((time.perf_counter() - start) * rate)
            for e in traffic(due - sent, 5000, time.time()):
                await producer.send(topic, codec.encode_event(e),
                                    key=(e.user or e.client_ip).encode())
            sent = max(sent, due)
            await asyncio.sleep(0.01)
        return sent
    finally:
        await producer.stop()


async def lock_latencies(bootstrap: str, topics: Topics, bursts: int,
                         rate: float = 0.0) -> list[float]:
    consumer = AIOKafkaConsumer(topics.locks, bootstrap_servers=bootstrap, group_id=None,
                                auto_offset_reset="latest")
    await consumer.start()
    stop = asyncio.Event()
    bg = asyncio.create_task(background(bootstrap, topics.events, rate, stop)) if rate else None
    await asyncio.sleep(1)
    out = []
    try:
        for b in range(bursts):
            user = f"spammer{b}-{uuid.uuid4().hex[:4]}"
            now = time.time()
            start = time.perf_counter()
            await produce(bootstrap, topics.events, [
                SendEvent(str(uuid.uuid4()), now + i * 0.1, "bench", user, IPS[0], user, 1, 100)
                for i in range(11)])
            found = False
            while not found:
                for records in (await consumer.getmany(timeout_ms=200)).values():
                    found |= any(r.key == codec.lock_key("user", user) for r in records)
            out.append(time.perf_counter() - start)
        return out
    finally:
        stop.set()
        if bg:
            await bg
        await consumer.stop()


def core_rate(events: list[Event]) -> float:
    rep = Replayer(build_core_params(Settings()), kinds=("user", "ip"))
    start = time.perf_counter()
    for e in events:
        rep.feed(e)
    return len(events) / (time.perf_counter() - start)


def start_profile(pid: int, out: Path) -> subprocess.Popen[bytes]:
    spy = Path(sys.executable).with_name("py-spy")
    return subprocess.Popen([str(spy), "record", "--pid", str(pid), "--format", "raw",
                             "--rate", "200", "--output", str(out)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--events", type=int, default=20000)
    ap.add_argument("--users", type=int, default=2000)
    ap.add_argument("--bursts", type=int, default=20)
    ap.add_argument("--background", type=float, default=0.5,
                    help="background traffic during the second latency run, as a share of the "
                         "measured worker rate")
    ap.add_argument("--profile", type=Path, help="py-spy collapsed stacks of the worker here")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="relayguard-bench-"))
    broker = LocalBroker(data_dir=work / "broker", progress=stderr_progress)
    broker.start()
    worker = None
    try:
        bs = broker.bootstrap
        settings = Settings(bootstrap_servers=bs, partitions=4)
        asyncio.run(ensure_topics(bs, standard_topics(settings)))
        events = traffic(args.events, args.users, time.time() - args.events * 0.01)
        print(f"producing {len(events)} events for {args.users} users ...", file=sys.stderr)
        asyncio.run(produce(bs, settings.topics.events, events))
        base = asyncio.run(baseline(bs, settings.topics.events, len(events)))
        worker = WorkerProcess({"RELAYGUARD_BOOTSTRAP_SERVERS": bs, **worker_key_env(),
                                "RELAYGUARD_GEOIP_CITY_DB": str(write_city_db(work / "c.mmdb")),
                                "RELAYGUARD_DATA_DIR": str(work / "w")}, work / "worker.log")
        worker.start(timeout=120)
        spy = None
        if args.profile and worker.proc:
            spy = start_profile(worker.proc.pid, args.profile)
        start, done_at_start = time.perf_counter(), processed(worker)
        while processed(worker) < len(events):
            time.sleep(0.2)
        rate = (len(events) - done_at_start) / (time.perf_counter() - start)
        if spy:
            spy.send_signal(2)  # SIGINT: py-spy writes its file and exits
            spy.wait(30)
        core = core_rate(events)
        lat = sorted(asyncio.run(lock_latencies(bs, settings.topics, args.bursts)))
        bg_rate = rate * args.background
        bg_lat = sorted(asyncio.run(lock_latencies(bs, settings.topics, args.bursts, bg_rate)))
        print(f"baseline  bare aiokafka consume+decode : {base:10,.0f} events/s")
        print(f"worker    all detectors, tables, outputs: {rate:10,.0f} events/s "
              f"({rate / base:.1%} of baseline; counted from worker ready)")
        print(f"core      pure core, same events, no Kafka : {core:10,.0f} events/s "
              f"(worker = {rate / core:.1%} of core)")
        print(f"lock latency (burst produced -> lock readable), {len(lat)} bursts: "
              f"p50 {statistics.median(lat) * 1000:.0f} ms, "
              f"p90 {lat[int(len(lat) * 0.9) - 1] * 1000:.0f} ms, max {lat[-1] * 1000:.0f} ms")
        print(f"lock latency under {bg_rate:,.0f} events/s background ({args.background:.0%} of "
              f"the worker's rate), {len(bg_lat)} bursts: "
              f"p50 {statistics.median(bg_lat) * 1000:.0f} ms, "
              f"p90 {bg_lat[int(len(bg_lat) * 0.9) - 1] * 1000:.0f} ms, "
              f"max {bg_lat[-1] * 1000:.0f} ms")
    finally:
        if worker:
            worker.stop()
        broker.stop()


if __name__ == "__main__":
    main()
