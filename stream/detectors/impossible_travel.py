"""Impossible travel: consecutive successful logins too far apart for the time between them.

Distance is the great-circle distance less both accuracy radii (MaxMind's radius is a 67% circle),
so imprecise locations cannot manufacture a jump. Defaults: 900 km/h (Panther; Elastic 800, Okta
805), minimum distance 500 km (Elastic), pairs with a radius above 200 km are not judged.
Logins from allowlisted networks (VPN exits, corporate ranges; `ignore_networks`) are neither judged
nor stored as the user's last location (Panther), so a VPN hop does not make the next real login
look like a jump.
"""

from __future__ import annotations

from dataclasses import dataclass

from relayguard.stream import geo_math
from relayguard.stream.detector import DetectorSpec
from relayguard.stream.detectors.common import IpNetwork, in_networks
from relayguard.stream.records import Event, Finding, GeoPoint, LoginEvent

NAME = "impossible_travel"


@dataclass(frozen=True, slots=True)
class Params:
    max_speed_kmh: float = 900.0
    min_distance_km: float = 500.0
    max_accuracy_radius_km: float = 200.0
    ignore_networks: tuple[IpNetwork, ...] = ()


@dataclass(frozen=True, slots=True)
class LastLogin:
    time: float
    ip: str
    geo: GeoPoint


@dataclass(frozen=True, slots=True)
class State:
    last: LastLogin | None = None


def initial_state() -> State:
    return State()


def step(params: Params, state: State, event: Event) -> tuple[State, list[Finding]]:
    if not isinstance(event, LoginEvent) or not event.success or event.geo is None:
        return state, []
    if event.user is None or in_networks(event.client_ip, params.ignore_networks):
        return state, []
    here = LastLogin(event.event_time, event.client_ip, event.geo)
    last = state.last
    if last is None:
        return State(here), []
    newer = here if here.time >= last.time else last
    finding = _judge(params, event.user, last, here)
    return State(newer), [finding] if finding else []


def _judge(params: Params, user: str, a: LastLogin, b: LastLogin) -> Finding | None:
    limit = params.max_accuracy_radius_km
    if a.geo.accuracy_radius_km > limit or b.geo.accuracy_radius_km > limit:
        return None
    raw = geo_math.haversine_km(a.geo.latitude, a.geo.longitude, b.geo.latitude, b.geo.longitude)
    distance = geo_math.effective_distance_km(
        raw, a.geo.accuracy_radius_km, b.geo.accuracy_radius_km
    )
    if distance < params.min_distance_km:
        return None
    seconds = abs(b.time - a.time)
    speed = geo_math.implied_speed_kmh(distance, seconds)
    if speed <= params.max_speed_kmh:
        return None
    first, second = (a, b) if a.time <= b.time else (b, a)
    return Finding(
        detector=NAME,
        subject=user,
        subject_kind="user",
        event_time=max(a.time, b.time),
        summary=(
            f"{user} logged in from {_place(first.geo)} then {_place(second.geo)}: "
            f"{distance:.0f} km in {seconds / 60:.0f} min ({speed:.0f} km/h)"
        ),
        evidence={
            "from": _where(first),
            "to": _where(second),
            "distance_km": round(distance, 1),
            "raw_distance_km": round(raw, 1),
            "seconds_between": round(seconds, 1),
            "speed_kmh": round(speed, 1),
            "max_speed_kmh": params.max_speed_kmh,
        },
    )


def _place(geo: GeoPoint) -> str:
    return ", ".join(p for p in (geo.city, geo.country) if p) or f"{geo.latitude},{geo.longitude}"


def _where(login: LastLogin) -> dict[str, object]:
    g = login.geo
    return {
        "ip": login.ip,
        "time": login.time,
        "country": g.country,
        "city": g.city,
        "latitude": g.latitude,
        "longitude": g.longitude,
        "accuracy_radius_km": g.accuracy_radius_km,
    }


SPEC = DetectorSpec(
    name=NAME,
    key_kind="user",
    params_type=Params,
    initial_state=initial_state,
    step=step,
    description="consecutive logins whose distance over time implies a speed above the limit",
)
