"""Too many places: one user logging in from too many countries or distinct IPs in a day.

Defaults and source: more than 5 countries or more than 20 distinct IPs in 24 hours (postfwd's
anti-geoip rule for SASL users). Allowlisted networks are ignored. Alert-only by default: mobile
clients on carrier NAT can collect many IPs.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from relayguard.stream.detector import DetectorSpec
from relayguard.stream.detectors import distinct
from relayguard.stream.detectors.common import IpNetwork, in_networks
from relayguard.stream.records import Event, Finding, LoginEvent

NAME = "too_many_places"
DAY = 86400.0


@dataclass(frozen=True, slots=True)
class Params:
    max_countries: int = 5
    max_ips: int = 20
    window_seconds: float = DAY
    ignore_networks: tuple[IpNetwork, ...] = ()


@dataclass(frozen=True, slots=True)
class State:
    ips: distinct.State = field(default_factory=distinct.State)
    countries: distinct.State = field(default_factory=distinct.State)


def initial_state() -> State:
    return State()


def step(params: Params, state: State, event: Event) -> tuple[State, list[Finding]]:
    if not isinstance(event, LoginEvent) or not event.success or event.user is None:
        return state, []
    if in_networks(event.client_ip, params.ignore_networks):
        return state, []
    t = event.event_time
    ips, crossed = distinct.observe(distinct.one_rule("ips", params.max_ips, params.window_seconds),
                                    state.ips, event.client_ip, t)
    countries = state.countries
    if event.geo is not None and event.geo.country:
        c_rule = distinct.one_rule("countries", params.max_countries, params.window_seconds)
        countries, c_crossed = distinct.observe(c_rule, countries, event.geo.country, t)
        crossed += c_crossed
    findings = [
        Finding(
            detector=NAME,
            subject=event.user,
            subject_kind="user",
            event_time=t,
            summary=(f"{event.user} logged in from {len(seen)} distinct {rule.name} in "
                     f"{int(rule.window_seconds / 3600)}h"),
            evidence={
                "measure": rule.name,
                "distinct": len(seen),
                "threshold": rule.max_distinct,
                "window_seconds": int(rule.window_seconds),
                rule.name: [x for x, _ in seen],
                "last_client_ip": event.client_ip,
            },
        )
        for rule, seen in crossed
    ]
    return State(ips, countries), findings


SPEC = DetectorSpec(
    name=NAME,
    key_kind="user",
    reacts_to=frozenset({"login_ok"}),
    params_type=Params,
    initial_state=initial_state,
    step=step,
    description="one user logging in from too many countries or IPs within a day",
)
