"""Decide: turn findings into lock commands and alerts, per subject, idempotently.

Per detector an operator chooses the remedy (alert only, throttle = lock with a TTL, or lock until
unlocked), the severity and a cool-down; a global dry-run computes everything but marks it so no
relay enforces it. One incident gives one lock command however many findings arrive: a subject
already locked at the same or a stronger remedy gets no new command. Within one batch the
findings are taken strongest remedy first, so an event that trips a throttle and a lock at once
gives one lock command, not a throttle and then a lock.

An IP lock has a scope (`evidence.scope` of the command, signed with the rest): "all" refuses
every session from the address, authenticated or not (also what a command without a scope means,
so old commands keep their effect); "unauthenticated" refuses only clients that have not
authenticated (AUTH attempts where a relay can refuse them, unauthenticated sessions), never a
user who authenticates correctly from the address: what per-IP failure rules issue unless the
evidence is guessing across users, so an office NAT behind one stale phone refuses no colleague.
A wider scope escalates like a stronger remedy; an active lock is never narrowed.

A user lock may have a scope too: "unfamiliar_networks" (what `auth_failures_slow` asks for)
refuses the user from every network except `evidence.familiar_networks`, the networks (/16,
/48) the user logged in from successfully before the guessing began: a slow guesser rotating
proxies is refused while the owner keeps working from home and the office. Any other value (or
none) refuses the user everywhere, so a relay that cannot read the scope errs on the side of
locking.

A detector whose policy is `silent` (remedy "alert") produces no alert: its findings still feed
correlation, which sees every finding before policy does.
"""

from __future__ import annotations

import ipaddress
import uuid
from dataclasses import dataclass, field
from typing import Any

from relayguard.stream.detectors.common import network_of
from relayguard.stream.evolve import evolve
from relayguard.stream.records import Alert, Finding, LockCommand, Remedy, Severity, SubjectKind

_IDS = uuid.UUID("6f6c1a52-0f0e-4f55-9a43-0d3c5b2b7e11")  # namespace for deterministic ids
IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
_STRENGTH = {"alert": 0, "throttle": 1, "lock": 2}
SCOPE_ALL = "all"
SCOPE_UNAUTHENTICATED = "unauthenticated"
SCOPE_UNFAMILIAR = "unfamiliar_networks"  # user locks: spare the user's familiar networks
SCOPES = (SCOPE_ALL, SCOPE_UNAUTHENTICATED, SCOPE_UNFAMILIAR)
MAX_SPARED_NETWORKS = 64


def scope_of(evidence: dict[str, Any] | None) -> str:
    """The scope an IP lock's evidence asks for. Anything but "unauthenticated" (missing, an
    unknown word) is "all": a relay that cannot read the scope errs on the side of blocking."""
    if evidence is not None and evidence.get("scope") == SCOPE_UNAUTHENTICATED:
        return SCOPE_UNAUTHENTICATED
    return SCOPE_ALL


def user_scope_of(evidence: dict[str, Any] | None) -> str:
    """The scope a user lock's evidence asks for: "unfamiliar_networks" only with a list of
    networks to spare; anything else is "all"."""
    if (evidence is not None and evidence.get("scope") == SCOPE_UNFAMILIAR
            and isinstance(evidence.get("familiar_networks"), list)):
        return SCOPE_UNFAMILIAR
    return SCOPE_ALL


def command_scope(command: LockCommand) -> str:
    if command.subject_kind == "ip":
        return scope_of(command.evidence)
    return user_scope_of(command.evidence)


def spared_networks(command: LockCommand) -> frozenset[str]:
    """The networks a user lock of scope "unfamiliar_networks" does not refuse (empty for any
    other lock). Hostile-input safe: only strings, at most MAX_SPARED_NETWORKS of them."""
    if command.subject_kind != "user" or user_scope_of(command.evidence) != SCOPE_UNFAMILIAR:
        return frozenset()
    nets = command.evidence["familiar_networks"]
    return frozenset(n for n in nets[:MAX_SPARED_NETWORKS] if isinstance(n, str))


def spares(command: LockCommand, client_ip: str | None) -> bool:
    """Whether a user lock lets this session through: its scope spares the client's network."""
    if not client_ip:
        return False
    spared = spared_networks(command)
    return bool(spared) and network_of(client_ip) in spared


def refuses_authenticated(command: LockCommand) -> bool:
    """Whether a lock command refuses a session that authenticated correctly: user locks
    always (one of scope "unfamiliar_networks" only from the networks it does not spare, see
    `spares`); IP locks unless their scope is "unauthenticated"."""
    return command.subject_kind != "ip" or scope_of(command.evidence) == SCOPE_ALL


@dataclass(frozen=True, slots=True)
class DetectorPolicy:
    remedy: Remedy = "alert"
    severity: Severity = "medium"
    ttl_seconds: float | None = None  # used by "throttle"
    cooldown_seconds: float = 3600.0  # no second alert for the same detector and subject within
    silent: bool = False  # findings feed correlation only: no alert (ignored unless remedy alert)
    # Try a detector's remedy out: alert with what it would have done, issue no command, and
    # leave the lock state alone so it never holds back a real remedy from another detector.
    dry_run: bool = False


@dataclass(frozen=True, slots=True)
class PolicyParams:
    detectors: dict[str, DetectorPolicy] = field(default_factory=dict)
    default: DetectorPolicy = field(default_factory=DetectorPolicy)
    dry_run: bool = False
    allow_users: frozenset[str] = frozenset()
    allow_networks: tuple[IpNetwork, ...] = ()
    issuer: str = "relayguard"

    def for_detector(self, name: str) -> DetectorPolicy:
        return self.detectors.get(name, self.default)


@dataclass(frozen=True, slots=True)
class LockState:
    """What the worker believes it has told the relays about one subject."""

    locked: bool = False
    remedy: Remedy | None = None
    expires_at: float | None = None
    version: int = 0
    command_id: str | None = None
    last_alert_at: tuple[tuple[str, float], ...] = ()  # (detector, time)
    scope: str = SCOPE_ALL  # SCOPE_ALL; an IP lock's SCOPE_UNAUTHENTICATED, a user's UNFAMILIAR


@dataclass(frozen=True, slots=True)
class Decision:
    state: LockState
    commands: list[LockCommand]
    alerts: list[Alert]


def is_allowlisted(params: PolicyParams, subject: str, kind: SubjectKind) -> bool:
    if kind == "user":
        return subject in params.allow_users
    try:
        addr = ipaddress.ip_address(subject)
    except ValueError:
        return False
    return any(addr in net for net in params.allow_networks)


def decide(params: PolicyParams, state: LockState, findings: list[Finding], now: float) -> Decision:
    """Findings must all be about the same subject."""
    commands: list[LockCommand] = []
    alerts: list[Alert] = []
    ranked = sorted(findings, key=lambda f: -_STRENGTH[params.for_detector(f.detector).remedy])
    for finding in ranked:
        if finding.signal_only or is_allowlisted(params, finding.subject, finding.subject_kind):
            continue
        pol = params.for_detector(finding.detector)
        if pol.silent and pol.remedy == "alert":
            continue
        command: LockCommand | None = None
        scope = (scope_of(finding.evidence) if finding.subject_kind == "ip"
                 else user_scope_of(finding.evidence))
        if not pol.dry_run and _escalates(state, pol.remedy, scope, now):
            state, command = _lock(params, state, finding, pol, now)
            commands.append(command)
        elif _cooling_down(state, finding.detector, pol, now):
            continue
        state = evolve(state, last_alert_at=_stamp(state.last_alert_at, finding.detector, now))
        alerts.append(_alert(params, finding, pol, command))
    return Decision(state, commands, alerts)


def expire(params: PolicyParams, state: LockState, subject: str, kind: SubjectKind,
           now: float) -> Decision:
    """A throttle whose TTL has run out becomes an explicit unlock (relays also expire it)."""
    if not state.locked or state.expires_at is None or state.expires_at > now:
        return Decision(state, [], [])
    version = _next_version(state, now)
    command = LockCommand(
        command_id=_command_id(kind, subject, version),
        subject=subject,
        subject_kind=kind,
        action="unlock",
        reason="throttle expired",
        detector="policy.expiry",
        evidence={"expired_command_id": state.command_id, "expires_at": state.expires_at},
        issued_at=now,
        expires_at=None,
        issuer=params.issuer,
        version=version,
        severity="info",
        dry_run=params.dry_run,
    )
    new_state = evolve(state, locked=False, remedy=None, expires_at=None, version=version,
                        command_id=command.command_id, scope=SCOPE_ALL)
    return Decision(new_state, [command], [])


def _active(state: LockState, now: float) -> bool:
    return state.locked and (state.expires_at is None or state.expires_at > now)


def _escalates(state: LockState, remedy: Remedy, scope: str, now: float) -> bool:
    if remedy == "alert":
        return False
    if not _active(state, now):
        return True
    stronger = _STRENGTH[remedy] - _STRENGTH[state.remedy or "alert"]
    wider = scope == SCOPE_ALL and state.scope != SCOPE_ALL
    return stronger > 0 or (stronger == 0 and wider)


def _cooling_down(state: LockState, detector: str, pol: DetectorPolicy, now: float) -> bool:
    for name, at in state.last_alert_at:
        if name == detector:
            return now - at < pol.cooldown_seconds
    return False


def _stamp(stamps: tuple[tuple[str, float], ...], detector: str,
           now: float) -> tuple[tuple[str, float], ...]:
    return (*((n, t) for n, t in stamps if n != detector), (detector, now))


def _next_version(state: LockState, now: float) -> int:
    # Milliseconds of issue time keep versions comparable across issuers (worker, CLI);
    # +1 keeps them strictly increasing for one subject even within one millisecond.
    return max(state.version + 1, int(now * 1000))


def _command_id(kind: SubjectKind, subject: str, version: int) -> str:
    # Deterministic: a worker that reprocesses the same events issues the same id, so relays
    # and consumers can drop the repeat.
    return str(uuid.uuid5(_IDS, f"{kind}:{subject}:{version}"))


def _lock(params: PolicyParams, state: LockState, finding: Finding, pol: DetectorPolicy,
          now: float) -> tuple[LockState, LockCommand]:
    version = _next_version(state, now)
    expires = now + pol.ttl_seconds if pol.remedy == "throttle" and pol.ttl_seconds else None
    evidence = finding.evidence
    scope = SCOPE_ALL
    if finding.subject_kind == "ip":
        scope = scope_of(evidence)
        if _active(state, now) and state.scope == SCOPE_ALL:
            scope = SCOPE_ALL  # a stronger remedy never narrows the lock in force
        evidence = {**evidence, "scope": scope}
    elif user_scope_of(evidence) == SCOPE_UNFAMILIAR:
        scope = SCOPE_UNFAMILIAR
        if _active(state, now) and state.scope == SCOPE_ALL:
            scope = SCOPE_ALL  # never narrowed: the full lock in force stays full
            evidence = {**evidence, "scope": SCOPE_ALL}
    command = LockCommand(
        command_id=_command_id(finding.subject_kind, finding.subject, version),
        subject=finding.subject,
        subject_kind=finding.subject_kind,
        action="lock",
        reason=finding.summary,
        detector=finding.detector,
        evidence=evidence,
        issued_at=now,
        expires_at=expires,
        issuer=params.issuer,
        version=version,
        severity=pol.severity,
        dry_run=params.dry_run,
    )
    new_state = evolve(state, locked=True, remedy=pol.remedy, expires_at=expires,
                        version=version, command_id=command.command_id, scope=scope)
    return new_state, command


def _alert(params: PolicyParams, finding: Finding, pol: DetectorPolicy,
           command: LockCommand | None) -> Alert:
    key = f"{finding.detector}:{finding.subject_kind}:{finding.subject}:{finding.event_time}"
    return Alert(
        alert_id=str(uuid.uuid5(_IDS, key)),
        detector=finding.detector,
        severity=pol.severity,
        subject=finding.subject,
        subject_kind=finding.subject_kind,
        summary=finding.summary,
        evidence=finding.evidence,
        event_time=finding.event_time,
        remedy=pol.remedy if command or pol.dry_run else "alert",
        command_id=command.command_id if command else None,
        dry_run=params.dry_run or pol.dry_run,
    )
