"""Control records: lock commands issued elsewhere (operators, other workers) and expiry ticks,
routed to the partition that owns the subject's state so the table can be updated there.

Control topic: key = subject (same bytes and partition count as the events / by-IP topics, so
the default partitioner puts it in the partition whose table holds the subject's state).
Every control record is signed (stream/control_codec.py); unsigned, forged or out-of-range ones
are refused and counted in `signed_records_refused_total{source="control"}`.
"""

from __future__ import annotations

import logging
from collections.abc import MutableMapping
from dataclasses import replace
from typing import Any

from relayguard.agents import state_codec
from relayguard.agents.pipeline import Pipeline
from relayguard.stream import codec, control_codec, engine
from relayguard.stream.lock_sync import apply_command
from relayguard.stream.records import LockCommand, SubjectKind
from relayguard.stream.signed import Signer, Verifier

log = logging.getLogger("relayguard.worker")
Tables = dict[str, MutableMapping[str, bytes]]  # subject kind -> table


def sync_record(signed_command: dict[str, Any], signer: Signer) -> tuple[bytes, bytes]:
    """(key, value) for the control topic telling the owner of the subject about a command
    (`signed_command` as read from the locks topic, signature and all)."""
    return (str(signed_command["subject"]).encode(),
            control_codec.sync_value(signed_command, signer))


def tick_record(kind: SubjectKind, key: str, now: float, signer: Signer) -> tuple[bytes, bytes]:
    return key.encode(), control_codec.tick_value(kind, key, now, signer)


async def handle_control(pipeline: Pipeline, raw: bytes, tables: Tables, keyring: Verifier,
                         now: float, skew: float) -> None:
    """One control record; `now` is the worker's clock. Never raises on a bad record."""
    try:
        record = control_codec.decode_control(raw, keyring, now, skew)
    except codec.Rejected as exc:
        pipeline.metrics.inc("signed_records_refused_total", source="control", reason=exc.reason)
        log.error("REFUSED control record (%s), not obeyed: %r", exc, raw[:200])
        return
    if isinstance(record, control_codec.Sync):
        _sync(pipeline, record.command, tables)
    else:
        await _tick(pipeline, record.kind, record.key, record.now, tables)


def _sync(pipeline: Pipeline, command: LockCommand, tables: Tables) -> None:
    table = tables[command.subject_kind]
    stored = table.get(command.subject)
    state = state_codec.loads(stored) if stored else engine.KeyState()
    lock = apply_command(state.lock, command)
    if lock is not state.lock:
        log.info("lock state of %s %s follows %s's %s (v%d)", command.subject_kind,
                 command.subject, command.issuer, command.action, command.version)
        pipeline.store(command.subject_kind, command.subject, replace(state, lock=lock), table)


async def _tick(pipeline: Pipeline, kind: SubjectKind, key: str, now: float,
                tables: Tables) -> None:
    table = tables[kind]
    stored = table.get(key)
    if not stored:
        pipeline.expiring.pop((kind, key), None)
        return
    result = engine.tick(pipeline.params, kind, key, state_codec.loads(stored), now)
    pipeline.store(kind, key, result.state, table)
    await pipeline.emit(result)


def due_for_expiry(pipeline: Pipeline, tables: Tables, now: float,
                   full_scan: bool) -> list[tuple[SubjectKind, str]]:
    """Subjects whose throttle has run out. A full scan (once after start) rebuilds the index
    from the recovered tables; later calls only read the index."""
    if full_scan:
        for kind, table in tables.items():
            for key, stored in list(table.items()):
                lock = state_codec.loads(stored).lock
                if lock.locked and lock.expires_at is not None:
                    pipeline.expiring[(kind, key)] = lock.expires_at  # type: ignore[index]
    return [k for k, exp in pipeline.expiring.items() if exp <= now]
