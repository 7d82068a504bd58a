"""Shared credential: one account in concurrent use from many unrelated networks, the pattern of a
password sold or shared among senders.

"Unrelated" means a different /16 (IPv4) or /48 (IPv6, a typical site allocation): a phone moving
between cells or a home router getting a new address usually stays inside one, while a home, an
office and a phone are three. Default: more than 3 unrelated networks (successful logins and sends)
within 10 minutes; allowlisted networks are ignored. This is our choice, not a published default:
no open-source relay filter ships this check. Alert-only by default.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from relayguard.stream.detector import DetectorSpec
from relayguard.stream.detectors import distinct
from relayguard.stream.detectors.common import IpNetwork, Recent, in_networks, network_of, touch
from relayguard.stream.records import Event, Finding, LoginEvent, SendEvent

NAME = "shared_credential"
IPS_KEPT = 16


@dataclass(frozen=True, slots=True)
class Params:
    max_networks: int = 3
    window_seconds: float = 600.0
    ipv4_prefix: int = 16
    ipv6_prefix: int = 48
    ignore_networks: tuple[IpNetwork, ...] = ()


@dataclass(frozen=True, slots=True)
class State:
    networks: distinct.State = field(default_factory=distinct.State)
    ips: Recent = ()  # recent client IPs, for the evidence


def initial_state() -> State:
    return State()


def step(params: Params, state: State, event: Event) -> tuple[State, list[Finding]]:
    if isinstance(event, LoginEvent) and not event.success:
        return state, []
    if not isinstance(event, LoginEvent | SendEvent) or event.user is None:
        return state, []
    if in_networks(event.client_ip, params.ignore_networks):
        return state, []
    t = event.event_time
    net = network_of(event.client_ip, params.ipv4_prefix, params.ipv6_prefix)
    networks, crossed = distinct.observe(distinct.one_rule("networks", params.max_networks,
                                                          params.window_seconds),
                                         state.networks, net, t)
    ips = touch(state.ips, event.client_ip, t, networks.watermark, params.window_seconds,
                IPS_KEPT)
    findings = [
        Finding(
            detector=NAME,
            subject=event.user,
            subject_kind="user",
            event_time=t,
            summary=(f"{event.user} in use from {len(seen)} unrelated networks within "
                     f"{int(r.window_seconds)}s"),
            evidence={
                "distinct_networks": len(seen),
                "threshold": r.max_distinct,
                "window_seconds": int(r.window_seconds),
                "networks": [n for n, _ in seen],
                "client_ips": [ip for ip, _ in ips],
            },
        )
        for r, seen in crossed
    ]
    return State(networks, ips), findings


SPEC = DetectorSpec(
    name=NAME,
    key_kind="user",
    reacts_to=frozenset({"login_ok", "send"}),
    params_type=Params,
    initial_state=initial_state,
    step=step,
    description="one credential in concurrent use from many unrelated networks",
)
