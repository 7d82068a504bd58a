"""One step of the whole core for one key: dedupe, detect, decide.

`step` is what the Faust agent calls per event and what `relayguard replay` calls per line, so
production and replay share one code path. The returned `KeyState` is what the Faust table stores.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any, Literal

from relayguard.stream import policy, windows
from relayguard.stream.detector import EVENT_CLASSES, AnySpec, event_class
from relayguard.stream.evolve import evolve
from relayguard.stream.records import Alert, Event, Finding, LockCommand, SubjectKind
from relayguard.stream.timefmt import TimeBounds
from relayguard.stream.user_names import DEFAULT_USER_NAMES, UserNameMode

# "redelivered": the source position (partition, offset) was applied before: at-least-once
# redelivery after a restart or rebalance. "duplicate": the same event id again (a relay resend).
Outcome = Literal["processed", "duplicate", "redelivered", "too_late"]
# Where an event was read: (events-topic partition, offset). The by-IP repartition carries the
# original events-topic position, so per-IP state dedupes the same way.
Source = tuple[int, int]


@dataclass(frozen=True, slots=True)
class EnabledDetector:
    spec: AnySpec
    params: Any


@dataclass(frozen=True, slots=True)
class CoreParams:
    detectors: tuple[EnabledDetector, ...]
    policy: policy.PolicyParams = field(default_factory=policy.PolicyParams)
    grace_seconds: float = 300.0  # events older than newest-seen minus this are refused as late
    dedupe_ids: int = 256  # event ids remembered per key to drop relay-side resends
    # What event times ingest accepts against the worker's clock (checked by the codec when the
    # caller passes `now`; the core itself never reads the clock).
    time_bounds: TimeBounds = field(default_factory=TimeBounds)
    user_names: UserNameMode = DEFAULT_USER_NAMES  # RELAYGUARD_USER_NAMES, applied at decode
    # Derived once, asked for on every event: the detectors of each key kind; of those, the ones
    # each event class can change (`DetectorSpec.reacts_to`) and the ones with `on_findings`.
    _by_kind: dict[str, tuple[EnabledDetector, ...]] = field(init=False, repr=False,
                                                             compare=False)
    _stepping: dict[tuple[str, str], tuple[EnabledDetector, ...]] = field(
        init=False, repr=False, compare=False)
    _reactors: dict[str, tuple[EnabledDetector, ...]] = field(init=False, repr=False,
                                                              compare=False)
    _names: dict[str, frozenset[str]] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        by_kind = {k: tuple(d for d in self.detectors if d.spec.key_kind == k)
                   for k in ("user", "ip")}
        stepping = {(k, c): tuple(d for d in ds if c in d.spec.reacts_to)
                    for k, ds in by_kind.items() for c in EVENT_CLASSES}
        reactors = {k: tuple(d for d in ds if d.spec.on_findings is not None)
                    for k, ds in by_kind.items()}
        names = {k: frozenset(d.spec.name for d in ds) for k, ds in by_kind.items()}
        object.__setattr__(self, "_by_kind", by_kind)
        object.__setattr__(self, "_stepping", stepping)
        object.__setattr__(self, "_reactors", reactors)
        object.__setattr__(self, "_names", names)

    def for_kind(self, kind: SubjectKind) -> tuple[EnabledDetector, ...]:
        return self._by_kind[kind]


@dataclass(frozen=True, slots=True)
class KeyState:
    watermark: float = float("-inf")
    detectors: tuple[tuple[str, Any], ...] = ()  # (detector name, its state)
    lock: policy.LockState = field(default_factory=policy.LockState)
    # 8-byte digests of the last `dedupe_ids` event ids, oldest first: a quarter of the size of
    # the ids themselves, which dominated a busy user's state.
    recent_event_ids: bytes = b""
    late_events: int = 0
    # (events-topic partition, last offset applied), sorted by partition: at most one pair per
    # partition of the events topic, so bounded by the partition count whatever the traffic.
    applied: tuple[tuple[int, int], ...] = ()
    events_applied: int = 0  # events that changed this state (processed), for audits and tests


@dataclass(frozen=True, slots=True)
class StepResult:
    state: KeyState
    outcome: Outcome
    findings: list[Finding] = field(default_factory=list)
    commands: list[LockCommand] = field(default_factory=list)
    alerts: list[Alert] = field(default_factory=list)


def step(params: CoreParams, kind: SubjectKind, key: str, state: KeyState | None,
         event: Event, source: Source | None = None) -> StepResult:
    """Apply one event. With `source`, an event at or below the last applied offset of its
    partition is a redelivery and has no effect, whatever the consumer's offset handling did."""
    state = state or KeyState()
    if source is not None and source[1] <= last_applied(state, source[0]):
        return StepResult(state, "redelivered")
    applied = state.applied if source is None else _with_applied(state.applied, source)
    digest = _id_digest(event.event_id)
    if _seen(state.recent_event_ids, digest):
        # Still remember the position, so a redelivery of this very record is caught by offset.
        return StepResult(evolve(state, applied=applied), "duplicate")
    if windows.is_too_late(event.event_time, state.watermark, params.grace_seconds):
        return StepResult(evolve(state, late_events=state.late_events + 1, applied=applied),
                          "too_late")
    ids = (state.recent_event_ids + digest)[-params.dedupe_ids * _DIGEST:]
    now = max(state.watermark, event.event_time)

    det_states = dict(state.detectors)
    if not det_states.keys() >= params._names[kind]:
        # A key's first event (or a detector enabled since): every enabled detector gets its
        # initial state now, in the enabled order, whether or not this event concerns it.
        for d in params.for_kind(kind):
            if d.spec.name not in det_states:
                det_states[d.spec.name] = d.spec.initial_state()
    findings: list[Finding] = []
    # Only the detectors this class of event can change: the others would return their state
    # untouched (DetectorSpec.reacts_to).
    for d in params._stepping[kind, event_class(event)]:
        name = d.spec.name
        s, found = d.spec.step(d.params, det_states[name], event)
        det_states[name] = s
        if found:
            findings.extend(found)
    for d in params._reactors[kind]:
        name = d.spec.name
        on_findings = d.spec.on_findings
        assert on_findings is not None
        s, found = on_findings(d.params, det_states[name], event, findings)
        det_states[name] = s
        findings = findings + found

    # policy.expire and policy.decide change nothing for an unlocked key or no findings (the
    # common case), so they are only called when they can.
    lock = state.lock
    commands: list[LockCommand] = []
    alerts: list[Alert] = []
    if lock.locked and lock.expires_at is not None and lock.expires_at <= now:
        expired = policy.expire(params.policy, lock, key, kind, now)
        lock, commands = expired.state, expired.commands
    if findings:
        own = [f for f in findings if f.subject_kind == kind and f.subject == key]
        if own:
            decision = policy.decide(params.policy, lock, own, now)
            lock, commands, alerts = decision.state, commands + decision.commands, \
                decision.alerts
    new_state = KeyState(
        watermark=now,
        detectors=tuple(det_states.items()),
        lock=lock,
        recent_event_ids=ids,
        late_events=state.late_events,
        applied=applied,
        events_applied=state.events_applied + 1,
    )
    return StepResult(new_state, "processed", findings, commands, alerts)


_DIGEST = 8


def last_applied(state: KeyState, partition: int) -> int:
    """The last offset of `partition` applied to this state, -1 if none."""
    for p, offset in state.applied:
        if p == partition:
            return offset
    return -1


def _with_applied(applied: tuple[tuple[int, int], ...],
                  source: Source) -> tuple[tuple[int, int], ...]:
    partition, offset = source
    return tuple(sorted({**dict(applied), partition: offset}.items()))


def _id_digest(event_id: str) -> bytes:
    return hashlib.blake2b(event_id.encode(), digest_size=_DIGEST).digest()


def _seen(digests: bytes, digest: bytes) -> bool:
    at = digests.find(digest)
    while at != -1 and at % _DIGEST:  # a match straddling two digests is not one
        at = digests.find(digest, at + 1)
    return at != -1


def tick(params: CoreParams, kind: SubjectKind, key: str, state: KeyState,
         now: float) -> StepResult:
    """Time passing without events: expire throttles whose TTL ran out."""
    expired = policy.expire(params.policy, state.lock, key, kind, now)
    if not expired.commands:
        return StepResult(state, "processed")
    return StepResult(evolve(state, lock=expired.state), "processed", [], expired.commands, [])
