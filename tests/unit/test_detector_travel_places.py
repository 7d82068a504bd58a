"""impossible_travel's known places: bounded, time-ordered, and only places seen before vouch."""

from __future__ import annotations

from relayguard.stream.detectors import auth_failures_ip, impossible_travel
from relayguard.stream.detectors.impossible_travel import Params, State, step
from relayguard.stream.records import GeoPoint, LoginEvent

T0 = 1_800_000_000.0
BERLIN = GeoPoint(52.52, 13.405, 20, "DE", "Berlin")
SYDNEY = GeoPoint(-33.87, 151.21, 10, "AU", "Sydney")


def _login(t: float, ip: str, geo: GeoPoint, user: str = "a@x", ok: bool = True) -> LoginEvent:
    return LoginEvent(f"e{t}", t, "r", user, ip, ok, "TLSv1.3", "PLAIN",
                      None if ok else "bad_credentials", "test", None, geo)


def test_places_are_capped_and_the_least_recently_seen_go_first() -> None:
    params = Params(max_places=4)
    state = State()
    for k in range(20):  # twenty cities a day apart, one network each
        geo = GeoPoint(10.0 + k, 20.0, 10, "XX")
        state, _ = step(params, state, _login(T0 + k * 86400, f"10.{k}.0.1", geo))
    assert len(state.places) == 4
    assert [p.network for p in state.places] == [f"10.{k}.0.0/16" for k in range(16, 20)]
    # the same network and spot again is one place, seen later
    state, _ = step(params, state, _login(T0 + 21 * 86400, "10.17.9.9",
                                          GeoPoint(27.0, 20.0, 10, "XX")))
    assert len(state.places) == 4 and state.places[-1].network == "10.17.0.0/16"
    assert state.places[-1].first_seen == T0 + 17 * 86400


def test_the_way_back_to_a_known_place_is_not_a_second_jump() -> None:
    params = Params()
    state, _ = step(params, State(), _login(T0 - 2 * 86400, "198.51.100.1", BERLIN))
    state, _ = step(params, state, _login(T0, "198.51.100.1", BERLIN))
    state, found = step(params, state, _login(T0 + 600, "192.0.2.9", SYDNEY))
    assert [f.detector for f in found] == ["impossible_travel"]  # never seen: a jump
    assert state.places[-1].network == "192.0.0.0/16"
    state, found = step(params, state, _login(T0 + 1200, "198.51.100.1", BERLIN))
    assert found == []  # back home: a place she has had for two days
    # Sydney again 10 min later: seen, but too new to vouch for itself
    state, found = step(params, state, _login(T0 + 1800, "192.0.2.9", SYDNEY))
    assert [f.detector for f in found] == ["impossible_travel"]
    fresh, first = step(params, State(), _login(T0 + 600, "192.0.2.9", SYDNEY))
    assert first == [] and len(fresh.places) == 1


def test_known_days_zero_keeps_no_places() -> None:
    state, _ = step(Params(known_days=0), State(), _login(T0, "198.51.100.1", BERLIN))
    assert state.places == () and state.last is not None


def test_failed_logins_are_not_places() -> None:
    state, _ = step(Params(), State(), _login(T0, "192.0.2.9", SYDNEY, ok=False))
    assert state == impossible_travel.initial_state()


def test_full_block_users_is_bounded_by_the_users_kept() -> None:
    import pytest

    with pytest.raises(ValueError, match="full_block_users"):
        auth_failures_ip.Params(full_block_users=auth_failures_ip.MAX_USERS_KEPT + 1)
