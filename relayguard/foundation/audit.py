"""The audit trail: one record per lock, unlock, expiry and operator action, on the
non-compacted audit topic (schemas/audit-record.schema.json).

Writers: the worker for every command it publishes (agents/app.py KafkaOutputs.lock_command,
expiry unlocks included) and `lock_admin.issue` for operator actions (CLI, HTTP API, Slack).
Audit ids are deterministic (`<command_id>:<event>`), so an at-least-once re-send is one entry
for the reader. Readers treat every record as hostile: invalid ones are counted, not shown."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import fastjsonschema
import orjson

from relayguard import schemas
from relayguard.foundation import topic_tail
from relayguard.foundation.kafka_clients import aiokafka_options
from relayguard.foundation.settings import Settings
from relayguard.stream.records import LockCommand
from relayguard.stream.timefmt import parse_rfc3339, to_rfc3339

EXPIRY_DETECTOR = "policy.expiry"  # the worker's unlock of a throttle whose TTL ran out
MAX_RECORD_BYTES = 16 * 1024
_validate: Callable[[Any], Any] = fastjsonschema.compile(schemas.load("audit-record"))


def source_of(issuer: str) -> str:
    """Which door an action came through, from the command's issuer."""
    head = issuer.split(":", 1)[0]
    return head if head in ("cli", "api", "slack") else "other"


def audit_record(command: LockCommand, source: str, recorded_at: float) -> dict[str, Any]:
    event = "expiry" if command.detector == EXPIRY_DETECTOR else command.action
    return {
        "type": "audit", "audit_id": f"{command.command_id}:{event}",
        "recorded_at": to_rfc3339(recorded_at), "event": event, "source": source,
        "issuer": command.issuer[:512], "subject": command.subject,
        "subject_kind": command.subject_kind, "reason": command.reason[:4096],
        "command_id": command.command_id, "version": command.version,
        "detector": command.detector, "issued_at": to_rfc3339(command.issued_at),
        "expires_at": None if command.expires_at is None else to_rfc3339(command.expires_at),
        "severity": command.severity, "dry_run": command.dry_run,
    }


def encode(record: Mapping[str, Any]) -> bytes:
    return orjson.dumps(record)


def key(record: Mapping[str, Any]) -> bytes:
    return f"{record['subject_kind']}:{record['subject']}".encode()


def decode(raw: bytes | None) -> dict[str, Any]:
    """A checked audit record; ValueError for anything else."""
    if raw is None or len(raw) > MAX_RECORD_BYTES:
        raise ValueError("empty or oversized")
    try:
        data = orjson.loads(raw)
        _validate(data)
        parse_rfc3339(data["recorded_at"])
    except (orjson.JSONDecodeError, fastjsonschema.JsonSchemaValueException, ValueError,
            OverflowError, TypeError) as exc:
        raise ValueError(str(exc)[:200]) from None
    if type(data["version"]) is not int:
        raise ValueError("version is not an integer")
    return dict(data)


@dataclass
class Trail:
    records: list[dict[str, Any]] = field(default_factory=list)  # oldest first
    invalid: Counter[str] = field(default_factory=Counter)
    truncated: bool = False


async def read(settings: Settings, since: float | None, subject: str | None = None,
               kind: str | None = None, max_records: int = 10_000) -> Trail:
    """Audit records recorded since `since`, newest `max_records` at most, for one subject or
    all; de-duplicated by audit id, oldest first."""
    tail = await topic_tail.read_tail(settings.bootstrap_servers, settings.topics.audit, since,
                                      max_records, aiokafka_options(settings.kafka))
    trail, seen = Trail(truncated=tail.truncated), set()
    for rec in tail.records:
        try:
            data = decode(rec.value)
        except ValueError:
            trail.invalid["invalid"] += 1
            continue
        if subject is not None and (data["subject"] != subject or data["subject_kind"] != kind):
            continue
        if data["audit_id"] in seen:
            continue
        seen.add(data["audit_id"])
        trail.records.append(data)
    trail.records.sort(key=lambda d: (parse_rfc3339(d["recorded_at"]), d["version"]))
    return trail
