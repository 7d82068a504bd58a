"""Impossible travel: consecutive successful logins too far apart for the time between them.

Distance is the great-circle distance less both accuracy radii (MaxMind's radius is a 67% circle),
so imprecise locations cannot manufacture a jump. Defaults: 900 km/h (Panther; Elastic 800, Okta
805), minimum distance 500 km (Elastic), pairs with a radius above 200 km are not judged.
Logins from allowlisted networks (VPN exits, corporate ranges; `ignore_networks`) are neither judged
nor stored as the user's last location (Panther), so a VPN hop does not make the next real login
look like a jump.

Known places (the field's answer to VPN on/off, roaming phones and carrier hubs: per-user known
locations, as the detection reference lists): the detector remembers the last `max_places` places
the user logged in from successfully (network /16 or /48 and location, with the time last seen).
A jump TO a place seen within `known_days`, and first seen at least `min_known_age_s` (a day) ago,
is the user alternating between places they use
(a roaming phone exiting at home and the hotel's Wi-Fi, the corporate VPN on and off, a carrier
that moves the phone between its hubs), not travel: a known place is one whose network the user
has used in the same country (with `known_locations`, also one within `min_distance_km`, after
both radii, of a place the user has been). Real
impossible travel, a login from somewhere the user has never been, too far too fast, still fires.
"""

from __future__ import annotations

from dataclasses import dataclass

from relayguard.stream import geo_math
from relayguard.stream.detector import DetectorSpec
from relayguard.stream.detectors.common import IpNetwork, in_networks, network_of
from relayguard.stream.records import Event, Finding, GeoPoint, LoginEvent

NAME = "impossible_travel"
DAY = 86400.0


@dataclass(frozen=True, slots=True)
class Params:
    max_speed_kmh: float = 900.0
    min_distance_km: float = 500.0
    max_accuracy_radius_km: float = 200.0
    ignore_networks: tuple[IpNetwork, ...] = ()
    # A jump to a place the user logged in from within this many days is not travel (0: off,
    # every jump is judged as before). 30 days: a month covers weekly VPN use and a trip's
    # hotel; our choice, the reference names the method (per-user known locations), not a span.
    known_days: float = 30.0
    max_places: int = 10  # places remembered per user (least recently seen forgotten)
    # Whether a network (/16, /48) the user used counts as known wherever in the same country
    # the GeoIP database puts it this time (a carrier's hubs are one country's cities).
    known_networks: bool = True
    # A place vouches only once the user has had it this long: an attacker's proxy, seen first
    # a few hours ago between the victim's own logins, is not yet a place the user uses, while
    # a VPN exit or a carrier's hubs are known for days. 24 h: our choice (measured on the
    # simulator: without it, slow spam from abroad hid behind its own earlier sessions).
    min_known_age_s: float = 86400.0
    # Also count as known a new network within min_distance_km of a known place (a new cafe
    # in a city the user works in). Off by default: a residential proxy in the city a carrier
    # puts the victim's phone in would pass, and on the simulator it hid a real hop.
    known_locations: bool = False


@dataclass(frozen=True, slots=True)
class LastLogin:
    time: float
    ip: str
    geo: GeoPoint


@dataclass(frozen=True, slots=True)
class Place:
    """A place the user logged in from: its network, where GeoIP put it, when last seen."""

    network: str
    latitude: float
    longitude: float
    radius_km: float
    last_seen: float
    country: str | None = None
    first_seen: float = float("-inf")


@dataclass(frozen=True, slots=True)
class State:
    last: LastLogin | None = None
    places: tuple[Place, ...] = ()  # oldest-seen first, at most Params.max_places


def initial_state() -> State:
    return State()


def step(params: Params, state: State, event: Event) -> tuple[State, list[Finding]]:
    if not isinstance(event, LoginEvent) or not event.success or event.geo is None:
        return state, []
    if event.user is None or in_networks(event.client_ip, params.ignore_networks):
        return state, []
    here = LastLogin(event.event_time, event.client_ip, event.geo)
    network = network_of(event.client_ip)
    places = _remember(params, state.places, network, here)
    last = state.last
    if last is None:
        return State(here, places), []
    newer = here if here.time >= last.time else last
    finding = _judge(params, event.user, last, here)
    if finding is not None and _known(params, state.places, network, here):
        finding = None  # back to a place the user uses: alternating, not travelling
    return State(newer, places), [finding] if finding else []


def _known(params: Params, places: tuple[Place, ...], network: str, here: LastLogin) -> bool:
    """`here` is a place the user was seen at within `known_days` (before this login)."""
    if params.known_days <= 0:
        return False
    horizon = here.time - params.known_days * DAY
    g = here.geo
    for p in places:
        if p.last_seen < horizon or p.last_seen > here.time:
            continue  # too old, or seen only after this (late) login
        if p.first_seen > here.time - params.min_known_age_s:
            continue  # too new to be a place the user uses
        if params.known_networks and p.network == network and p.country is not None \
                and p.country == g.country:
            return True  # one carrier's hubs, one provider's exits: same network, same country
        if not params.known_locations:
            continue
        if max(p.radius_km, g.accuracy_radius_km) > params.max_accuracy_radius_km:
            continue  # an imprecise place cannot vouch for a location
        raw = geo_math.haversine_km(p.latitude, p.longitude, g.latitude, g.longitude)
        if geo_math.effective_distance_km(raw, p.radius_km, g.accuracy_radius_km) \
                < params.min_distance_km:
            return True
    return False


def _remember(params: Params, places: tuple[Place, ...], network: str,
              here: LastLogin) -> tuple[Place, ...]:
    """`places` with `here` seen (one entry per network and location), least recent dropped."""
    if params.known_days <= 0 or params.max_places <= 0:
        return ()
    g = here.geo
    seen = first = here.time
    kept: list[Place] = []
    for p in places:
        if p.network == network and _same_spot(p, g):
            seen, first = max(seen, p.last_seen), min(first, p.first_seen)
        else:
            kept.append(p)
    kept.append(Place(network, g.latitude, g.longitude, g.accuracy_radius_km, seen, g.country,
                      first))
    kept.sort(key=lambda p: p.last_seen)
    return tuple(kept[-params.max_places:])


def _same_spot(p: Place, g: GeoPoint) -> bool:
    return abs(p.latitude - g.latitude) < 0.05 and abs(p.longitude - g.longitude) < 0.05


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
    reacts_to=frozenset({"login_ok"}),
    params_type=Params,
    initial_state=initial_state,
    step=step,
    description="consecutive logins whose distance over time implies a speed above the limit",
)
