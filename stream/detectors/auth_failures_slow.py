"""Slow brute force against one user from rotating addresses: failed logins over hours, counted
only from networks this user never logged in from successfully.

`auth_failures` (5 in 10 minutes) and the per-IP rules never see a guesser that tries one
password every 4-15 minutes and rotates through a handful of proxies: no window of minutes holds
five, no address holds many. Over hours the pattern is plain, but a user's own devices fail over
hours too (a phone with a stale password retrying all day, a new phone set up with a few wrong
tries, typos). What tells them apart is where the failures come from: the user's own devices fail
from networks the user also succeeds from (home line, office NAT, the carrier, the hotel once
they log in there), a guesser from networks the user has never succeeded from.

So this rule counts failures only from unfamiliar networks (the /16 or /48 of the address: a
phone hopping addresses on its carrier stays on the carrier's network), forgets a network's
failures the moment the user succeeds from it (the new phone that got the password right, the
hotel Wi-Fi), and fires on `max_failures` such failures within `window_seconds` from at least
`min_networks` distinct unfamiliar networks. One stale device is one network, so it never
fires; a rotating guesser is many.

Defaults (our choice, measured on `relayguard simulate`; see docs/detectors.md): 8 failures in
4 h from >= 3 networks. The per-address sources this aggregates across addresses: CrowdSec's
`ssh-slow-bf` (10 failures, leak 60 s: about ten minutes) and the hub's `ssh-very-slow-bf`
(6 failures in 24 h from one IP). The familiar period is `auth_failures`' 14 days (Entra's
learning period for familiar sign-in properties).

The finding asks for a user lock of scope "unfamiliar_networks" (stream/policy.py) sparing
`familiar_networks`, the networks the user succeeded from within `familiar_seconds`: the relays
refuse the guesser's proxies while the owner keeps working from home and the office. The default
remedy is a throttle (core_params); the simulator's false-lock figure (no benign user refused)
is why it may lock at all.
"""

from __future__ import annotations

from dataclasses import dataclass

from relayguard.stream.detector import DetectorSpec
from relayguard.stream.detectors.common import Recent, is_guess, network_of, touch
from relayguard.stream.evolve import evolve
from relayguard.stream.policy import SCOPE_UNFAMILIAR
from relayguard.stream.records import Event, Finding, LoginEvent

NAME = "auth_failures_slow"
MAX_FAILURES_KEPT = 32  # (network, time) of recent unfamiliar failures; > any sane threshold
MAX_FAMILIAR_KEPT = 16  # networks of recent successful logins (home, office, carriers, hotels)
MAX_IPS_KEPT = 8  # for the evidence


@dataclass(frozen=True, slots=True)
class Params:
    max_failures: int = 8
    min_networks: int = 3
    window_seconds: float = 4 * 3600.0
    familiar_seconds: float = 14 * 86400.0


@dataclass(frozen=True, slots=True)
class State:
    watermark: float = float("-inf")
    familiar: Recent = ()  # (network, last successful login)
    failures: tuple[tuple[str, float], ...] = ()  # (network, time) from unfamiliar networks
    recent_ips: tuple[str, ...] = ()  # unfamiliar addresses that failed, newest last
    reported_until: float = float("-inf")


def initial_state() -> State:
    return State()


def step(params: Params, state: State, event: Event) -> tuple[State, list[Finding]]:
    if not isinstance(event, LoginEvent) or event.user is None:
        return state, []
    now = max(state.watermark, event.event_time)
    net = network_of(event.client_ip)
    if event.success:
        familiar = touch(state.familiar, net, event.event_time, now,
                         params.familiar_seconds, MAX_FAMILIAR_KEPT)
        # The user got in from here: its failures were the user's own (a new phone, a typo).
        failures = tuple(f for f in state.failures if f[0] != net)
        ips = tuple(ip for ip in state.recent_ips if network_of(ip) != net)
        return evolve(state, watermark=now, familiar=familiar, failures=failures,
                       recent_ips=ips), []
    if not is_guess(event):
        return state, []
    horizon = now - params.familiar_seconds
    if any(n == net and t >= horizon for n, t in state.familiar):
        return evolve(state, watermark=now), []
    start = now - params.window_seconds
    failures = tuple(f for f in state.failures if f[1] >= start)
    failures = (*failures, (net, event.event_time))[-MAX_FAILURES_KEPT:]
    ips = (*(ip for ip in state.recent_ips if ip != event.client_ip),
           event.client_ip)[-MAX_IPS_KEPT:]
    count = len(failures)
    networks = len({n for n, _ in failures})
    findings: list[Finding] = []
    until = state.reported_until
    if count >= params.max_failures and networks >= params.min_networks and now >= until:
        until = now + params.window_seconds
        hours = params.window_seconds / 3600.0
        findings.append(Finding(
            detector=NAME,
            subject=event.user,
            subject_kind="user",
            event_time=event.event_time,
            summary=(f"{count} failed logins for {event.user} in {hours:g}h from {networks} "
                     "networks it never logged in from"),
            evidence={
                "failures": count,
                "networks": networks,
                "window_seconds": int(params.window_seconds),
                "threshold": params.max_failures,
                "min_networks": params.min_networks,
                "client_ips": list(ips),
                "scope": SCOPE_UNFAMILIAR,
                "familiar_networks": sorted(n for n, t in state.familiar if t >= horizon),
                "last_relay_id": event.relay_id,
            },
        ))
    return State(now, state.familiar, failures, ips, until), findings


SPEC = DetectorSpec(
    name=NAME,
    key_kind="user",
    reacts_to=frozenset({"login_ok", "login_fail"}),
    params_type=Params,
    initial_state=initial_state,
    step=step,
    description="slow guessing at one user from networks it never logged in from",
)
