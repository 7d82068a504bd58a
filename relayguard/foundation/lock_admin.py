"""Operator actions on the lock topic, shared by the CLI and the worker's HTTP API: read what is
locked now, and issue lock/unlock commands that outrank what came before."""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from relayguard.foundation.errors import DownstreamError
from relayguard.foundation.kafka_clients import aiokafka_options
from relayguard.foundation.kafka_read import assign_from_beginning
from relayguard.foundation.settings import Settings
from relayguard.stream import codec
from relayguard.stream.records import LockAction, LockCommand, SubjectKind


async def read_latest(bootstrap: str, topic: str, timeout: float = 10.0,
                      kafka_options: Mapping[str, Any] | None = None) -> dict[bytes, bytes]:
    """Latest value per key of a compacted topic, read from the beginning up to its end now."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                                **(kafka_options or {}))
    await consumer.start()
    try:
        ends = await assign_from_beginning(consumer, topic, attempts=1)
        if not ends:
            raise DownstreamError(f"topic {topic} does not exist on {bootstrap}",
                                  "start a worker once (it creates the topics) or check the prefix")
        parts = list(ends)
        latest: dict[bytes, bytes] = {}
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            positions = [await consumer.position(tp) for tp in parts]
            if all(pos >= ends[tp] for pos, tp in zip(positions, parts, strict=True)):
                break
            batch = await consumer.getmany(timeout_ms=500)
            for records in batch.values():
                for rec in records:
                    if rec.key is not None and rec.value is not None:
                        latest[rec.key] = rec.value
        return latest
    finally:
        await consumer.stop()


async def current_commands(settings: Settings) -> dict[tuple[str, str], LockCommand]:
    """(kind, subject) -> the latest readable command; unreadable records are skipped."""
    out: dict[tuple[str, str], LockCommand] = {}
    latest = await read_latest(settings.bootstrap_servers, settings.topics.locks,
                               kafka_options=aiokafka_options(settings.kafka))
    for raw in latest.values():
        try:
            c = codec.decode_lock_command(raw)
        except codec.Rejected:
            continue
        out[(c.subject_kind, c.subject)] = c
    return out


def is_active(command: LockCommand, now: float) -> bool:
    return (command.action == "lock" and not command.dry_run
            and (command.expires_at is None or command.expires_at > now))


async def publish_command(bootstrap: str, topic: str, command: LockCommand,
                          kafka_options: Mapping[str, Any] | None = None) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", **(kafka_options or {}))
    await producer.start()
    try:
        await producer.send_and_wait(topic, codec.dumps(codec.lock_command_to_dict(command)),
                                     key=codec.lock_key(command.subject_kind, command.subject))
    finally:
        await producer.stop()


async def issue(settings: Settings, action: LockAction, subject: str, kind: SubjectKind,
                reason: str, ttl: float | None, issuer: str) -> LockCommand:
    """Publish an operator command whose version outranks the subject's latest command."""
    previous = (await current_commands(settings)).get((kind, subject))
    now = time.time()
    command = LockCommand(
        command_id=str(uuid.uuid4()), subject=subject, subject_kind=kind, action=action,
        reason=reason, detector="operator", evidence={}, issued_at=now,
        expires_at=now + ttl if ttl and action == "lock" else None, issuer=issuer,
        version=max((previous.version if previous else 0) + 1, int(now * 1000)),
        severity="high",
    )
    await publish_command(settings.bootstrap_servers, settings.topics.locks, command,
                          kafka_options=aiokafka_options(settings.kafka))
    return command
