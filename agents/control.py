"""Control records: lock commands issued elsewhere (operators, other workers) and expiry ticks,
routed to the partition that owns the subject's state so the table can be updated there.

Control topic: key = subject (same bytes and partition count as the events / by-IP topics, so
the default partitioner puts it in the partition whose table holds the subject's state).
"""

from __future__ import annotations

import logging
from collections.abc import MutableMapping
from dataclasses import replace
from typing import Any

import orjson

from relayguard.agents import state_codec
from relayguard.agents.pipeline import Pipeline
from relayguard.stream import codec, engine
from relayguard.stream.lock_sync import apply_command
from relayguard.stream.records import LockCommand, SubjectKind

log = logging.getLogger("relayguard.worker")
Tables = dict[str, MutableMapping[str, bytes]]  # subject kind -> table


def sync_record(command: LockCommand) -> tuple[bytes, bytes]:
    """(key, value) for the control topic telling the owner of `command.subject` about it."""
    value = {"type": "sync", "command": codec.lock_command_to_dict(command)}
    return command.subject.encode(), orjson.dumps(value)


def tick_record(kind: SubjectKind, key: str, now: float) -> tuple[bytes, bytes]:
    return key.encode(), orjson.dumps({"type": "tick", "kind": kind, "key": key, "now": now})


async def handle_control(pipeline: Pipeline, raw: bytes, tables: Tables) -> None:
    try:
        data: dict[str, Any] = orjson.loads(raw)
        if data["type"] == "sync":
            _sync(pipeline, codec.lock_command_from_dict(data["command"]), tables)
        elif data["type"] == "tick":
            await _tick(pipeline, data["kind"], data["key"], float(data["now"]), tables)
    except (KeyError, TypeError, ValueError, orjson.JSONDecodeError) as exc:
        log.error("unreadable control record skipped (%s): %r", exc, raw[:200])


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
