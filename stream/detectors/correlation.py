"""Correlation: a suspicious login followed within a window by sending that departs from the user's
own pattern is an account takeover in progress, and is locked even when neither part alone would
be.

Suspicion (points, from the findings on the login event): 2 for a detector in `login_detectors`
(impossible travel, new country, a dormant account waking), 2 for a success within
`after_bruteforce_seconds` of a brute-force finding; 1 for a detector in `weak_login_detectors`
(too many places, shared credential, the sending profile's "network never used before", and
plaintext AUTH by a user who always used TLS; a finding whose evidence says `habitual` is no
suspicion), and 2 for two different weak reasons on the same login (a spam tool without TLS from a
network the user never used). Departure (points, within `window_seconds` after that login): the
sending profile's departure of the hour (many new recipient domains, bounces, foreign or made-up
envelope senders; see sending_profile.py), or 2 for a volume jump: at least `min_messages` messages
or `min_recipients` recipients since the login, or a finding of `volume_detectors` (by default the
learned baseline only: a fixed-limit finding is not a jump *relative to the user*, and throttles on
its own). Lock when suspicion + departure reaches `lock_score` (3) with a departure of at least 1:
a new country plus the first messages to a handful of domains the user never wrote to locks on that
message; a new network needs a clearer departure (12 new domains, or 5 bounces, or new domains and
bounces together).

Design: this detector has no inputs of its own. It runs in `on_findings`, after every detector of
the user has stepped, and reads their findings (signal-only ones included). The other detectors'
findings stay ordinary findings that policy handles by their own rules; correlation only adds its
own finding, whose evidence carries both halves: `login` (the suspicious login, its points and the
finding that made it suspicious) and `volume` (the counts since the login, the trigger and, for a
profile departure, its signals). Defaults are our choice, measured on `relayguard simulate`
(docs/detectors.md); the 1 h window matches the fixed hourly limits.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from relayguard.stream.detector import DetectorSpec
from relayguard.stream.evolve import evolve
from relayguard.stream.records import Event, Finding, LoginEvent, SendEvent

NAME = "correlation"


@dataclass(frozen=True, slots=True)
class Params:
    window_seconds: float = 3600.0
    after_bruteforce_seconds: float = 3600.0
    min_messages: int = 50
    min_recipients: int = 100
    login_detectors: tuple[str, ...] = ("impossible_travel", "new_country", "dormant_account")
    # plaintext_auth only when it is not the user's habit (evidence.habitual): an old mail
    # client without TLS is a habit (measured: counting it plus an honest list post locked a
    # benign user on the default fleet); TLS all along and then none is another client.
    weak_login_detectors: tuple[str, ...] = ("too_many_places", "shared_credential",
                                             "sending_profile", "plaintext_auth")
    bruteforce_detectors: tuple[str, ...] = ("auth_failures", "distributed_guessing",
                                             "auth_failures_slow")
    volume_detectors: tuple[str, ...] = ("volume_baseline",)
    profile_detectors: tuple[str, ...] = ("sending_profile",)
    lock_score: int = 3


STRONG, WEAK, JUMP, MESSAGE = 2, 1, 2, 1


@dataclass(frozen=True, slots=True)
class Suspicious:
    time: float
    client_ip: str
    reason: str
    evidence: dict[str, Any]
    score: int = STRONG


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
            state = evolve(state, bruteforce_at=f.event_time if last is None
                            else max(last, f.event_time))
    sus = state.suspicious
    if sus is not None and t - sus.time > params.window_seconds:
        sus = None
        state = State(state.bruteforce_at)
    if isinstance(event, LoginEvent) and event.success:
        new = _suspicious(params, state, event, mine)
        if new is not None and (sus is None or (new.score > sus.score
                                                and not state.escalated)):
            # A stronger reason replaces a weaker one; the counts since the first go on.
            keep = sus is not None
            return State(state.bruteforce_at, new, state.messages if keep else 0,
                         state.recipients if keep else 0), []
        return state, []
    if sus is None or t < sus.time or state.escalated:
        return state, []
    messages, recipients = state.messages, state.recipients
    if isinstance(event, SendEvent):
        messages, recipients = messages + 1, recipients + event.recipient_count
    state = evolve(state, messages=messages, recipients=recipients)
    trigger = _departure(params, messages, recipients, mine)
    if trigger is None or sus.score + trigger["points"] < params.lock_score:
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
                      "points": sus.score, "evidence": sus.evidence},
            "volume": {"messages": messages, "recipients": recipients, "since": sus.time,
                       "seconds_after_login": round(t - sus.time, 1),
                       "window_seconds": int(params.window_seconds), **trigger},
        },
    )
    return evolve(state, escalated=True), [finding]


def _suspicious(params: Params, state: State, event: LoginEvent,
                mine: list[Finding]) -> Suspicious | None:
    best: Suspicious | None = None
    weak: list[Finding] = []
    for f in mine:
        if f.evidence.get("habitual") is True:
            continue  # the user's own habit (an old client without TLS), not a suspicion
        score = (STRONG if f.detector in params.login_detectors
                 else WEAK if f.detector in params.weak_login_detectors else 0)
        if score == WEAK and all(w.detector != f.detector for w in weak):
            weak.append(f)
        if score and (best is None or score > best.score):
            best = Suspicious(event.event_time, event.client_ip, f.detector,
                              {"detector": f.detector, "summary": f.summary, **f.evidence},
                              score)
    if best is not None and best.score < STRONG and len(weak) >= 2:
        # Two different weak reasons on one login are as suspicious as one strong one.
        names = [w.detector for w in weak]
        best = Suspicious(event.event_time, event.client_ip, " + ".join(names),
                          {"detector": names[0], "summary": weak[0].summary,
                           "weak": [{"detector": w.detector, "summary": w.summary}
                                    for w in weak], **weak[0].evidence}, STRONG)
    bf = state.bruteforce_at
    if (bf is not None and 0 <= event.event_time - bf <= params.after_bruteforce_seconds
            and (best is None or best.score < STRONG)):
        best = Suspicious(event.event_time, event.client_ip, "after_bruteforce",
                          {"bruteforce_at": bf,
                           "seconds_after": round(event.event_time - bf, 1)}, STRONG)
    return best


def _departure(params: Params, messages: int, recipients: int,
               mine: list[Finding]) -> dict[str, Any] | None:
    """The strongest departure on this event, with its points."""
    for f in mine:
        if f.detector in params.volume_detectors:
            return {"what": f.summary, "trigger": f.detector, "trigger_evidence": f.evidence,
                    "points": JUMP}
    if messages >= params.min_messages:
        return {"what": f"{messages} messages", "trigger": "messages",
                "threshold": params.min_messages, "points": JUMP}
    if recipients >= params.min_recipients:
        return {"what": f"{recipients} recipients", "trigger": "recipients",
                "threshold": params.min_recipients, "points": JUMP}
    best: Finding | None = None
    for f in mine:
        if f.detector in params.profile_detectors and "departure" in f.evidence and (
                best is None or f.evidence["departure"] > best.evidence["departure"]):
            best = f
    if best is None:
        for f in mine:  # one message to only new domains: 1 point (locks after a strong login)
            if (f.detector in params.profile_detectors
                    and f.evidence.get("signal") == "message_to_new_domains"):
                return {"what": f.summary.split(": ", 1)[-1], "trigger": f.detector,
                        "trigger_evidence": f.evidence, "points": MESSAGE}
        return None
    return {"what": best.summary.split(": ", 1)[-1], "trigger": best.detector,
            "trigger_evidence": best.evidence, "points": int(best.evidence["departure"])}


SPEC = DetectorSpec(
    name=NAME,
    key_kind="user",
    reacts_to=frozenset(),  # its step does nothing: on_findings does the work
    params_type=Params,
    initial_state=initial_state,
    step=step,
    on_findings=on_findings,
    description="suspicious login followed by sending that departs from the user's pattern",
)
