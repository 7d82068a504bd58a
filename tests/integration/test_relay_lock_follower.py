"""Lock follower on the real broker: catch-up at start, live locks within seconds, acks."""

from __future__ import annotations

import time

import orjson
import pytest

from relayguard.foundation.settings import Settings
from relayguard.relay.lock_follower import LockFollower
from relayguard.stream.codec import lock_ack_from_dict
from tests.kafka_helpers import (
    lock_cmd,
    make_topics,
    produce,
    produce_locks,
    read_all,
    until,
)

pytestmark = pytest.mark.integration


async def test_catch_up_then_follow_and_ack(kafka_settings: Settings) -> None:
    s = kafka_settings
    await make_topics(s)
    await produce_locks(s.bootstrap_servers, s.topics.locks, [
        lock_cmd("alice", 1),
        lock_cmd("bob", 1),
        lock_cmd("bob", 2, action="unlock"),
        lock_cmd("carol", 5),
        lock_cmd("carol", 4, action="unlock"),  # older version arriving late: ignored
        lock_cmd("dave", 1, dry_run=True),  # dry run: never enforced
        lock_cmd("198.51.100.9", 1, kind="ip"),
    ])
    # junk on the topic must be skipped, not crash the follower
    await produce(s.bootstrap_servers, s.topics.locks, [(b"user:x", b"not json"),
                                                         (b"user:y", b'{"type":"lock_command"}')])
    f = LockFollower(s.bootstrap_servers, s.topics.locks, s.topics.lock_acks, "relay-it",
                     retry_interval=0.5)
    await f.start()
    try:
        assert await f.ready(timeout=30), "follower did not catch up within 30 s"
        now = time.time()
        book = f.book
        assert book.is_locked("user", "alice", now)
        assert not book.is_locked("user", "bob", now)
        assert book.is_locked("user", "carol", now)
        assert not book.is_locked("user", "dave", now)
        assert book.is_locked("ip", "198.51.100.9", now)
        assert f.skipped >= 4

        await produce_locks(s.bootstrap_servers, s.topics.locks, [lock_cmd("erin", 1)])
        await until(lambda: book.is_locked("user", "erin", time.time()), 10,
                    "a new lock applied within 10 s")
    finally:
        await f.stop()

    acks = [lock_ack_from_dict(orjson.loads(r.value))
            for r in await read_all(s.bootstrap_servers, s.topics.lock_acks, want=6)]
    got = {(a.subject, a.action, a.version) for a in acks}
    assert got == {("alice", "lock", 1), ("bob", "lock", 1), ("bob", "unlock", 2),
                   ("carol", "lock", 5), ("198.51.100.9", "lock", 1), ("erin", "lock", 1)}
    assert {a.relay_id for a in acks} == {"relay-it"}


async def test_empty_topic_is_ready_at_once(kafka_settings: Settings) -> None:
    s = kafka_settings
    await make_topics(s)
    f = LockFollower(s.bootstrap_servers, s.topics.locks, s.topics.lock_acks, "relay-it")
    await f.start()
    try:
        assert await f.ready(timeout=30)
        assert len(f.book) == 0
    finally:
        await f.stop()
