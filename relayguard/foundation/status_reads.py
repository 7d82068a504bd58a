"""Bounded reads for `relayguard status` and the status API: the recent end of a topic, never
the whole of it.

The alerts and lock-acks topics grow with traffic; a status query reads at most `per_partition`
records from the end of each partition, within a deadline, and keeps what matches.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from aiokafka import AIOKafkaConsumer

from relayguard.foundation import lock_admin
from relayguard.foundation.errors import ConfigError, RelayguardError
from relayguard.foundation.kafka_clients import aiokafka_options
from relayguard.foundation.kafka_read import assign_from_beginning
from relayguard.foundation.settings import Settings
from relayguard.stream import codec
from relayguard.stream.records import Alert, LockAck, LockCommand
from relayguard.stream.timefmt import to_rfc3339

T = TypeVar("T")
MAX_HISTORY = 50  # newest audit records shown as the subject's lock history
MAX_FINDINGS = 20  # newest shown


async def read_tail(bootstrap: str, topic: str, per_partition: int,
                    keep: Callable[[bytes], T | None], timeout: float = 10.0,
                    kafka_options: Mapping[str, Any] | None = None) -> tuple[list[T], int]:
    """Records `keep` accepts among the last `per_partition` of each partition of `topic`, and
    how many records were read. A topic that does not exist gives nothing."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                                request_timeout_ms=int(timeout * 1000),
                                **(kafka_options or {}))
    try:
        await consumer.start()
    except BaseException:
        await consumer.stop()  # a client that never connected still holds a session
        raise
    try:
        ends = await assign_from_beginning(consumer, topic, attempts=1)
        if not ends:
            return [], 0
        starts = await consumer.beginning_offsets(list(ends))
        for tp, end in ends.items():
            consumer.seek(tp, max(starts[tp], end - per_partition))
        kept: list[T] = []
        read = 0
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if all([await consumer.position(tp) >= end for tp, end in ends.items()]):
                break
            batch = await consumer.getmany(timeout_ms=300)
            for tp, records in batch.items():
                for rec in records:
                    if rec.offset >= ends[tp] or rec.value is None:
                        continue
                    read += 1
                    item = keep(rec.value)
                    if item is not None:
                        kept.append(item)
        return kept, read
    finally:
        await consumer.stop()


def _matching(raw: bytes, kind: str, subject: str, record_type: str) -> dict[str, Any] | None:
    """The record if it is a valid `record_type` about this subject (schema-checked)."""
    if subject.encode() not in raw:  # cheap pre-filter: most records are about others
        return None
    try:
        d = codec.parse_record(raw, (record_type,))
    except codec.Rejected:
        return None  # hostile or foreign bytes: not shown
    if d.get("subject") != subject or d.get("subject_kind") != kind:
        return None
    return d


def alert_for(kind: str, subject: str) -> Callable[[bytes], Alert | None]:
    def keep(raw: bytes) -> Alert | None:
        d = _matching(raw, kind, subject, "alert")
        try:
            return None if d is None else codec.alert_from_dict(d)
        except (ValueError, TypeError):
            return None
    return keep


def ack_for(kind: str, subject: str) -> Callable[[bytes], LockAck | None]:
    def keep(raw: bytes) -> LockAck | None:
        d = _matching(raw, kind, subject, "lock_ack")
        try:
            return None if d is None else codec.lock_ack_from_dict(d)
        except (ValueError, TypeError):
            return None
    return keep


async def kafka_extras(settings: Settings, kind: str, subject: str, worker_command_id: str | None,
                      scan: int) -> dict[str, Any]:
    """The subject's latest lock command, the relays' acks of it (one per relay) and recent
    findings: shared by `relayguard status` and `GET /api/status/...?kafka=1`."""
    opts = aiokafka_options(settings.kafka)
    out: dict[str, Any] = {"scan_per_partition": scan}
    command: LockCommand | None = None
    try:
        listing = await lock_admin.read_commands(settings)
        command = listing.commands.get((kind, subject))
    except ConfigError as exc:  # no verify key: the lock topic cannot be trusted, so not shown
        out.setdefault("warnings", []).append(f"lock topic not read: {exc}")
    out["lock_command"] = None if command is None else codec.lock_command_to_dict(command)
    out["lock_active"] = command is not None and lock_admin.is_active(command, time.time())
    out["lock_history"] = await _lock_history(settings, kind, subject)
    acks, acks_read = await read_tail(
        settings.bootstrap_servers, settings.topics.lock_acks, scan,
        ack_for(kind, subject), kafka_options=opts)
    wanted = command.command_id if command is not None else worker_command_id
    issued = command.issued_at if command is not None else None
    # after_seconds: from the command's issued_at (a worker issues at the triggering event's
    # time, so this includes the event's way through Kafka and the worker) to the relay's ack.
    mine = {}
    for a in acks:  # one per relay: its latest ack of the current command
        if a.command_id == wanted:
            mine[a.relay_id] = a
    out["acks"] = [{"relay_id": a.relay_id, "applied_at": to_rfc3339(a.applied_at),
                    "action": a.action, "version": a.version,
                    "after_seconds": None if issued is None else round(a.applied_at - issued, 3)}
                   for a in sorted(mine.values(), key=lambda a: a.applied_at)]
    out["acks_read"] = acks_read
    alerts, alerts_read = await read_tail(
        settings.bootstrap_servers, settings.topics.alerts, scan,
        alert_for(kind, subject), kafka_options=opts)
    alerts.sort(key=lambda a: a.event_time, reverse=True)
    out["findings"] = [codec.alert_to_dict(a) for a in alerts[:MAX_FINDINGS]]
    out["findings_read"] = alerts_read
    return out


async def _lock_history(settings: Settings, kind: str, subject: str) -> dict[str, Any]:
    """The subject's lock history from the audit topic (bounded: its last records)."""
    from relayguard.foundation import audit

    try:
        trail = await audit.read(settings, None, subject, kind, max_records=10_000)
    except RelayguardError as exc:
        return {"available": False, "note": f"audit topic not read: {exc}", "records": []}
    records = trail.records[-MAX_HISTORY:]
    return {"available": True, "note": f"{len(records)} audit record(s), oldest first"
            + (" (older ones not read)" if trail.truncated else ""), "records": records}
