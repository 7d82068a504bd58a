"""Password spraying: one client IP failing logins against many distinct users (state keyed by IP).

Default: more than 30 distinct accounts failing from one source in 2 minutes (Splunk's
"Password Spraying" detections use > 30 accounts per source). Backend outages are not guesses.
Add a slower rule in config (e.g. 10 users in an hour) if sprays against you are slow.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from relayguard.stream.detector import DetectorSpec
from relayguard.stream.detectors import distinct
from relayguard.stream.detectors.common import is_guess
from relayguard.stream.detectors.distinct import Rule
from relayguard.stream.records import Event, Finding

NAME = "password_spray"
EVIDENCE_USERS = 40  # users listed in a finding


@dataclass(frozen=True, slots=True)
class Params:
    rules: tuple[Rule, ...] = field(default_factory=lambda: (Rule("fast", 30, 120.0),))


State = distinct.State


def initial_state() -> State:
    return State()


def step(params: Params, state: State, event: Event) -> tuple[State, list[Finding]]:
    if not is_guess(event) or event.user is None:
        return state, []
    state, crossed = distinct.observe(params.rules, state, event.user, event.event_time)
    findings = [
        Finding(
            detector=NAME,
            subject=event.client_ip,
            subject_kind="ip",
            event_time=event.event_time,
            summary=(f"{event.client_ip} failed logins for {len(users)} distinct users in "
                     f"{int(rule.window_seconds)}s"),
            evidence={
                "rule": rule.name,
                "distinct_users": len(users),
                "threshold": rule.max_distinct,
                "window_seconds": int(rule.window_seconds),
                "client_ip": event.client_ip,
                "users": [u for u, _ in users][-EVIDENCE_USERS:],
                "last_relay_id": event.relay_id,
            },
        )
        for rule, users in crossed
    ]
    return state, findings


SPEC = DetectorSpec(
    name=NAME,
    key_kind="ip",
    reacts_to=frozenset({"login_fail"}),
    params_type=Params,
    initial_state=initial_state,
    step=step,
    description="one client IP failing logins against many distinct users",
)
