"""Which Slack message tells each open incident, and what a lock command does to it.

One incident per subject ("kind:subject"): the message the worker posted for the subject's
first alert, with its channel id and ts, so later lock commands can update it (chat.update):
lifted by an operator, expired, or changed (a throttle escalated to a lock). An unlock closes
the incident; the subject's next alert starts a new message.

The store sits on a Faust table (one partition, co-assigned with the single-partition alerts and
locks topics, so the worker that posts is the worker that updates), which makes the mapping
survive a restart: the table is rebuilt from its changelog. It is bounded: past `limit` entries
the oldest incident is forgotten (its message just stops being updated). Table values are bytes
we wrote, but are still checked: a bad entry is dropped, never raised.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import MutableMapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import orjson

from relayguard.stream import codec
from relayguard.stream.records import Alert, LockCommand
from relayguard.stream.timefmt import to_rfc3339

log = logging.getLogger("relayguard.slack")
ALERT_BYTES_KEPT = 16 * 1024  # bigger alerts are kept without their evidence
StatusKind = Literal["open", "changed", "lifted", "expired"]
EXPIRY_DETECTOR = "policy.expiry"


def incident_key(kind: str, subject: str) -> str:
    return f"{kind}:{subject}"


@dataclass(frozen=True)
class Status:
    kind: StatusKind
    text: str

    @property
    def closed(self) -> bool:
        return self.kind in ("lifted", "expired")


@dataclass(frozen=True)
class Incident:
    channel: str  # a channel id (chat.update wants the id, not "#name")
    ts: str
    alert: dict[str, Any]  # the first alert, as on the wire, to render the message again
    command_id: str | None
    version: int = 0  # of the newest lock command seen for the subject; 0 = none seen yet
    status: Status = field(default_factory=lambda: Status("open", ""))

    @property
    def key(self) -> str:
        return incident_key(self.alert["subject_kind"], self.alert["subject"])

    def first_alert(self) -> Alert:
        return codec.alert_from_dict(self.alert)


def new_incident(alert: Alert, channel: str, ts: str) -> Incident:
    wire = codec.alert_to_dict(alert)
    if len(orjson.dumps(wire)) > ALERT_BYTES_KEPT:
        wire["evidence"] = {"note": f"evidence too large to keep; see alert {alert.alert_id} in "
                                    "the alerts topic"}
    return Incident(channel, ts, wire, alert.command_id)


def encode(incident: Incident) -> bytes:
    return orjson.dumps({"channel": incident.channel, "ts": incident.ts, "alert": incident.alert,
                         "command_id": incident.command_id, "version": incident.version,
                         "status": [incident.status.kind, incident.status.text]})


def decode(raw: bytes) -> Incident:
    """Raises ValueError (or KeyError/TypeError, caught by the store) on anything odd."""
    d = orjson.loads(raw)
    kind, text = d["status"]
    if kind not in ("open", "changed", "lifted", "expired"):
        raise ValueError(f"status {kind!r}")
    codec.alert_from_dict(dict(d["alert"]))  # the alert must still render
    return Incident(str(d["channel"]), str(d["ts"]), dict(d["alert"]),
                    None if d["command_id"] is None else str(d["command_id"]),
                    int(d["version"]), Status(kind, str(text)))


def _lock_text(command: LockCommand) -> str:
    until = (f"until {to_rfc3339(command.expires_at)}" if command.expires_at is not None
             else "until unlocked")
    return f"locked {until} by {command.issuer} ({command.reason})"


def after_command(incident: Incident, command: LockCommand) -> Incident | None:
    """The incident once `command` (verified, for the incident's subject) is taken into account,
    or None when the command changes nothing the message shows (stale, dry-run, the very lock
    the message already announced)."""
    if command.dry_run or command.version < incident.version:
        return None
    if command.action == "unlock":
        at = to_rfc3339(command.issued_at)
        if command.detector == EXPIRY_DETECTOR:
            status = Status("expired", f"lock expired at {at}; {command.subject} may send again")
        else:
            status = Status("lifted", f"unlocked by {command.issuer} at {at}: {command.reason}")
        return replace(incident, version=command.version, status=status)
    if command.command_id == incident.command_id:  # the lock this message announced
        return replace(incident, version=command.version) \
            if command.version != incident.version else None
    return replace(incident, command_id=command.command_id, version=command.version,
                   status=Status("changed", f"changed: now {_lock_text(command)}"))


def lifts(unlock: LockCommand, alert: Alert) -> bool:
    """Does an unlock seen before `alert` was posted (the alerts agent lagging behind the lock
    topic) already end the incident the alert opens? The expiry names the lock it ends; an
    operator's unlock counts when issued after the event that tripped the alert."""
    if unlock.action != "unlock" or unlock.dry_run or alert.remedy == "alert":
        return False
    if unlock.detector == EXPIRY_DETECTOR:
        return unlock.evidence.get("expired_command_id") == alert.command_id
    return unlock.issued_at >= alert.event_time


def after_follow_up(incident: Incident, alert: Alert) -> Incident | None:
    """A later alert on an open incident that brings a new lock/throttle (an escalation)."""
    if alert.remedy == "alert" or alert.dry_run or not alert.command_id \
            or alert.command_id == incident.command_id:
        return None
    what = "locked until unlocked" if alert.remedy == "lock" else "throttled (lock with expiry)"
    return replace(incident, command_id=alert.command_id,
                   status=Status("changed", f"changed: now {what} after {alert.detector}"))


class IncidentStore:
    """Bounded `key -> Incident` over a MutableMapping of bytes (a Faust table in the worker,
    a dict in unit tests). Insertion order = age; the index is rebuilt from the table once."""

    def __init__(self, table: MutableMapping[str, bytes], limit: int) -> None:
        self.table = table
        self.limit = limit
        self._order: OrderedDict[str, None] | None = None

    def _index(self) -> OrderedDict[str, None]:
        if self._order is None:  # first use after start: the table has been recovered
            self._order = OrderedDict((k, None) for k, v in list(self.table.items())
                                      if v is not None)
            if self._order:
                log.info("Slack: %d open incident message(s) recovered", len(self._order))
        return self._order

    def __len__(self) -> int:
        return len(self._index())

    def get(self, key: str) -> Incident | None:
        raw = self.table.get(key) if key in self._index() else None
        if raw is None:
            return None
        try:
            return decode(raw)
        except (ValueError, KeyError, TypeError, orjson.JSONDecodeError) as exc:
            log.error("Slack: unreadable incident entry for %s dropped (%s)", key[:80], exc)
            self.remove(key)
            return None

    def put(self, incident: Incident) -> None:
        order = self._index()
        key = incident.key
        self.table[key] = encode(incident)
        order[key] = None
        order.move_to_end(key)
        while len(order) > self.limit:
            old, _ = order.popitem(last=False)
            del self.table[old]

    def remove(self, key: str) -> None:
        if self._index().pop(key, 0) is None:
            del self.table[key]
