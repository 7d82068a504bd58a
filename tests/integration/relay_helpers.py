"""Shared helpers for the relay integration tests: topics, lock commands, reading a topic."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from relayguard.broker.topics import ensure_topics, standard_topics
from relayguard.settings import Settings
from stream.codec import dumps, lock_command_to_dict, lock_key
from stream.records import LockCommand


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


async def produce(bootstrap: str, topic: str, items: list[tuple[bytes, bytes]]) -> None:
    p = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await p.start()
    try:
        for key, value in items:
            await p.send_and_wait(topic, value=value, key=key)
    finally:
        await p.stop()


async def produce_locks(bootstrap: str, topic: str, cmds: list[LockCommand]) -> None:
    await produce(bootstrap, topic, [
        (lock_key(c.subject_kind, c.subject), dumps(lock_command_to_dict(c))) for c in cmds
    ])


async def read_all(bootstrap: str, topic: str, want: int, timeout: float = 30.0,
                   settle: float = 2.0) -> list[Any]:
    """Every record of `topic` from the start: waits for `want`, then `settle` s more so that
    duplicates beyond `want` would show up too."""
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


async def until(cond: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout}s: {what}")
        await asyncio.sleep(0.05)
