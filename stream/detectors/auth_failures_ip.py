"""Failed logins per client IP, over several windows at once (state keyed by IP).

Defaults and sources:
- burst: 5 failures in 10 s (CrowdSec's brute-force scenarios: a leaky bucket of 5 that drains in
  about 10 s).
- sustained: 15 failures in 2 h (the Exim documentation's ratelimit recipe for failed AUTH per
  host).
CrowdSec's "slow" scenarios (a handful of failures over hours) are too noisy for shared NAT
addresses on a relay, so they are not on by default; add a rule in config to get one.

Backend outages are not guesses. With password_hash, a repeat of the same (user, password) in the
window counts once, so a phone retrying a stale password does not get its IP blocked.

Scope of the block: an address is often shared (an office NAT, carrier-grade NAT), and a stale
phone or a new phone fails for one user while all the others log in correctly from it. So a
finding asks for an IP block that refuses authenticated sessions too (`scope = "all"`) only when
the failures in the rule's window came from at least `full_block_users` distinct users: guessing
across users (stuffing, spraying). Fewer users (one account hammered, one stale phone): scope
"unauthenticated", which relays apply to unauthenticated clients only, never to a user who
authenticates correctly (stream/policy.py); the user-keyed detectors deal with that account.
Failures that name no user (Postfix before 3.7.8) count no user, so they never widen the scope.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from relayguard.stream import windows
from relayguard.stream.detector import DetectorSpec
from relayguard.stream.detectors.common import Recent, count_live, is_guess, touch
from relayguard.stream.policy import SCOPE_ALL, SCOPE_UNAUTHENTICATED
from relayguard.stream.records import Event, Finding, LoginEvent

NAME = "auth_failures_ip"
MAX_USERS_KEPT = 16
MAX_PASSWORDS_KEPT = 64


@dataclass(frozen=True, slots=True)
class Rule:
    name: str
    max_failures: int
    window: windows.WindowSpec


def _default_rules() -> tuple[Rule, ...]:
    return (
        Rule("burst", 5, windows.WindowSpec(10, 1)),  # CrowdSec burst
        Rule("sustained", 15, windows.WindowSpec(7200, 300)),  # Exim recipe: 15 in 2 h
    )


@dataclass(frozen=True, slots=True)
class Params:
    rules: tuple[Rule, ...] = field(default_factory=_default_rules)
    distinct_passwords: bool = True
    # Distinct users failing in the rule's window that make it guessing across users, whose
    # block refuses authenticated sessions too. 5: our choice; a credential-stuffing IP tries a
    # new account each time (the simulator's try ~14 per IP), while an office NAT rarely sees
    # more than two of its people fail within two hours (a typo, a stale or new phone).
    # 0: every block refuses everyone (the old behaviour). At most MAX_USERS_KEPT.
    full_block_users: int = 5

    def __post_init__(self) -> None:
        if not 0 <= self.full_block_users <= MAX_USERS_KEPT:
            raise ValueError(f"full_block_users must be 0..{MAX_USERS_KEPT}")


@dataclass(frozen=True, slots=True)
class State:
    watermark: float = float("-inf")
    counts: tuple[windows.Buckets, ...] = ()
    reported_until: tuple[float, ...] = ()
    users: Recent = ()  # recent users tried, for the evidence
    passwords: Recent = ()  # (user + password hash, last tried)


def initial_state() -> State:
    return State()


def step(params: Params, state: State, event: Event) -> tuple[State, list[Finding]]:
    if not is_guess(event):
        return state, []
    n = len(params.rules)
    counts = state.counts if len(state.counts) == n else ((),) * n
    reported = state.reported_until if len(state.reported_until) == n else (float("-inf"),) * n
    now = max(state.watermark, event.event_time)
    longest = max((r.window.length for r in params.rules), default=0.0)
    passwords = state.passwords
    repeat = False
    if params.distinct_passwords and event.password_hash:
        key = f"{event.user}\0{event.password_hash}"
        repeat = any(k == key and t >= now - longest for k, t in passwords)
        passwords = touch(passwords, key, event.event_time, now, longest, MAX_PASSWORDS_KEPT)
    users = state.users
    if event.user is not None:
        users = touch(users, event.user, event.event_time, now, longest, MAX_USERS_KEPT)
    findings: list[Finding] = []
    new_counts: list[windows.Buckets] = []
    new_reported: list[float] = []
    for rule, buckets, until in zip(params.rules, counts, reported, strict=True):
        buckets = windows.add(buckets, rule.window, event.event_time, 0 if repeat else 1, now)
        count = windows.total(buckets, rule.window, now)
        if not repeat and count >= rule.max_failures and now >= until:
            until = now + rule.window.length
            distinct = count_live(users, now, rule.window.length)
            scope = SCOPE_ALL if distinct >= params.full_block_users else SCOPE_UNAUTHENTICATED
            findings.append(_finding(event, rule, count, users, distinct, scope))
        new_counts.append(buckets)
        new_reported.append(until)
    return State(now, tuple(new_counts), tuple(new_reported), users, passwords), findings


def _finding(event: LoginEvent, rule: Rule, count: int, users: Recent, distinct: int,
             scope: str) -> Finding:
    window_s = int(rule.window.length)
    return Finding(
        detector=NAME,
        subject=event.client_ip,
        subject_kind="ip",
        event_time=event.event_time,
        summary=f"{count} failed logins from {event.client_ip} in {window_s}s ({rule.name})",
        evidence={
            "rule": rule.name,
            "failures": count,
            "window_seconds": window_s,
            "threshold": rule.max_failures,
            "client_ip": event.client_ip,
            "users": [u for u, _ in users],
            "distinct_users": distinct,
            "scope": scope,
            "last_relay_id": event.relay_id,
        },
    )


SPEC = DetectorSpec(
    name=NAME,
    key_kind="ip",
    reacts_to=frozenset({"login_fail"}),
    params_type=Params,
    initial_state=initial_state,
    step=step,
    description="failed logins per client IP over burst and sustained windows",
)
