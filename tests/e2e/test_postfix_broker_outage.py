"""Issue 4's outage case on a real Postfix: the broker is killed while the hook runs; mail keeps
flowing (the policy service answers from its lock book, never from Kafka), send events spool to
disk, and once the broker is back every event arrives exactly once, in order per user."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from pathlib import Path

import orjson
import pytest

from relayguard.foundation.settings import Settings
from relayguard.relay.lock_follower import LockFollower
from relayguard.relay.policy_protocol import DecisionConfig
from relayguard.relay.policy_server import ListenAddress, PolicyServer
from relayguard.relay.producer import EventProducer
from relayguard.roof.broker.config import free_port
from relayguard.roof.broker.server import LocalBroker
from relayguard.stream.records import Event
from tests.e2e.postfix_env import PostfixEnv
from tests.kafka_helpers import make_topics, read_all, until

pytestmark = pytest.mark.e2e


def _drained(producer: EventProducer) -> bool:
    return producer.state == "ok" and producer.stats.spool_bytes == 0
USERS = ("alice", "carol")


async def test_broker_killed_mail_flows_events_spool_and_arrive_once(
        postfix_env: PostfixEnv, kafka_bootstrap: str, tmp_path: Path) -> None:
    # kafka_bootstrap: the session fixture has fetched the broker jars; this test kills its
    # own broker so the shared one stays up for everyone else.
    port = free_port()
    broker = LocalBroker(data_dir=tmp_path / "kafka", port=port)
    await asyncio.to_thread(broker.start, 120)
    s = Settings(bootstrap_servers=broker.bootstrap)
    await make_topics(s)
    producer = EventProducer(s.bootstrap_servers, s.topics.events, tmp_path / "spool",
                             retry_interval=0.5, request_timeout_ms=3000)
    published: list[Event] = []

    def publish(event: Event) -> bool:
        published.append(event)
        return producer.publish_nowait(event)

    follower = LockFollower(s.bootstrap_servers, s.topics.locks, s.topics.lock_acks, "relay-out")
    server = PolicyServer(ListenAddress("inet", "127.0.0.1", postfix_env.policy_port),
                          follower.book, DecisionConfig(), "relay-out", publish=publish)
    await producer.start()
    await follower.start()
    await server.start()
    env = postfix_env

    async def mail_round() -> None:
        for user in USERS:
            await env.swaks_async(user, env.users[user], expect=0)

    try:
        assert await follower.ready(timeout=30)
        await mail_round()  # broker up: these go straight to Kafka
        await until(lambda: producer.stats.sent >= len(USERS), 30, "sent while the broker is up")

        await asyncio.to_thread(broker.stop, 0.1, True)  # SIGTERM, SIGKILL after 0.1 s
        # Broker dead: every message must still be accepted. The first events wait inside
        # the Kafka client; once the producer sees the stall, the rest go to the disk spool.
        deadline = time.monotonic() + 90
        while producer.state != "spooling" and time.monotonic() < deadline:
            await mail_round()
            await asyncio.sleep(1)
        assert producer.state == "spooling", f"outage not noticed: {producer.stats}"
        spooled_before = producer.stats.spooled
        await mail_round()
        await mail_round()
        await until(lambda: producer.stats.spooled >= spooled_before + 4, 30,
                    "later events spooled to disk")

        await asyncio.to_thread(broker.start, 120)
        await until(lambda: _drained(producer), 90, "the spool drained after the broker is back")
        records = await read_all(s.bootstrap_servers, s.topics.events, want=len(published),
                                 settle=2.0)
    finally:
        await server.stop()
        await producer.stop()
        await follower.stop()
        await asyncio.to_thread(broker.stop)

    sends = [(r.key.decode(), orjson.loads(r.value)) for r in records]
    ids = Counter(e["event_id"] for _, e in sends)
    assert max(ids.values()) == 1, f"repeated: {[i for i, n in ids.items() if n > 1]}"
    assert set(ids) == {e.event_id for e in published}, "lost or unknown events"
    assert len(published) >= 4 * len(USERS)  # one message per user per round, 4+ rounds
    for user in USERS:
        times = [e["event_time"] for key, e in sends if key == user]
        assert times == sorted(times), f"{user}: out of order {times}"
    assert producer.stats.dropped_full == 0
