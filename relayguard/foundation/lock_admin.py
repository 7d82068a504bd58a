"""Operator actions on the lock topic, shared by the CLI and the worker's HTTP API: read what is
locked now (verified records only), and issue signed lock/unlock commands that outrank what came
before. Without a signing key, issuing is refused with a ConfigError before any Kafka I/O."""

from __future__ import annotations

import time
import uuid
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from relayguard.foundation import audit, signing, topic_tail
from relayguard.foundation.errors import ConfigError, DownstreamError
from relayguard.foundation.kafka_clients import aiokafka_options
from relayguard.foundation.kafka_read import assign_from_beginning
from relayguard.foundation.settings import Settings, load_settings
from relayguard.foundation.signing import Signer
from relayguard.stream import codec
from relayguard.stream.records import LockAction, LockCommand, SubjectKind
from relayguard.stream.signed import MAX_TTL_SECONDS, Verifier
from relayguard.stream.user_names import canonical_subject


async def read_latest(bootstrap: str, topic: str, timeout: float = 10.0,
                      kafka_options: Mapping[str, Any] | None = None) -> dict[bytes, bytes]:
    """Latest value per key of a compacted topic, read from the beginning up to its end now."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                                **(kafka_options or {}))
    await topic_tail.start_client(consumer, bootstrap)  # bounded: one clear error, no hang
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


@dataclass
class Listing:
    """What the lock topic says now, from verified records only."""

    commands: dict[tuple[str, str], LockCommand] = field(default_factory=dict)
    refused: Counter[str] = field(default_factory=Counter)  # reason -> records not trusted


async def read_commands(settings: Settings, keyring: Verifier | None = None,
                        now: float | None = None) -> Listing:
    """(kind, subject) -> the latest command signed by a known key and in range. Records that
    are not (forged, unsigned, year 10000, a version of 1e300) are skipped and counted by
    reason: one bad record never breaks the listing for everyone."""
    keyring = keyring if keyring is not None else signing.keyring_from_settings(settings)
    now = time.time() if now is None else now
    listing = Listing()
    for raw in (await read_latest(settings.bootstrap_servers, settings.topics.locks,
                                    kafka_options=aiokafka_options(settings.kafka))).values():
        try:
            c = codec.decode_signed_lock_command(raw, keyring, now,
                                                 settings.signing_max_skew_seconds)
        except codec.Rejected as exc:
            listing.refused[exc.reason] += 1
            continue
        key = (c.subject_kind, canonical_subject(c.subject_kind, c.subject, settings.user_names))
        if key not in listing.commands or c.version > listing.commands[key].version:
            listing.commands[key] = c  # `Alice` and `alice` are one subject: newest wins
    return listing


async def current_commands(settings: Settings,
                           keyring: Verifier | None = None) -> dict[tuple[str, str], LockCommand]:
    return (await read_commands(settings, keyring)).commands


def is_active(command: LockCommand, now: float) -> bool:
    return (command.action == "lock" and not command.dry_run
            and (command.expires_at is None or command.expires_at > now))


async def publish_command(bootstrap: str, topic: str, command: LockCommand,
                          signer: Signer | None = None,
                          kafka_options: Mapping[str, Any] | None = None,
                          audit_topic: str | None = None, source: str = "other") -> None:
    """Publish `command` signed (by default with the configured RELAYGUARD_SIGNING_KEY); with
    `audit_topic`, then its audit record (schemas/audit-record.schema.json)."""
    signer = signer if signer is not None else signing.signer_from_settings(load_settings())
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", **(kafka_options or {}))
    await topic_tail.start_client(producer, bootstrap)
    try:
        try:
            await producer.send_and_wait(topic, codec.encode_lock_command(command, signer),
                                         key=codec.lock_key(command.subject_kind,
                                                            command.subject))
        except Exception as exc:
            raise topic_tail.unreachable(bootstrap, exc) from None
        if audit_topic is not None:
            record = audit.audit_record(command, source, time.time())
            try:
                await producer.send_and_wait(audit_topic, audit.encode(record),
                                             key=audit.key(record))
            except Exception as exc:
                raise DownstreamError(
                    f"command {command.command_id} was published, but its audit record was "
                    f"not ({type(exc).__name__}: {exc})",
                    "the lock is in force; note the action by hand and check Kafka") from None
    finally:
        await producer.stop()


async def issue(settings: Settings, action: LockAction, subject: str, kind: SubjectKind,
                reason: str, ttl: float | None, issuer: str, signer: Signer | None = None,
                keyring: Verifier | None = None, *, source: str | None = None) -> LockCommand:
    """Publish an operator command whose version outranks the subject's latest verified
    command (a forged huge version on the topic is skipped, so it cannot hold the subject),
    and record it in the audit trail (`source` defaults to the issuer's prefix: cli, api,
    slack)."""
    signer = signer if signer is not None else signing.signer_from_settings(settings)
    keyring = keyring if keyring is not None else signing.keyring_from_settings(settings)
    if ttl is not None and not 0 < ttl <= MAX_TTL_SECONDS:
        raise ConfigError(f"ttl {ttl:g}s is not within (0, {MAX_TTL_SECONDS:.0f}] seconds",
                          "give a TTL of at most 10 years, or none to lock until unlocked")
    subject = canonical_subject(kind, subject, settings.user_names)  # as relays look it up
    previous = (await current_commands(settings, keyring)).get((kind, subject))
    now = time.time()
    command = LockCommand(
        command_id=str(uuid.uuid4()), subject=subject, subject_kind=kind, action=action,
        reason=reason, detector="operator", evidence={}, issued_at=now,
        expires_at=now + ttl if ttl and action == "lock" else None, issuer=issuer,
        version=max((previous.version if previous else 0) + 1, int(now * 1000)),
        severity="high",
    )
    await publish_command(settings.bootstrap_servers, settings.topics.locks, command, signer,
                          kafka_options=aiokafka_options(settings.kafka),
                          audit_topic=settings.topics.audit,
                          source=source or audit.source_of(issuer))
    return command
