"""What SASL_SSL costs a relay: the same producer and consumer against a plaintext and a
SASL_SSL (SCRAM-SHA-512, StandardAuthorizer + ACLs) local broker.

    .venv/bin/python bench/kafka_security_bench.py [--events 20000] [--rounds 5]

Per broker: client start time (connect, and for SASL_SSL the TLS handshake and SCRAM exchange;
median of --rounds), producer throughput (acks=all, idempotent, linger 5 ms: what the relay's
EventProducer uses) and consumer throughput from offset 0. Timing figures only; nothing here is
pass/fail. The brokers run one after the other, so they do not compete for the CPU.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from relayguard.foundation.settings import Settings, Topics
from relayguard.foundation.topics import ensure_topics, standard_topics
from relayguard.roof.broker import acls
from relayguard.roof.broker.fetch import stderr_progress
from relayguard.roof.broker.server import LocalBroker

VALUE = b'{"type":"send","event_id":"' + b"x" * 200 + b'"}'  # ~230 bytes, like an event


async def start_time(bootstrap: str, options: dict[str, Any], rounds: int) -> float:
    times = []
    for _ in range(rounds):
        began = time.perf_counter()
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=True,
                                    acks="all", **options)
        await producer.start()
        times.append(time.perf_counter() - began)
        await producer.stop()
    return statistics.median(times)


async def produce(bootstrap: str, topic: str, n: int, options: dict[str, Any]) -> float:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=True,
                                acks="all", linger_ms=5, **options)
    await producer.start()
    try:
        began = time.perf_counter()
        for i in range(n):
            await producer.send(topic, VALUE, key=f"user{i % 500}".encode())
        await producer.flush()
        return n / (time.perf_counter() - began)
    finally:
        await producer.stop()


async def consume(bootstrap: str, topic: str, n: int, options: dict[str, Any]) -> float:
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=None,
                                auto_offset_reset="earliest", **options)
    await consumer.start()
    try:
        began, seen = time.perf_counter(), 0
        while seen < n:
            for records in (await consumer.getmany(timeout_ms=1000, max_records=5000)).values():
                seen += len(records)
        return n / (time.perf_counter() - began)
    finally:
        await consumer.stop()


async def measure(broker: LocalBroker, user: str, n: int, rounds: int) -> dict[str, float]:
    topics = Topics(prefix="bench.")
    broker.apply_acls(acls.layout(topics, "rg-bench", relays=[user], workers=["worker"]))
    settings = Settings(bootstrap_servers=broker.bootstrap, topics=topics, partitions=4)
    await ensure_topics(broker.bootstrap, standard_topics(settings),
                        kafka_options=broker.client_options("worker"))
    options = broker.client_options(user)
    return {"start_s": await start_time(broker.bootstrap, options, rounds),
            "produce_per_s": await produce(broker.bootstrap, topics.events, n, options),
            # the relay may not read events: read them back as the worker, like the worker does
            "consume_per_s": await consume(broker.bootstrap, topics.events, n,
                                           broker.client_options("worker"))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    results = {}
    for label, secure in (("PLAINTEXT", False), ("SASL_SSL", True)):
        broker = LocalBroker(secure=secure, progress=stderr_progress)
        try:
            broker.start(timeout=180)
            results[label] = asyncio.run(measure(broker, "relay-1", args.events, args.rounds))
        finally:
            broker.stop()
    print(f"{args.events} events of {len(VALUE)} bytes, 4 partitions, one local broker")
    print(f"{'':10} {'client start':>13} {'produce/s':>11} {'consume/s':>11}")
    for label, r in results.items():
        print(f"{label:10} {r['start_s'] * 1000:10.0f} ms {r['produce_per_s']:11.0f} "
              f"{r['consume_per_s']:11.0f}")
    plain, sec = results["PLAINTEXT"], results["SASL_SSL"]
    print(f"SASL_SSL / PLAINTEXT: produce {sec['produce_per_s'] / plain['produce_per_s']:.2f}x, "
          f"consume {sec['consume_per_s'] / plain['consume_per_s']:.2f}x, client start "
          f"+{(sec['start_s'] - plain['start_s']) * 1000:.0f} ms")


if __name__ == "__main__":
    main()
