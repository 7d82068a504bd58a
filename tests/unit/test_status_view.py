"""The pure status view: core state + params -> the status document the API serves."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import pytest

from relayguard.agents.status_view import status_document, subject_problem
from relayguard.foundation.core_params import build_core_params
from relayguard.foundation.settings import Settings
from relayguard.stream import engine
from relayguard.stream.records import GeoPoint, LoginEvent, SendEvent

T0 = 1_796_000_000.0
BERLIN = GeoPoint(52.52, 13.405, 20, "DE", "Berlin")
SYDNEY = GeoPoint(-33.869, 151.209, 20, "AU", "Sydney")


def core(**detectors: object) -> engine.CoreParams:
    return build_core_params(Settings(detectors=detectors))


def send(i: int, t: float, user: str = "mallory@x.test", rcpts: int = 1) -> SendEvent:
    return SendEvent(f"s{i}", t, "r1", user, "192.0.2.1", user, rcpts, 1000)


def login(i: int, t: float, ip: str, geo: GeoPoint, user: str = "mallory@x.test") -> LoginEvent:
    return LoginEvent(f"l{i}", t, "r1", user, ip, True, "TLSv1.3", "PLAIN", geo=geo)


def run(p: engine.CoreParams, events: Sequence[SendEvent | LoginEvent],
        key: str = "mallory@x.test") -> engine.KeyState:
    state = None
    for e in events:
        state = engine.step(p, "user", key, state, e).state
    assert state is not None
    return state


def by_name(rows: list[dict[str, Any]]) -> dict[Any, dict[str, Any]]:
    return {r["name"]: r for r in rows}


def test_volume_counters_against_limits_and_the_lock() -> None:
    p = core()
    state = run(p, [send(i, T0 + i, rcpts=3) for i in range(12)])
    doc = status_document("user", "mallory@x.test", state, p, T0 + 12)
    vol = by_name(doc["detectors"]["volume"]["counters"])
    assert vol["messages_1m"]["count"] == 12 and vol["messages_1m"]["limit"] == 10
    assert vol["messages_1m"]["over"] is True
    assert vol["recipients_1h"]["count"] == 36 and vol["recipients_1h"]["limit"] == 500
    assert vol["recipients_1h"]["over"] is False
    assert vol["messages_24h"]["window"]["length_seconds"] == 86400
    # the volume throttle (11th message over 10/minute) shows as the worker's lock state
    lock = doc["lock"]
    assert lock["locked"] and lock["active"] and lock["remedy"] == "throttle"
    assert lock["expires_at"]["epoch"] == pytest.approx(T0 + 10 + 3600)
    assert lock["command_id"] == state.lock.command_id
    json.dumps(doc, allow_nan=False)  # JSON-able, no NaN/inf


def test_counts_are_taken_as_of_now_so_old_windows_empty() -> None:
    p = core()
    state = run(p, [send(i, T0 + i) for i in range(5)])
    doc = status_document("user", "mallory@x.test", state, p, T0 + 7200)
    vol = by_name(doc["detectors"]["volume"]["counters"])
    assert vol["messages_1m"]["count"] == 0 and vol["messages_1h"]["count"] == 0
    assert vol["messages_24h"]["count"] == 5
    assert doc["lock"]["active"] is False


def test_volume_limits_follow_the_users_tier() -> None:
    p = core(volume={"plans": {"bulk": {"messages_1m": 100}},
                     "users": {"mallory@x.test": {"plan": "bulk", "messages_1h": "unlimited"}}})
    state = run(p, [send(i, T0 + i) for i in range(3)])
    vol = by_name(status_document("user", "mallory@x.test", state, p, T0 + 3)
                  ["detectors"]["volume"]["counters"])
    assert (vol["messages_1m"]["limit"], vol["messages_1m"]["tier"]) == (100, "plan:bulk")
    assert (vol["messages_1h"]["limit"], vol["messages_1h"]["tier"]) == (None, "user")
    assert (vol["messages_24h"]["limit"], vol["messages_24h"]["tier"]) == (1000, "default")


def test_baseline_and_locations_with_times() -> None:
    p = core()
    events: list[SendEvent | LoginEvent] = [send(i, T0 + i * 60, rcpts=2) for i in range(4)]
    events += [login(1, T0 + 300, "192.0.2.10", BERLIN), login(2, T0 + 900, "198.51.100.7", SYDNEY)]
    state = run(p, events)
    det = status_document("user", "mallory@x.test", state, p, T0 + 1000)["detectors"]
    base = det["volume_baseline"]
    assert base["current_hour_count"] == 8 and base["learned"] is False
    assert base["learning_until"]["epoch"] == pytest.approx(T0 + 7 * 86400)
    assert base["expected_this_hour"] == 20.0 and base["threshold"] == 100.0
    last = det["impossible_travel"]["last_login"]
    assert (last["ip"], last["city"], last["country"]) == ("198.51.100.7", "Sydney", "AU")
    assert last["time"]["epoch"] == T0 + 900 and last["time"]["utc"].endswith("Z")
    countries = det["new_country"]["countries"]
    assert [c["country"] for c in countries] == ["AU", "DE"]  # newest first
    assert countries[1]["last_seen"]["epoch"] == T0 + 300
    places = by_name(det["too_many_places"]["counters"])
    assert places["countries"]["count"] == 2 and places["countries"]["limit"] == 5
    assert [i["ip"] for i in det["too_many_places"]["ips"]] == ["198.51.100.7", "192.0.2.10"]
    # Berlin -> Sydney in 10 minutes: impossible travel locks until unlocked
    assert state.lock.locked and state.lock.remedy == "lock"


def test_unknown_subject_and_ip_kind() -> None:
    p = core()
    doc = status_document("ip", "192.0.2.9", None, p, T0)
    assert doc["known"] is False and doc["last_event"] is None
    assert set(doc["detectors"]) == {d.spec.name for d in p.for_kind("ip")}
    assert all(d == {"seen": False} for d in doc["detectors"].values())
    assert doc["lock"]["locked"] is False
    json.dumps(doc, allow_nan=False)


def test_ip_counters() -> None:
    p = core()
    state = None
    for i in range(25):
        ev = LoginEvent(f"f{i}", T0 + i, "r1", f"u{i}@x.test", "192.0.2.9", False, "TLSv1.3",
                        "PLAIN", "bad_credentials", password_hash=f"h{i}")
        state = engine.step(p, "ip", "192.0.2.9", state, ev).state
    det = status_document("ip", "192.0.2.9", state, p, T0 + 25)["detectors"]
    rows = by_name(det["auth_failures_ip"]["counters"])
    # burst: 10 s window of 1 s buckets as of T0+25 holds the failures at T0+16..T0+24
    assert (rows["burst"]["count"], rows["burst"]["limit"]) == (9, 5)
    assert (rows["sustained"]["count"], rows["sustained"]["over"]) == (25, True)
    spray = by_name(det["password_spray"]["counters"])["fast"]
    assert spray["count"] == 25 and spray["limit"] == 30 and not spray["over"]


@pytest.mark.parametrize(("kind", "subject", "bad"), [
    ("user", "alice@example.com", False), ("ip", "2001:db8::1", False),
    ("ip", "example.com", True), ("user", "", True), ("user", "a" * 321, True),
    ("user", "a\nb", True), ("group", "x", True),
])
def test_subject_problem(kind: str, subject: str, bad: bool) -> None:
    assert (subject_problem(kind, subject) is not None) is bad


def test_cli_report_lays_out_every_detector_view() -> None:
    from relayguard.roof.status_cli import _report

    p = core()
    events: list[SendEvent | LoginEvent] = [send(i, T0 + i, rcpts=3) for i in range(12)]
    events += [login(1, T0 + 20, "192.0.2.10", BERLIN)]
    doc = status_document("user", "mallory@x.test", run(p, events), p, T0 + 30)
    text = _report(doc, None)
    assert "messages_1m" in text and "12 / 10" in text and "OVER" in text
    assert "last login 2026" in text and "from 192.0.2.10 (Berlin, DE)" in text
    assert "worker's lock state: locked (throttle" in text
    state = None
    for i in range(8):
        ev = LoginEvent(f"f{i}", T0 + i, "r1", f"u{i}@x.test", "192.0.2.9", False, "TLSv1.3",
                        "PLAIN", "bad_credentials")
        state = engine.step(p, "ip", "192.0.2.9", state, ev).state
    text = _report(status_document("ip", "192.0.2.9", state, p, T0 + 8), None)
    assert "auth_failures_ip:" in text and "password_spray:" in text and "values: u7@x.test" in text


def test_slow_guessing_counters_and_a_scoped_lock() -> None:
    """Failures spaced 10 minutes apart from rotating networks the user never logged in from:
    the view shows both counters against their limits, the networks, and the lock's scope."""
    p = core()
    user = "victim@x.test"
    home = login(0, T0, "198.51.100.7", BERLIN, user=user)
    guesses = [LoginEvent(f"g{i}", T0 + 600 * (i + 1), "r1", user, f"203.{i % 4}.113.9",
                          False, "TLSv1.3", "PLAIN", "bad_credentials", password_hash=f"h{i}")
               for i in range(8)]
    state = run(p, [home, *guesses], key=user)
    doc = status_document("user", user, state, p, T0 + 600 * 8 + 1)
    slow = doc["detectors"]["auth_failures_slow"]
    rows = by_name(slow["counters"])
    assert rows["failures_from_unfamiliar_networks"]["count"] == 8
    assert rows["failures_from_unfamiliar_networks"]["limit"] == 8
    assert rows["unfamiliar_networks"]["count"] == 4
    assert slow["unfamiliar_networks"] == [f"203.{i}.0.0/16" for i in range(4)]
    assert [n["network"] for n in slow["familiar_networks"]] == ["198.51.0.0/16"]
    assert doc["lock"]["locked"] and doc["lock"]["scope"] == "unfamiliar_networks"
    json.dumps(doc, allow_nan=False)
