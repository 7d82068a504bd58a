"""Lock latency through the relay's own producer: batch records (the hooks' default) against
single-event records, on one real worker and broker, interleaved so both see the same host.

    .venv/bin/python bench/relay_lock_bench.py [--bursts 10] [--rounds 2] [--rates 0,100]

What a hook does, in the bench process: `relay.producer.EventProducer` (write-ahead spool,
sender task, aiokafka linger 5 ms) with `batch_records=True` or False. For each round, each
background rate and each mode (the order of the modes alternating from round to round): the
producer under test carries ordinary background traffic at that rate (fresh users, nothing to
lock; `publish_nowait` every 10 ms for what is due) and --bursts spammers, one at a time: 11
send events of one user handed to `publish_nowait` at once; the latency is from the first
`publish_nowait` to the lock command being readable on the lock topic (spool, sender, broker,
worker, detector, lock producer). A burst whose lock does not come within 30 s counts as 30 s.
p50 / p90 / max per mode and rate. Timing figures only; nothing here is pass/fail.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from aiokafka import AIOKafkaConsumer
from bench_keys import worker_key_env
from worker_bench import BURST_TIMEOUT, IPS, PARTITIONS, await_lock, pct, start_worker, traffic

from relayguard.foundation.settings import Settings, Topics
from relayguard.foundation.topics import ensure_topics, standard_topics
from relayguard.relay.producer import EventProducer
from relayguard.roof.broker.fetch import stderr_progress
from relayguard.roof.broker.server import LocalBroker
from relayguard.roof.demo_geodb import write_city_db
from relayguard.stream.records import SendEvent

TICK = 0.01  # background hand-over interval (what a busy relay's traffic looks like)


async def _background(producer: EventProducer, rate: float, stop: asyncio.Event) -> int:
    sent, start, seed = 0, time.perf_counter(), 1000
    while not stop.is_set():
        due = int((time.perf_counter() - start) * rate)
        if due > sent:
            seed += 1
            for e in traffic(due - sent, 5000, time.time(), seed):
                producer.publish_nowait(e)
            sent = due
        await asyncio.sleep(TICK)
    return sent


async def _bursts(bootstrap: str, topics: Topics, spool: Path, batched: bool, bursts: int,
                  rate: float) -> list[float]:
    consumer = AIOKafkaConsumer(topics.locks, bootstrap_servers=bootstrap, group_id=None,
                                auto_offset_reset="latest")
    await consumer.start()
    producer = EventProducer(bootstrap, topics.events, spool, batch_records=batched)
    await producer.start()
    stop = asyncio.Event()
    bg = asyncio.create_task(_background(producer, rate, stop)) if rate else None
    out: list[float] = []
    try:
        await asyncio.sleep(2)  # connected, background flowing
        for b in range(bursts):
            user = f"spammer{b}-{uuid.uuid4().hex[:6]}"
            now = time.time()
            start = time.perf_counter()
            for i in range(11):
                producer.publish_nowait(SendEvent(str(uuid.uuid4()), now + i * 0.1, "bench",
                                                  user, IPS[0], user, 1, 100))
            found = await await_lock(consumer, user, start, poll_ms=20)
            out.append(time.perf_counter() - start)
            if not found:
                print(f"{'batch' if batched else 'single'} burst {b}: no lock within "
                      f"{BURST_TIMEOUT:.0f} s", file=sys.stderr)
            await asyncio.sleep(0.3)
        return out
    finally:
        stop.set()
        if bg:
            await bg
        await producer.stop()
        await consumer.stop()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bursts", type=int, default=10, help="spammers per mode, rate and round")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--rates", default="0,100", help="background events/s, comma separated")
    args = ap.parse_args()
    rates = [float(r) for r in args.rates.split(",")]
    work = Path(tempfile.mkdtemp(prefix="relayguard-lockbench-"))
    broker = LocalBroker(data_dir=work / "broker", progress=stderr_progress)
    broker.start()
    worker = None
    try:
        bs, topics = broker.bootstrap, Topics(prefix="l.")
        asyncio.run(ensure_topics(bs, standard_topics(Settings(
            bootstrap_servers=bs, partitions=PARTITIONS, topics=topics))))
        worker = start_worker(work, bs, "w", topics.prefix, 512 * 1024, 0.02,
                              write_city_db(work / "c.mmdb"), worker_key_env())
        got: dict[tuple[float, bool], list[float]] = {}
        for rnd in range(args.rounds):
            for rate in rates:
                modes = (True, False) if rnd % 2 == 0 else (False, True)
                for batched in modes:
                    print(f"round {rnd}, background {rate:g}/s, "
                          f"{'batch' if batched else 'single'} records ...", file=sys.stderr)
                    spool = work / f"spool-{rnd}-{rate:g}-{batched}"
                    got.setdefault((rate, batched), []).extend(asyncio.run(
                        _bursts(bs, topics, spool, batched, args.bursts, rate)))
        print(f"relay EventProducer -> worker -> lock topic, {PARTITIONS} partitions, "
              f"{args.rounds} rounds x {args.bursts} bursts of 11 sends per mode and rate")
        for rate in rates:
            for batched in (True, False):
                v = got[(rate, batched)]
                print(f"background {rate:6,.0f} events/s, {'batch ' if batched else 'single'} "
                      f"records: p50 {statistics.median(v) * 1000:6.0f} ms, p90 "
                      f"{pct(v, 0.9) * 1000:6.0f} ms, max {max(v) * 1000:6.0f} ms "
                      f"({len(v)} bursts)")
    finally:
        if worker is not None:
            worker.stop()
        broker.stop()


if __name__ == "__main__":
    main()
