"""How long a restarted worker holding many users takes to be ready, RocksDB store against the
memory store, in one run on one local broker.

    .venv/bin/python bench/restart_bench.py [--users 100000] [--partitions 4]
        [--stores rocksdb,memory] [--keep DIR]

Per store: the user-state changelog is filled directly with one realistic state per user
(agents/state_codec.py bytes of states the real core built from synthetic traffic), a worker
starts on it (cold start: replays the whole changelog), is stopped with SIGTERM, and a second
worker starts on the same data dir (restart). That one is then SIGKILLed and a third starts
(after kill: the RocksDB store is discarded and rebuilt, and the group first waits out the dead
member's session). For each start it prints the seconds from spawning the process to `/ready`
answering 200, and whether `/ready` answered 503 first (it must while recovering). Timing
figures only; nothing here is pass/fail.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import signal
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import orjson
from aiokafka import AIOKafkaProducer
from aiokafka.partitioner import murmur2
from bench_keys import worker_key_env
from core_bench import traffic

from relayguard.agents import state_codec
from relayguard.foundation.core_params import build_core_params
from relayguard.foundation.settings import Settings, Topics
from relayguard.foundation.topics import TopicSpec, ensure_topics, standard_topics
from relayguard.roof.broker.fetch import stderr_progress
from relayguard.roof.broker.server import LocalBroker
from relayguard.roof.replay import Replayer
from relayguard.roof.worker_process import WorkerProcess


def template_states(n: int) -> list[bytes]:
    """Encoded states of real users after a week of synthetic traffic, to reuse per user."""
    rep = Replayer(build_core_params(Settings()), kinds=("user",))
    for ev in traffic(n * 15, n):
        rep.feed(ev)
    return [state_codec.dumps(s) for s in rep.states.values()]


async def fill_changelog(bootstrap: str, topic: str, users: int, partitions: int,
                         values: list[bytes]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=20,
                                max_batch_size=1 << 20, compression_type=None)
    await producer.start()
    try:
        pending = []
        for i in range(users):
            user = f"user{i}@example{i % 50}.com"
            # Same key bytes and partition the worker itself would write for this user.
            partition = (murmur2(user.encode()) & 0x7FFFFFFF) % partitions
            pending.append(await producer.send(topic, values[i % len(values)],
                                               key=orjson.dumps(user), partition=partition))
            if len(pending) >= 5000:
                await asyncio.gather(*pending)
                pending.clear()
        await asyncio.gather(*pending)
    finally:
        await producer.stop()


def time_to_ready(worker: WorkerProcess, timeout: float) -> tuple[float, bool]:
    """Spawn the worker, poll /ready; seconds until 200 and whether a 503 came first."""
    assert worker.log_path.parent.exists()
    start = time.monotonic()
    worker.start_process()
    saw_503 = False
    while time.monotonic() - start < timeout:
        code = worker.status("/ready")
        if code == 200:
            return time.monotonic() - start, saw_503
        saw_503 = saw_503 or code == 503
        if worker.proc is not None and worker.proc.poll() is not None:
            raise RuntimeError(f"worker exited:\n{worker.tail_log()}")
        time.sleep(0.1)
    raise RuntimeError(f"not ready after {timeout}s:\n{worker.tail_log()}")


def replayed(worker: WorkerProcess) -> int:
    """Changelog records this worker applied to its store so far (its own recovery)."""
    text = worker.get("/metrics") or ""
    return sum(int(n) for n in re.findall(
        r"^relayguard_worker_changelog_records_recovered_total\{.*\} (\d+)$", text, re.M))


def sigterm(worker: WorkerProcess) -> float:
    assert worker.proc is not None
    start = time.monotonic()
    os.killpg(worker.proc.pid, signal.SIGTERM)
    worker.proc.wait(120)
    return time.monotonic() - start


def run_store(bootstrap: str, work: Path, store: str, args: argparse.Namespace,
              values: list[bytes]) -> None:
    tag = uuid.uuid4().hex[:8]
    app_id, prefix = f"rg-bench-{tag}", f"b{tag}."
    settings = Settings(bootstrap_servers=bootstrap, topics=Topics(prefix=prefix),
                        partitions=args.partitions)
    changelog = f"{app_id}-user-state-changelog"
    asyncio.run(ensure_topics(bootstrap, [
        *standard_topics(settings),
        TopicSpec(changelog, args.partitions, {"cleanup.policy": "compact"}),
    ]))
    t = time.monotonic()
    asyncio.run(fill_changelog(bootstrap, changelog, args.users, args.partitions, values))
    print(f"[{store}] {args.users} states written to {changelog} in "
          f"{time.monotonic() - t:.1f}s", flush=True)
    env = {"RELAYGUARD_BOOTSTRAP_SERVERS": bootstrap, "RELAYGUARD_APP_ID": app_id,
           "RELAYGUARD_TOPICS__PREFIX": prefix, "RELAYGUARD_PARTITIONS": str(args.partitions),
           "RELAYGUARD_DATA_DIR": str(work / f"data-{store}"),
           "RELAYGUARD_TABLE_STORE": store, **worker_key_env()}
    cold = WorkerProcess(env, work / f"{store}-cold.log")
    cold_s, cold_503 = time_to_ready(cold, args.timeout)
    cold_n = replayed(cold)
    stop_s = sigterm(cold)
    warm = WorkerProcess(env, work / f"{store}-restart.log")
    warm_s, warm_503 = time_to_ready(warm, args.timeout)
    print(f"[{store}] cold start: ready in {cold_s:.1f}s (503 first: {cold_503}, "
          f"{cold_n} changelog records replayed); SIGTERM took {stop_s:.1f}s; restart: ready "
          f"in {warm_s:.1f}s (503 first: {warm_503}, {replayed(warm)} records replayed)",
          flush=True)
    killed_s = float("nan")
    if not args.no_kill:
        assert warm.proc is not None
        os.killpg(warm.proc.pid, signal.SIGKILL)
        warm.proc.wait(30)
        after = WorkerProcess(env, work / f"{store}-after-kill.log")
        killed_s, _ = time_to_ready(after, args.timeout)
        print(f"[{store}] after SIGKILL: ready in {killed_s:.1f}s ({replayed(after)} records "
              "replayed)", flush=True)
        sigterm(after)
    else:
        sigterm(warm)
    RESULTS.append((store, cold_s, warm_s, warm_503, killed_s))


RESULTS: list[tuple[str, float, float, bool, float]] = []


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--users", type=int, default=100_000)
    ap.add_argument("--partitions", type=int, default=4)
    ap.add_argument("--stores", default="rocksdb,memory")
    ap.add_argument("--timeout", type=float, default=600.0)
    ap.add_argument("--templates", type=int, default=500)
    ap.add_argument("--no-kill", action="store_true", help="skip the restart after SIGKILL")
    ap.add_argument("--keep", type=Path, default=None,
                    help="work in DIR and keep it (worker logs, stores); default: a temp dir")
    args = ap.parse_args()
    values = template_states(args.templates)
    mean = sum(map(len, values)) / len(values)
    print(f"{len(values)} template states, mean {mean:.0f} bytes", flush=True)
    with tempfile.TemporaryDirectory(prefix="relayguard-restart-bench-") as tmp:
        work = Path(tmp) if args.keep is None else args.keep
        work.mkdir(parents=True, exist_ok=True)
        broker = LocalBroker(data_dir=work / "broker", progress=stderr_progress)
        broker.start()
        try:
            for store in args.stores.split(","):
                run_store(broker.bootstrap, work, store.strip(), args, values)
        finally:
            broker.stop()
    print(f"\n{args.users} users, {args.partitions} partitions, one state record per user")
    print(f"{'store':8} {'cold start s':>12} {'restart s':>10} {'after kill s':>12}  "
          "503 until recovered")
    for store, cold_s, warm_s, warm_503, killed_s in RESULTS:
        print(f"{store:8} {cold_s:12.1f} {warm_s:10.1f} {killed_s:12.1f}  {warm_503}")


if __name__ == "__main__":
    main()
