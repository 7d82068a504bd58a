"""`relayguard relays` (relayguard/roof/fleet.py, the operator's reader of the events topic)
against the real broker when relays send batch records (the hooks' default) next to a relay
that sends single-event records: every relay is seen with the time of its newest event, and a
bad batch envelope or a bad item inside a good batch is counted as invalid, not fatal."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaProducer

from relayguard.foundation.settings import Settings
from relayguard.relay.producer import EventProducer, event_key
from relayguard.stream import batch_codec, codec
from relayguard.stream.records import LoginEvent, SendEvent
from relayguard.stream.timefmt import to_rfc3339
from tests.kafka_helpers import make_topics, produce, read_events

pytestmark = pytest.mark.integration


def _relays(s: Settings) -> Any:
    env = {**os.environ, "RELAYGUARD_BOOTSTRAP_SERVERS": s.bootstrap_servers,
           "RELAYGUARD_TOPICS__PREFIX": s.topics.prefix}
    run = subprocess.run([sys.executable, "-m", "relayguard", "relays", "--json", "--since",
                          "1h"], capture_output=True, text=True, timeout=60, env=env)
    assert run.returncode == 0, run.stderr
    return orjson.loads(run.stdout)


async def _produce_unkeyed(s: Settings, records: list[tuple[bytes, bytes]]) -> None:
    """Batch records as a relay sends them: no key, to the partition of the users inside."""
    parts = await _partitions(s)
    producer = AIOKafkaProducer(bootstrap_servers=s.bootstrap_servers, acks="all")
    await producer.start()
    try:
        for home, value in records:
            await producer.send_and_wait(s.topics.events, value,
                                         partition=batch_codec.partition_for(home, parts))
    finally:
        await producer.stop()


async def _partitions(s: Settings) -> int:
    producer = AIOKafkaProducer(bootstrap_servers=s.bootstrap_servers)
    await producer.start()
    try:
        return len(await producer.partitions_for(s.topics.events))
    finally:
        await producer.stop()


async def test_relays_reads_batch_and_single_records(kafka_settings: Settings,
                                                     tmp_path: Path) -> None:
    s = kafka_settings
    await make_topics(s)
    now = time.time()
    tag = uuid.uuid4().hex[:6]
    # Two batching relays, 40 users each (so every partition gets batches), newest event of
    # each relay not the last one sent, so "newest" is really a maximum.
    newest: dict[str, float] = {}
    producer = EventProducer(s.bootstrap_servers, s.topics.events, tmp_path / "spool",
                             batch_records=True)
    await producer.start()
    try:
        sent = 0
        for relay, base in (("relay-batch-a", now - 300), ("relay-batch-b", now - 200)):
            for i in range(40):
                t = base + (37 if i == 5 else i % 7)
                newest[relay] = max(newest.get(relay, 0.0), t)
                ev = (SendEvent(str(uuid.uuid4()), t, relay, f"u{i}-{tag}@example.com",
                                "192.0.2.9", f"u{i}-{tag}@example.com", 1, 100) if i % 2 else
                      LoginEvent(str(uuid.uuid4()), t, relay, f"u{i}-{tag}@example.com",
                                 "192.0.2.9", True))
                assert producer.publish_nowait(ev)
                sent += 1
        deadline = time.monotonic() + 60
        while producer.stats.queue_depth and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        assert producer.stats.queue_depth == 0, producer.stats
    finally:
        await producer.stop()
    # A relay with single-event records, a batch with one bad item among good ones, and a
    # batch whose envelope is bad (an item count the schema refuses).
    single = SendEvent(str(uuid.uuid4()), now - 100, "relay-single", f"s-{tag}@example.com",
                       "192.0.2.10", f"s-{tag}@example.com", 1, 100)
    good_in_bad = LoginEvent(str(uuid.uuid4()), now - 50, "relay-mixed", f"m-{tag}@example.com",
                             "192.0.2.11", False)
    mixed = batch_codec.encode_batch([codec.encode_event(good_in_bad), b'{"type":"login"}'])
    empty = b'{"type":"event_batch","events":[]}'
    await produce(s.bootstrap_servers, s.topics.events, [
        (event_key(single), codec.encode_event(single))])
    await _produce_unkeyed(s, [(event_key(good_in_bad), mixed), (b"any", empty)])

    got = await read_events(s.bootstrap_servers, s.topics.events, want=sent + 4, settle=0.5)
    assert sum(e.batched for e in got) == sent + 2  # the hand-overs really were batches
    doc = _relays(s)
    seen = {r["relay_id"]: r for r in doc["relays"]}
    assert {k: v["last_event"] for k, v in seen.items()} == {
        "relay-batch-a": to_rfc3339(newest["relay-batch-a"]),
        "relay-batch-b": to_rfc3339(newest["relay-batch-b"]),
        "relay-single": to_rfc3339(single.event_time),
        "relay-mixed": to_rfc3339(good_in_bad.event_time),
    }
    assert doc["invalid_records"] == {"events": 2}  # the bad item, the bad envelope
