"""Operator commands on the lock topic: lock, unlock, and list what is locked now."""

from __future__ import annotations

import asyncio
import getpass
import socket
import time
import uuid
from typing import Any

import click
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from relayguard.cli_support import friendly_errors
from relayguard.errors import DownstreamError
from relayguard.settings import load_settings
from stream import codec
from stream.records import LockCommand, SubjectKind
from stream.timefmt import to_rfc3339


def _issuer() -> str:
    return f"cli:{getpass.getuser()}@{socket.gethostname()}"


async def read_latest(bootstrap: str, topic: str, timeout: float = 10.0) -> dict[bytes, bytes]:
    """Latest value per key of a compacted topic, read from the beginning up to its end now."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        # consumer.topics() fetches but does not keep metadata; ask the client directly.
        cluster = await consumer._client.fetch_all_metadata()
        parts = [TopicPartition(topic, p) for p in (cluster.partitions_for_topic(topic) or [])]
        if not parts:
            raise DownstreamError(f"topic {topic} does not exist on {bootstrap}",
                                  "start a worker once (it creates the topics) or check the prefix")
        consumer.assign(parts)
        await consumer.seek_to_beginning(*parts)
        ends = await consumer.end_offsets(parts)
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


async def publish_command(bootstrap: str, topic: str, command: LockCommand) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        await producer.send_and_wait(topic, codec.dumps(codec.lock_command_to_dict(command)),
                                     key=codec.lock_key(command.subject_kind, command.subject))
    finally:
        await producer.stop()


async def _operator_command(action: str, subject: str, kind: SubjectKind, reason: str,
                            ttl: float | None) -> LockCommand:
    s = load_settings()
    latest = await read_latest(s.bootstrap_servers, s.topics.locks)
    previous = latest.get(codec.lock_key(kind, subject))
    prev_version = codec.decode_lock_command(previous).version if previous else 0
    now = time.time()
    command = LockCommand(
        command_id=str(uuid.uuid4()), subject=subject, subject_kind=kind,
        action=action,  # type: ignore[arg-type]
        reason=reason, detector="operator", evidence={}, issued_at=now,
        expires_at=now + ttl if ttl else None, issuer=_issuer(),
        version=max(prev_version + 1, int(now * 1000)), severity="high",
    )
    await publish_command(s.bootstrap_servers, s.topics.locks, command)
    return command


def _subject_options(fn: Any) -> Any:
    fn = click.option("--ip", "is_ip", is_flag=True, help="SUBJECT is a client IP, not a user")(fn)
    fn = click.option("--reason", required=True, help="why; kept in the audit trail")(fn)
    return click.argument("subject")(fn)


@click.command(help="Lock a user (or, with --ip, a client IP) on every relay now.")
@_subject_options
@click.option("--ttl", type=float, default=None, help="seconds until it expires (default: never)")
@friendly_errors
def lock(subject: str, is_ip: bool, reason: str, ttl: float | None) -> None:
    cmd = asyncio.run(_operator_command("lock", subject, "ip" if is_ip else "user", reason, ttl))
    click.echo(f"locked {cmd.subject_kind} {cmd.subject} (command {cmd.command_id}, "
               f"version {cmd.version})")


@click.command(help="Unlock a user (or, with --ip, a client IP) on every relay.")
@_subject_options
@friendly_errors
def unlock(subject: str, is_ip: bool, reason: str) -> None:
    cmd = asyncio.run(_operator_command("unlock", subject, "ip" if is_ip else "user", reason, None))
    click.echo(f"unlocked {cmd.subject_kind} {cmd.subject} (command {cmd.command_id}, "
               f"version {cmd.version})")


@click.command(help="List what is locked now, from the compacted lock topic.")
@friendly_errors
def locks() -> None:
    s = load_settings()
    latest = asyncio.run(read_latest(s.bootstrap_servers, s.topics.locks))
    now = time.time()
    shown = 0
    for raw in latest.values():
        try:
            c = codec.decode_lock_command(raw)
        except codec.Rejected as exc:
            click.echo(f"(unreadable record: {exc})", err=True)
            continue
        if c.action != "lock" or c.dry_run or (c.expires_at is not None and c.expires_at <= now):
            continue
        until = "until unlocked" if c.expires_at is None else f"until {to_rfc3339(c.expires_at)}"
        click.echo(f"{c.subject_kind:4} {c.subject:30} {until:35} {c.detector:18} {c.reason}")
        shown += 1
    click.echo(f"{shown} active lock(s)")
