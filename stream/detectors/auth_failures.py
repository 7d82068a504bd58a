"""Failed logins per user over a sliding window (fail2ban's default: 5 failures in 10 minutes).

Failures caused by the SASL backend being down are not the client's guesses and are not counted.
When the relay sends a keyed hash of the attempted password, only DISTINCT wrong passwords in the
window count (PowerDNS weakforced's approach): a phone retrying one stale password after its owner
changed it is one guess, not a lock-out, while a guesser trying a list still trips the limit.

Without a hash, failures from a familiar address (one this user logged in from successfully within
`familiar_seconds`: the office NAT, the home line) count once per window and address: a device of
the user's own that keeps a stale password (the phone on the office Wi-Fi retrying its outbox) is
one guess, as it would be with hashes. A guesser's address never saw this user succeed, so it is
counted in full; the per-IP rules still see every failure from a familiar address.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from relayguard.stream import windows
from relayguard.stream.detector import DetectorSpec
from relayguard.stream.detectors.common import Recent, is_guess, touch
from relayguard.stream.evolve import evolve
from relayguard.stream.records import Event, Finding, LoginEvent

NAME = "auth_failures"
MAX_IPS_KEPT = 16
MAX_PASSWORDS_KEPT = 64  # distinct hashes remembered per window; enough to cross any sane limit
MAX_FAMILIAR_KEPT = 8  # addresses of recent successful logins (home, office, a few phones)


@dataclass(frozen=True, slots=True)
class Params:
    max_failures: int = 5  # fail2ban maxretry
    window: windows.WindowSpec = field(default_factory=lambda: windows.WindowSpec(600, 30))
    distinct_passwords: bool = True  # with password_hash: a repeated wrong password counts once
    # Without a hash, failures from an address the user logged in from within this long count
    # once per window (0: off). 14 days: Entra's learning period for familiar sign-in
    # properties; our choice to apply it here.
    familiar_seconds: float = 14 * 86400.0


@dataclass(frozen=True, slots=True)
class State:
    watermark: float = float("-inf")
    failures: windows.Buckets = ()
    recent_ips: tuple[str, ...] = ()  # newest last, for the evidence
    reported_until: float = float("-inf")
    passwords: Recent = ()  # (password hash or "ip:" familiar address, last tried) in the window
    familiar: Recent = ()  # (client IP, last successful login) within familiar_seconds


def initial_state() -> State:
    return State()


def step(params: Params, state: State, event: Event) -> tuple[State, list[Finding]]:
    if (params.familiar_seconds > 0 and isinstance(event, LoginEvent) and event.success
            and event.user is not None):
        now = max(state.watermark, event.event_time)
        familiar = touch(state.familiar, event.client_ip, event.event_time, now,
                         params.familiar_seconds, MAX_FAMILIAR_KEPT)
        return evolve(state, watermark=now, familiar=familiar), []
    if not is_guess(event) or event.user is None:
        return state, []
    now = max(state.watermark, event.event_time)
    passwords = state.passwords
    repeat = False
    token = None
    if params.distinct_passwords and event.password_hash:
        token = event.password_hash
    elif params.familiar_seconds > 0 and any(
            ip == event.client_ip and t >= now - params.familiar_seconds
            for ip, t in state.familiar):
        token = f"ip:{event.client_ip}"  # the user's own device at a familiar address
    if token is not None:
        length = params.window.length
        repeat = any(h == token and t >= now - length for h, t in passwords)
        passwords = touch(passwords, token, event.event_time, now, length, MAX_PASSWORDS_KEPT)
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
                    "counting": _counting(passwords),
                },
            )
        )
    return State(now, failures, ips, until, passwords, state.familiar), findings


def _counting(passwords: Recent) -> str:
    if any(not k.startswith("ip:") for k, _ in passwords):
        return "distinct_passwords"
    return "familiar_addresses_once" if passwords else "attempts"


SPEC = DetectorSpec(
    name=NAME,
    key_kind="user",
    reacts_to=frozenset({"login_ok", "login_fail"}),
    params_type=Params,
    initial_state=initial_state,
    step=step,
    description="failed logins per user over a window",
)
