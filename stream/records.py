"""Frozen records that cross the core's boundary: relay events in, lock commands and alerts out.

Times are float seconds since the epoch (UTC); the codec turns them into RFC 3339 strings on the
wire. The core never reads the wall clock: every time here came from an event or was passed in.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

SubjectKind = Literal["user", "ip"]
LockAction = Literal["lock", "unlock"]
Severity = Literal["info", "low", "medium", "high", "critical"]
Remedy = Literal["alert", "throttle", "lock"]


@dataclass(frozen=True, slots=True)
class LoginEvent:
    """One SMTP AUTH attempt, successful or not."""

    event_id: str
    event_time: float
    relay_id: str
    user: str | None  # None when the relay's log did not name the user (old Postfix lines)
    client_ip: str
    success: bool
    tls_protocol: str | None = None  # None means the session had no TLS
    sasl_mechanism: str | None = None
    failure_reason: str | None = None
    source: str = "unknown"
    # Keyed hash of the attempted password (never the password), so distinct guesses can be counted.
    password_hash: str | None = None
    # Set by enrichment (GeoIP), never by relays.
    geo: GeoPoint | None = None


@dataclass(frozen=True, slots=True)
class SendEvent:
    """One authenticated message accepted by a relay."""

    event_id: str
    event_time: float
    relay_id: str
    user: str
    client_ip: str
    sender: str
    recipient_count: int
    size: int
    tls_protocol: str | None = None
    queue_id: str | None = None
    source: str = "unknown"
    # Bounded summary of the RCPTs (optional: old relays and log followers cannot know): at most
    # 32 distinct lowercase domains, first seen first, and how many distinct domains there were.
    recipient_domains: tuple[str, ...] | None = None
    recipient_domain_count: int | None = None


DeliveryStatus = Literal["sent", "bounced", "deferred", "expired"]


@dataclass(frozen=True, slots=True)
class DeliveryEvent:
    """The outcome of delivering a message the user sent (Postfix status= line, attributed to
    the user through the queue id). No client address: the relay, not the client, delivers."""

    event_id: str
    event_time: float
    relay_id: str
    user: str
    queue_id: str
    status: DeliveryStatus
    recipient_domain: str | None = None
    dsn: str | None = None  # enhanced status code, e.g. "5.1.1"
    source: str = "unknown"

    @property
    def client_ip(self) -> str:
        """No client connection: empty, so code that keys by `user or client_ip` (relays, the
        worker) keeps working; the user is always named. Never forwarded by IP."""
        return ""


Event = LoginEvent | SendEvent | DeliveryEvent


@dataclass(frozen=True, slots=True)
class GeoPoint:
    """Where a client IP is, with MaxMind's 67% accuracy radius in km."""

    latitude: float
    longitude: float
    accuracy_radius_km: float
    country: str | None = None
    city: str | None = None


@dataclass(frozen=True, slots=True)
class Finding:
    """Something a detector saw. The policy step decides what, if anything, to do about it."""

    detector: str
    subject: str
    subject_kind: SubjectKind
    event_time: float
    summary: str
    evidence: dict[str, Any] = field(default_factory=dict)
    # Detectors that only feed correlation set this; policy then never acts on the finding alone.
    signal_only: bool = False


@dataclass(frozen=True, slots=True)
class LockCommand:
    command_id: str
    subject: str
    subject_kind: SubjectKind
    action: LockAction
    reason: str
    detector: str
    evidence: dict[str, Any]
    issued_at: float
    expires_at: float | None
    issuer: str
    version: int
    severity: Severity = "high"
    dry_run: bool = False


@dataclass(frozen=True, slots=True)
class Alert:
    alert_id: str
    detector: str
    severity: Severity
    subject: str
    subject_kind: SubjectKind
    summary: str
    evidence: dict[str, Any]
    event_time: float
    remedy: Remedy
    command_id: str | None = None
    dry_run: bool = False


@dataclass(frozen=True, slots=True)
class LockAck:
    """A relay confirms it now enforces a command."""

    relay_id: str
    command_id: str
    subject: str
    subject_kind: SubjectKind
    action: LockAction
    version: int
    applied_at: float
