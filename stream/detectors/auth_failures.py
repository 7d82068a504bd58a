"""Failed logins per user over a sliding window (fail2ban's default: 5 failures in 10 minutes).

Failures caused by the SASL backend being down are not the client's guesses and are not counted.
When the relay sends a keyed hash of the attempted password, only DISTINCT wrong passwords in the
window count (PowerDNS weakforced's approach): a phone retrying one stale password after its owner
changed it is one guess, not a lock-out, while a guesser trying a list still trips the limit.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from relayguard.stream import windows
from relayguard.stream.detector import DetectorSpec
from relayguard.stream.detectors.common import Recent, is_guess, touch
from relayguard.stream.records import Event, Finding

NAME = "auth_failures"
MAX_IPS_KEPT = 16
MAX_PASSWORDS_KEPT = 64  # distinct hashes remembered per window; enough to cross any sane limit


@dataclass(frozen=True, slots=True)
class Params:
    max_failures: int = 5  # fail2ban maxretry
    window: windows.WindowSpec = field(default_factory=lambda: windows.WindowSpec(600, 30))
    distinct_passwords: bool = True  # with password_hash: a repeated wrong password counts once


@dataclass(frozen=True, slots=True)
class State:
    watermark: float = float("-inf")
    failures: windows.Buckets = ()
    recent_ips: tuple[str, ...] = ()  # newest last, for the evidence
    reported_until: float = float("-inf")
    passwords: Recent = ()  # (password hash, last tried) within the window


def initial_state() -> State:
    return State()


def step(params: Params, state: State, event: Event) -> tuple[State, list[Finding]]:
    if not is_guess(event) or event.user is None:
        return state, []
    now = max(state.watermark, event.event_time)
    passwords = state.passwords
    repeat = False
    if params.distinct_passwords and event.password_hash:
        length = params.window.length
        repeat = any(h == event.password_hash and t >= now - length for h, t in passwords)
        passwords = touch(passwords, event.password_hash, event.event_time, now, length,
                          MAX_PASSWORDS_KEPT)
    amount = 0 if repeat else 1
    failures = windows.add(state.failures, params.window, event.event_time, amount, now)
    ips = (*(ip for ip in state.recent_ips if ip != event.client_ip), event.client_ip)
    ips = ips[-MAX_IPS_KEPT:]
    count = windows.total(failures, params.window, now)
    findings: list[Finding] = []
    until = state.reported_until
    if not repeat and count > params.max_failures - 1 and now >= until:
        # >= max_failures: the Nth failure is the one that trips it, as in fail2ban.
        until = now + params.window.length
        window_s = int(params.window.length)
        findings.append(
            Finding(
                detector=NAME,
                subject=event.user,
                subject_kind="user",
                event_time=event.event_time,
                summary=f"{count} failed logins for {event.user} in {window_s}s",
                evidence={
                    "failures": count,
                    "window_seconds": window_s,
                    "threshold": params.max_failures,
                    "client_ips": list(ips),
                    "last_relay_id": event.relay_id,
                    "counting": "distinct_passwords" if passwords else "attempts",
                },
            )
        )
    return State(now, failures, ips, until, passwords), findings


SPEC = DetectorSpec(
    name=NAME,
    key_kind="user",
    params_type=Params,
    initial_state=initial_state,
    step=step,
    description="failed logins per user over a window",
)
