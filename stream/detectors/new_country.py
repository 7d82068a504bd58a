"""New country: a successful login from a country the user has not logged in from before, once the
user's learning period is over.

Defaults and sources: learning period 14 days AND 10 logins (Microsoft Entra ID Protection learns
sign-in properties for 14 days or 10 logins; we wait for both, the conservative reading; Defender
for Cloud Apps uses 7 days). Logins from allowlisted networks (VPN exits, corporate ranges) are
ignored, so a VPN's exit country is never learned nor flagged. Alert-only by default: travellers
are common; correlation escalates a new country followed by a volume jump.
"""

from __future__ import annotations

from dataclasses import dataclass

from relayguard.stream.detector import DetectorSpec
from relayguard.stream.detectors.common import IpNetwork, Recent, in_networks, touch
from relayguard.stream.records import Event, Finding, LoginEvent

NAME = "new_country"
DAY = 86400.0


@dataclass(frozen=True, slots=True)
class Params:
    learning_seconds: float = 14 * DAY
    learning_logins: int = 10
    max_countries_kept: int = 32  # least recently used are forgotten beyond this
    ignore_networks: tuple[IpNetwork, ...] = ()


@dataclass(frozen=True, slots=True)
class State:
    first_seen: float | None = None
    logins: int = 0
    countries: Recent = ()  # (ISO country, last login from it)


def initial_state() -> State:
    return State()


def step(params: Params, state: State, event: Event) -> tuple[State, list[Finding]]:
    if not isinstance(event, LoginEvent) or not event.success or event.user is None:
        return state, []
    geo = event.geo
    if geo is None or not geo.country or in_networks(event.client_ip, params.ignore_networks):
        return state, []
    t = event.event_time
    first = t if state.first_seen is None else min(state.first_seen, t)
    known = any(c == geo.country for c, _ in state.countries)
    learned = (state.logins >= params.learning_logins
               and t - first >= params.learning_seconds)
    countries = touch(state.countries, geo.country, t, t, float("inf"), params.max_countries_kept)
    new_state = State(first, state.logins + 1, countries)
    if known or not learned:
        return new_state, []
    finding = Finding(
        detector=NAME,
        subject=event.user,
        subject_kind="user",
        event_time=t,
        summary=f"{event.user} logged in from a new country {geo.country} ({event.client_ip})",
        evidence={
            "country": geo.country,
            "city": geo.city,
            "client_ip": event.client_ip,
            "known_countries": sorted(c for c, _ in state.countries),
            "logins_seen": state.logins,
            "first_seen": first,
            "relay_id": event.relay_id,
        },
    )
    return new_state, [finding]


SPEC = DetectorSpec(
    name=NAME,
    key_kind="user",
    reacts_to=frozenset({"login_ok"}),
    params_type=Params,
    initial_state=initial_state,
    step=step,
    description="successful login from a country new for the user, after a learning period",
)
