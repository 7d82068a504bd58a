"""Small Kafka helpers for the e2e tests: topics, lock commands, reading a topic from the start."""

from __future__ import annotations

import time
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from relayguard.broker.topics import ensure_topics, standard_topics
from relayguard.settings import Settings
from stream.codec import dumps, lock_command_to_dict, lock_key
from stream.records import LockAction, LockCommand


async def make_topics(settings: Settings) -> None:
    await ensure_topics(settings.bootstrap_servers, standard_topics(settings))


def lock_cmd(user: str, version: int, action: LockAction = "lock") -> LockCommand:
    return LockCommand(
        command_id=f"e2e-{user}-{version}", subject=user, subject_kind="user", action=action,
        reason="e2e test", detector="operator", evidence={}, issued_at=time.time(),
        expires_at=None, issuer="e2e", version=version,
    )


async def produce_locks(bootstrap: str, topic: str, cmds: list[LockCommand]) -> None:
    p = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await p.start()
    try:
        for c in cmds:
            await p.send_and_wait(topic, value=dumps(lock_command_to_dict(c)),
                                  key=lock_key(c.subject_kind, c.subject))
    finally:
        await p.stop()


async def read_all(bootstrap: str, topic: str, want: int, timeout: float = 30.0,
                   settle: float = 1.0) -> list[Any]:
    """Every record of `topic` from offset 0: waits for `want` records (up to `timeout` s),
    then `settle` s more so that unexpected extra records show up too."""
    c = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=None,
                         auto_offset_reset="earliest", enable_auto_commit=False)
    await c.start()
    out: list[Any] = []
    try:
        deadline = time.monotonic() + timeout
        while len(out) < want and time.monotonic() < deadline:
            for recs in (await c.getmany(timeout_ms=500)).values():
                out += recs
        end = time.monotonic() + settle
        while time.monotonic() < end:
            for recs in (await c.getmany(timeout_ms=200)).values():
                out += recs
    finally:
        await c.stop()
    return out
