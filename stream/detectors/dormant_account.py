"""Dormant account: a successful login or a send after a long silence (default 90 days), the
typical sign of an old, forgotten mailbox whose password leaked.

Failures do not count as activity (a guesser hammering an idle account must not "wake" it). A user
the core has never seen is not dormant: relayguard cannot tell new from long-idle. Alert-only by
default.
"""

from __future__ import annotations

from dataclasses import dataclass

from relayguard.stream.detector import DetectorSpec
from relayguard.stream.records import Event, Finding, LoginEvent, SendEvent

NAME = "dormant_account"
DAY = 86400.0


@dataclass(frozen=True, slots=True)
class Params:
    dormant_seconds: float = 90 * DAY


@dataclass(frozen=True, slots=True)
class State:
    last_active: float | None = None


def initial_state() -> State:
    return State()


def step(params: Params, state: State, event: Event) -> tuple[State, list[Finding]]:
    if isinstance(event, LoginEvent) and (not event.success or event.user is None):
        return state, []
    if not isinstance(event, LoginEvent | SendEvent) or event.user is None:
        return state, []
    t = event.event_time
    last = state.last_active
    new_state = State(t if last is None else max(last, t))
    if last is None or t - last < params.dormant_seconds:
        return new_state, []
    silent_days = (t - last) / DAY
    activity = "login" if isinstance(event, LoginEvent) else "send"
    finding = Finding(
        detector=NAME,
        subject=event.user,
        subject_kind="user",
        event_time=t,
        summary=f"{event.user} active ({activity}) after {silent_days:.0f} days of silence",
        evidence={
            "activity": activity,
            "last_active": last,
            "silent_days": round(silent_days, 1),
            "threshold_days": round(params.dormant_seconds / DAY, 1),
            "client_ip": event.client_ip,
            "relay_id": event.relay_id,
        },
    )
    return new_state, [finding]


SPEC = DetectorSpec(
    name=NAME,
    key_kind="user",
    reacts_to=frozenset({"login_ok", "send"}),
    params_type=Params,
    initial_state=initial_state,
    step=step,
    description="login or send after a long silence",
)
