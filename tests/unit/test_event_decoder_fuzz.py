"""Hypothesis against the event decoder: arbitrary bytes and JSON never raise anything but
codec.Rejected (with a dead-letter reason); every valid event round-trips; implausible types,
addresses and times are refused with the right reason."""

from __future__ import annotations

import contextlib
import time
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from relayguard import schemas
from relayguard.stream import codec
from relayguard.stream.records import LoginEvent, SendEvent
from relayguard.stream.timefmt import TimeBounds, to_rfc3339

RELAXED = settings(deadline=None, suppress_health_check=[HealthCheck.too_slow], max_examples=300)
NOW = 1_796_000_000.0
BASE = {"type": "send", "event_id": "x", "event_time": to_rfc3339(NOW), "relay_id": "r",
        "user": "a", "client_ip": "192.0.2.1", "sender": "a@b", "recipient_count": 3, "size": 10}

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner,
                                                                 max_size=4),
    max_leaves=12)


def _decode(raw: bytes) -> None:
    try:
        codec.decode_event(raw, NOW, TimeBounds())
    except codec.Rejected as exc:
        assert exc.reason in _reasons() and exc.detail


def _reasons() -> set[str]:
    data: dict[str, Any] = schemas.load("dead-letter")
    return set(data["properties"]["reason"]["enum"])


@RELAXED
@given(st.binary(max_size=400))
def test_arbitrary_bytes_only_ever_raise_rejected(raw: bytes) -> None:
    _decode(raw)


@RELAXED
@given(json_values)
def test_arbitrary_json_only_ever_raises_rejected(value: object) -> None:
    with contextlib.suppress(TypeError):  # orjson refuses some hypothesis values (e.g. 2**70)
        raw = orjson.dumps(value)
        _decode(raw)


@RELAXED
@given(st.dictionaries(st.sampled_from([*sorted(BASE), "extra"]), json_values, max_size=5))
def test_events_with_arbitrary_fields_only_ever_raise_rejected(partial: dict[str, Any]) -> None:
    with contextlib.suppress(TypeError):
        _decode(orjson.dumps({**BASE, **partial}))


ips = st.ip_addresses().map(str).filter(lambda s: codec.canonical_ip(s) == s)  # canonical
texts = st.text(min_size=1, max_size=40)
times = st.floats(min_value=NOW - 6 * 86400, max_value=NOW + 290).map(lambda t: round(t, 3))
sends = st.builds(SendEvent, event_id=texts, event_time=times, relay_id=texts, user=texts,
                  client_ip=ips, sender=st.text(max_size=40),
                  recipient_count=st.integers(0, 100000), size=st.integers(0, 2**40),
                  tls_protocol=st.none() | st.sampled_from(["TLSv1.2", "TLSv1.3"]),
                  queue_id=st.none() | st.text(max_size=20), source=st.text(max_size=20))
logins = st.builds(LoginEvent, event_id=texts, event_time=times, relay_id=texts,
                   user=st.none() | st.text(max_size=40), client_ip=ips, success=st.booleans(),
                   failure_reason=st.sampled_from([None, "bad_credentials", "other"]),
                   password_hash=st.none() | st.text(max_size=40))


@RELAXED
@given(sends | logins)
def test_valid_events_round_trip(event: SendEvent | LoginEvent) -> None:
    back = codec.decode_event(codec.encode_event(event), NOW, TimeBounds())
    assert back == event


@pytest.mark.parametrize(("change", "reason"), [
    ({"recipient_count": 1.0}, "invalid"),
    ({"size": 1e30}, "invalid"),
    ({"size": 2**40 + 1}, "invalid"),
    ({"recipient_count": True}, "invalid"),
    ({"client_ip": "not-an-ip"}, "invalid"),
    ({"client_ip": "999.1.1.1"}, "invalid"),
    ({"event_time": "10000-01-01T00:00:00Z"}, "invalid"),
    ({"event_time": "9999-12-31T23:59:59Z"}, "time_out_of_range"),
    ({"event_time": to_rfc3339(NOW + 3600)}, "time_out_of_range"),
    ({"event_time": to_rfc3339(NOW + 86400)}, "time_out_of_range"),
    ({"event_time": to_rfc3339(NOW - 8 * 86400)}, "time_out_of_range"),
    ({"event_time": "1970-01-01T00:00:00Z"}, "time_out_of_range"),
])
def test_implausible_values_are_refused_with_reason(change: dict[str, Any], reason: str) -> None:
    with pytest.raises(codec.Rejected) as err:
        codec.decode_event(orjson.dumps({**BASE, **change}), NOW, TimeBounds())
    assert err.value.reason == reason, err.value.detail


def test_ips_are_canonical_and_times_within_bounds_pass() -> None:
    e = codec.decode_event(orjson.dumps({**BASE, "client_ip": "::ffff:192.0.2.1",
                                         "event_time": to_rfc3339(NOW + 299)}), NOW)
    assert e.client_ip == "192.0.2.1"
    e = codec.decode_event(orjson.dumps({**BASE, "client_ip": "2001:DB8:0::1"}), NOW)
    assert e.client_ip == "2001:db8::1"


def test_without_a_clock_times_are_not_bounded() -> None:
    """`relayguard replay` reads old logs: no `now`, no time bound."""
    old = codec.decode_event(orjson.dumps({**BASE, "event_time": "2001-01-01T00:00:00Z"}))
    assert old.event_time < time.time() - 86400
