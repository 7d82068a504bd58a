"""Correlation: a suspicious login followed within a window by a volume jump is an account
takeover in progress, and is locked even when neither part alone would be.

A login is suspicious when, on the same event, a detector in `login_detectors` (impossible travel,
new country) reported the user, or when it succeeds within `after_bruteforce_seconds` of a
brute-force finding for the user (`bruteforce_detectors`). A volume jump is, within
`window_seconds` after that login: at least `min_messages` messages or `min_recipients`
recipients (deliberately below the fixed hourly limits), or any finding of `volume_detectors`
(fixed limits, learned baseline).

Design: this detector has no inputs of its own. It runs in `on_findings`, after every detector of
the user has stepped, and reads their findings. The other detectors' findings stay ordinary
findings that policy handles by their own rules (new country alerts, fixed volume throttles);
correlation only adds its own finding, whose evidence carries both halves: `login` (the
suspicious login and the finding that made it suspicious) and `volume` (the counts or the
finding that made it a jump). Defaults are our choice; the 1 h window matches the fixed hourly
limits.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from relayguard.stream.detector import DetectorSpec
from relayguard.stream.records import Event, Finding, LoginEvent, SendEvent

NAME = "correlation"


@dataclass(frozen=True, slots=True)
class Params:
    window_seconds: float = 3600.0
    after_bruteforce_seconds: float = 3600.0
    min_messages: int = 50
    min_recipients: int = 100
    login_detectors: tuple[str, ...] = ("impossible_travel", "new_country")
    bruteforce_detectors: tuple[str, ...] = ("auth_failures", "distributed_guessing")
    volume_detectors: tuple[str, ...] = ("volume", "volume_baseline")


@dataclass(frozen=True, slots=True)
class Suspicious:
    time: float
    client_ip: str
    reason: str
    evidence: dict[str, Any]


@dataclass(frozen=True, slots=True)
class State:
    bruteforce_at: float | None = None
    suspicious: Suspicious | None = None
    messages: int = 0
    recipients: int = 0
    escalated: bool = False  # already reported for the current suspicious login


def initial_state() -> State:
    return State()


def step(params: Params, state: State, event: Event) -> tuple[State, list[Finding]]:
    return state, []  # everything happens in on_findings, once the other detectors have run


def on_findings(params: Params, state: State, event: Event,
                findings: list[Finding]) -> tuple[State, list[Finding]]:
    user = event.user
    if user is None:
        return state, []
    mine = [f for f in findings if f.subject_kind == "user" and f.subject == user]
    t = event.event_time
    for f in mine:
        if f.detector in params.bruteforce_detectors:
            last = state.bruteforce_at
            state = replace(state, bruteforce_at=f.event_time if last is None
                            else max(last, f.event_time))
    sus = state.suspicious
    if sus is not None and t - sus.time > params.window_seconds:
        sus = None
        state = State(state.bruteforce_at)
    if isinstance(event, LoginEvent) and event.success and sus is None:
        new = _suspicious(params, state, event, mine)
        if new is not None:
            return State(state.bruteforce_at, new), []
        return state, []
    if sus is None or t < sus.time or state.escalated:
        return state, []
    messages, recipients = state.messages, state.recipients
    if isinstance(event, SendEvent):
        messages, recipients = messages + 1, recipients + event.recipient_count
    state = replace(state, messages=messages, recipients=recipients)
    trigger = _jump(params, messages, recipients, mine)
    if trigger is None:
        return state, []
    finding = Finding(
        detector=NAME,
        subject=user,
        subject_kind="user",
        event_time=t,
        summary=(f"{user}: {sus.reason} login from {sus.client_ip} followed within "
                 f"{(t - sus.time) / 60:.0f} min by {trigger['what']}"),
        evidence={
            "login": {"time": sus.time, "client_ip": sus.client_ip, "reason": sus.reason,
                      "evidence": sus.evidence},
            "volume": {"messages": messages, "recipients": recipients, "since": sus.time,
                       "seconds_after_login": round(t - sus.time, 1),
                       "window_seconds": int(params.window_seconds), **trigger},
        },
    )
    return replace(state, escalated=True), [finding]


def _suspicious(params: Params, state: State, event: LoginEvent,
                mine: list[Finding]) -> Suspicious | None:
    for f in mine:
        if f.detector in params.login_detectors:
            return Suspicious(event.event_time, event.client_ip, f.detector,
                              {"detector": f.detector, "summary": f.summary, **f.evidence})
    bf = state.bruteforce_at
    if bf is not None and 0 <= event.event_time - bf <= params.after_bruteforce_seconds:
        return Suspicious(event.event_time, event.client_ip, "after_bruteforce",
                          {"bruteforce_at": bf,
                           "seconds_after": round(event.event_time - bf, 1)})
    return None


def _jump(params: Params, messages: int, recipients: int,
          mine: list[Finding]) -> dict[str, Any] | None:
    for f in mine:
        if f.detector in params.volume_detectors:
            return {"what": f.summary, "trigger": f.detector, "trigger_evidence": f.evidence}
    if messages >= params.min_messages:
        return {"what": f"{messages} messages", "trigger": "messages",
                "threshold": params.min_messages}
    if recipients >= params.min_recipients:
        return {"what": f"{recipients} recipients", "trigger": "recipients",
                "threshold": params.min_recipients}
    return None


SPEC = DetectorSpec(
    name=NAME,
    key_kind="user",
    params_type=Params,
    initial_state=initial_state,
    step=step,
    on_findings=on_findings,
    description="suspicious login followed by a volume jump: lock even if neither alone would",
)
