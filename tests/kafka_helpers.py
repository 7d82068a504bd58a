"""aiokafka helpers shared by the integration and e2e tests: topics, producing records and lock
commands, reading topics from the start, waiting for a condition."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.structs import ConsumerRecord

from relayguard.foundation.settings import Settings
from relayguard.foundation.topics import ensure_topics, standard_topics
from relayguard.stream.codec import encode_lock_command, lock_key
from relayguard.stream.records import LockCommand
from tests.fixtures.signing import session_signer

Records = list[ConsumerRecord[bytes, bytes]]


async def make_topics(settings: Settings) -> None:
    await ensure_topics(settings.bootstrap_servers, standard_topics(settings))


def lock_cmd(subject: str, version: int, action: str = "lock", kind: str = "user",
             dry_run: bool = False, expires_at: float | None = None) -> LockCommand:
    return LockCommand(
        command_id=f"cmd-{subject}-{version}", subject=subject, subject_kind=kind,  # type: ignore[arg-type]
        action=action, reason="test", detector="operator", evidence={},  # type: ignore[arg-type]
        issued_at=time.time(), expires_at=expires_at, issuer="test", version=version,
        dry_run=dry_run,
    )


async def produce(
    bootstrap: str, topic: str, records: Iterable[tuple[bytes | None, bytes]]
) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    await producer.start()
    try:
        for key, value in records:
            await producer.send(topic, value, key=key)
        await producer.flush()
    finally:
        await producer.stop()


async def produce_locks(bootstrap: str, topic: str, cmds: list[LockCommand]) -> None:
    """Publish commands signed with the session key, as a worker or operator would."""
    signer = session_signer()
    await produce(bootstrap, topic, [
        (lock_key(c.subject_kind, c.subject), encode_lock_command(c, signer)) for c in cmds
    ])


async def collect(bootstrap: str, topics: list[str], until: Callable[[Records], bool],
                  timeout: float, settle: float = 0.0) -> Records:
    """Read the topics from the beginning until `until(records)` holds or the timeout passes,
    then `settle` seconds more, so that records beyond what was awaited (duplicates) show up."""
    consumer = AIOKafkaConsumer(*topics, bootstrap_servers=bootstrap, group_id=None,
                                auto_offset_reset="earliest", enable_auto_commit=False)
    await consumer.start()
    seen: Records = []
    try:
        deadline = time.monotonic() + timeout
        settling = False
        while time.monotonic() < deadline:
            for records in (await consumer.getmany(timeout_ms=300)).values():
                seen.extend(records)
            if not settling and until(seen):
                settling, deadline = True, time.monotonic() + settle
        return seen
    finally:
        await consumer.stop()


async def read_all(bootstrap: str, topic: str, want: int, timeout: float = 30.0,
                   settle: float = 2.0) -> Records:
    """Every record of `topic` from the start: waits for `want`, then `settle` s more."""
    return await collect(bootstrap, [topic], lambda rs: len(rs) >= want, timeout, settle)


async def until(cond: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout}s: {what}")
        await asyncio.sleep(0.05)
