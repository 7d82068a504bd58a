"""The producer spools while its broker is down and replays in order, exactly once, when it is
back. Uses a LocalBroker of its own (the session broker is shared and must stay up)."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from pathlib import Path

import orjson
import pytest

from relayguard.foundation.topics import TopicSpec, ensure_topics
from relayguard.relay.producer import EventProducer
from relayguard.roof.broker.config import free_port
from relayguard.roof.broker.server import LocalBroker
from relayguard.stream.records import SendEvent
from tests.kafka_helpers import read_all, until

pytestmark = pytest.mark.integration
TOPIC = "relayguard.events"


def _ev(i: int) -> SendEvent:
    return SendEvent(event_id=f"ev-{i:04d}", event_time=time.time(), relay_id="relay-it",
                     user=f"user{i % 3}", client_ip="192.0.2.1", sender="s@example.com",
                     recipient_count=1, size=100)


def _drained(p: EventProducer) -> bool:
    return p.state == "ok" and p.stats.spool_bytes == 0


async def _start(broker: LocalBroker) -> None:
    await asyncio.to_thread(broker.start, 120)
    await ensure_topics(broker.bootstrap, [TopicSpec(TOPIC, 2)])


async def test_spool_while_down_replay_in_order_exactly_once(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    # kafka_bootstrap: the session fixture has fetched the jars (and proves java works)
    port = free_port()
    broker = LocalBroker(data_dir=tmp_path / "kafka", port=port)
    # Create the topic first: a producer reconnecting to a fresh broker before ensure_topics
    # ran would have it auto-created with one partition.
    await _start(broker)
    await asyncio.to_thread(broker.stop, 30, True)
    producer = EventProducer(f"127.0.0.1:{port}", TOPIC, tmp_path / "spool",
                             retry_interval=0.5, request_timeout_ms=3000)
    await producer.start()
    try:
        # 1. broker never started: everything goes to the spool, nothing is refused
        for i in range(0, 50):
            assert producer.publish_nowait(_ev(i))
        await until(lambda: producer.stats.spooled == 50, 30, "50 events spooled")
        assert producer.state == "spooling"

        # 2. broker comes up: spool replayed, new events keep their place behind it
        await _start(broker)
        for i in range(50, 60):
            producer.publish_nowait(_ev(i))
        await until(lambda: _drained(producer), 60,
                    "spool drained after the broker came up")

        # 3. broker goes away mid-run: the first events stay with aiokafka (it retries them),
        # the producer notices the stall and spools the rest; then the broker comes back
        await asyncio.to_thread(broker.stop, 30, True)
        for i in range(60, 65):
            producer.publish_nowait(_ev(i))
        await until(lambda: producer.state == "spooling", 60, "stall noticed in outage 2")
        for i in range(65, 90):
            producer.publish_nowait(_ev(i))
        assert producer.stats.spool_bytes > 0
        await _start(broker)
        await until(lambda: _drained(producer), 90,
                    "spool drained after the second outage")
        await producer.stop()

        records = await read_all(broker.bootstrap, TOPIC, want=90, settle=2.0)
    finally:
        await producer.stop()
        await asyncio.to_thread(broker.stop)

    ids = [orjson.loads(r.value)["event_id"] for r in records]
    counts = Counter(ids)
    assert set(counts) == {f"ev-{i:04d}" for i in range(90)}
    assert max(counts.values()) == 1, f"duplicates: {[k for k, n in counts.items() if n > 1]}"
    for user in ("user0", "user1", "user2"):  # per-key (per-partition) order kept
        seq = [orjson.loads(r.value)["event_id"] for r in records if r.key == user.encode()]
        assert seq == sorted(seq)
    st = producer.stats
    assert st.dropped_full == 0 and st.sent + st.replayed >= 90
