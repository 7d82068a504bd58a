"""Distributed guessing: one user failing logins from many distinct client IPs (a botnet working
through one account, each bot staying under per-IP limits).

Default: more than 30 distinct source IPs failing for one user in 2 minutes (Splunk's detection of
one account failing from > 30 sources). Backend outages are not guesses.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from relayguard.stream.detector import DetectorSpec
from relayguard.stream.detectors import distinct
from relayguard.stream.detectors.common import is_guess
from relayguard.stream.detectors.distinct import Rule
from relayguard.stream.records import Event, Finding

NAME = "distributed_guessing"
EVIDENCE_IPS = 40


@dataclass(frozen=True, slots=True)
class Params:
    rules: tuple[Rule, ...] = field(default_factory=lambda: (Rule("fast", 30, 120.0),))


State = distinct.State


def initial_state() -> State:
    return State()


def step(params: Params, state: State, event: Event) -> tuple[State, list[Finding]]:
    if not is_guess(event) or event.user is None:
        return state, []
    state, crossed = distinct.observe(params.rules, state, event.client_ip, event.event_time)
    findings = [
        Finding(
            detector=NAME,
            subject=event.user,
            subject_kind="user",
            event_time=event.event_time,
            summary=(f"{event.user} failed logins from {len(ips)} distinct IPs in "
                     f"{int(rule.window_seconds)}s"),
            evidence={
                "rule": rule.name,
                "distinct_ips": len(ips),
                "threshold": rule.max_distinct,
                "window_seconds": int(rule.window_seconds),
                "client_ips": [ip for ip, _ in ips][-EVIDENCE_IPS:],
                "last_relay_id": event.relay_id,
            },
        )
        for rule, ips in crossed
    ]
    return state, findings


SPEC = DetectorSpec(
    name=NAME,
    key_kind="user",
    reacts_to=frozenset({"login_fail"}),
    params_type=Params,
    initial_state=initial_state,
    step=step,
    description="one user failing logins from many distinct client IPs",
)
