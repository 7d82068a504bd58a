"""Every kind of bad payload is refused with a dead-letter reason, never another exception."""

from __future__ import annotations

import contextlib
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from relayguard.stream import codec
from relayguard.stream.records import DeliveryEvent, Event, SendEvent
from relayguard.stream.timefmt import to_rfc3339

GOOD = {"type": "send", "event_id": "x", "event_time": "2026-11-29T10:16:00Z", "relay_id": "r",
        "user": "a", "client_ip": "192.0.2.1", "sender": "a@b", "recipient_count": 3, "size": 10}


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"not json at all", "not_json"),
        (b"\xff\xfe\x00", "not_utf8"),
        (b"[1, 2]", "not_an_object"),
        (b'"string"', "not_an_object"),
        (orjson.dumps({**GOOD, "type": "telepathy"}), "unknown_type"),
        (orjson.dumps({k: v for k, v in GOOD.items() if k != "type"}), "unknown_type"),
        (orjson.dumps({**GOOD, "recipient_count": "three"}), "invalid"),
        (orjson.dumps({k: v for k, v in GOOD.items() if k != "user"}), "invalid"),
        (orjson.dumps({**GOOD, "event_time": "yesterday"}), "invalid"),
        (orjson.dumps({**GOOD, "event_time": "2026-02-30T10:00:00Z"}), "invalid"),
        (orjson.dumps({**GOOD, "surprise": 1}), "invalid"),
        (orjson.dumps({**GOOD, "sender": "x" * 70000}), "oversized"),
    ],
)
def test_bad_payloads_are_rejected_with_reason(raw: bytes, reason: str) -> None:
    with pytest.raises(codec.Rejected) as err:
        codec.decode_event(raw)
    assert err.value.reason == reason
    assert err.value.detail


DELIVERY = {"type": "delivery", "event_id": "d", "event_time": "2026-11-29T10:16:05Z",
            "relay_id": "r", "user": "a@b", "queue_id": "4XkQ1z", "status": "bounced",
            "recipient_domain": "example.net", "dsn": "5.1.1"}


@pytest.mark.parametrize(
    "bad",
    [
        {**GOOD, "recipient_domains": "example.net"},  # not a list
        {**GOOD, "recipient_domains": [1]},
        {**GOOD, "recipient_domains": [""]},
        {**GOOD, "recipient_domains": ["x" * 254]},
        {**GOOD, "recipient_domains": ["Example.NET"]},  # the contract says lowercase
        {**GOOD, "recipient_domains": ["a@example.net"]},  # an address, not a domain
        {**GOOD, "recipient_domains": ["a.test", "a.test"]},  # distinct
        {**GOOD, "recipient_domains": [f"d{i}.test" for i in range(33)]},  # at most 32
        {**GOOD, "recipient_domain_count": -1},
        {**GOOD, "recipient_domain_count": 100001},
        {**GOOD, "recipient_domain_count": 2.0},  # what the relay wrote: a plain integer
        {**GOOD, "recipient_domain_count": True},
        {**GOOD, "recipient_domains": ["a.test", "b.test"], "recipient_domain_count": 1},
        {**DELIVERY, "status": "lost"},
        {**DELIVERY, "user": ""},
        {**DELIVERY, "queue_id": ""},
        {**DELIVERY, "dsn": "five"},
        {**DELIVERY, "recipient_domain": "Example.net"},
        {**DELIVERY, "client_ip": "192.0.2.1"},  # unknown fields are refused, as for the others
        {k: v for k, v in DELIVERY.items() if k != "status"},
    ],
)
def test_bad_new_fields_are_invalid(bad: dict[str, object]) -> None:
    with pytest.raises(codec.Rejected) as err:
        codec.decode_event(orjson.dumps(bad))
    assert err.value.reason == "invalid"


def test_recipient_domains_and_delivery_decode() -> None:
    send = codec.decode_event(orjson.dumps(
        {**GOOD, "recipient_domains": ["b.test", "a.test"], "recipient_domain_count": 40}))
    assert isinstance(send, SendEvent)
    assert send.recipient_domains == ("b.test", "a.test")
    assert send.recipient_domain_count == 40
    old = codec.decode_event(orjson.dumps(GOOD))  # old relays: both absent, still valid
    assert isinstance(old, SendEvent)
    assert old.recipient_domains is None and old.recipient_domain_count is None
    delivery = codec.decode_event(orjson.dumps(DELIVERY))
    assert isinstance(delivery, DeliveryEvent)
    assert (delivery.user, delivery.status, delivery.dsn) == ("a@b", "bounced", "5.1.1")
    assert codec.decode_event(codec.encode_event(delivery)) == delivery
    assert codec.decode_event(codec.encode_event(old)) == old


def test_good_payload_decodes() -> None:
    event = codec.decode_event(orjson.dumps(GOOD))
    assert event.user == "a"


# The machine may be busy: these are correctness properties, not timing ones.
RELAXED = settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])


@RELAXED
@given(st.binary(max_size=300))
def test_arbitrary_bytes_never_escape_as_other_errors(raw: bytes) -> None:
    with contextlib.suppress(codec.Rejected):
        codec.decode_event(raw)


@RELAXED
@given(st.dictionaries(st.sampled_from(sorted(GOOD)), st.one_of(
    st.none(), st.integers(-(2**63), 2**63 - 1), st.text(max_size=20), st.booleans(), st.floats())))
def test_arbitrary_objects_never_escape_as_other_errors(partial: dict[str, object]) -> None:
    with contextlib.suppress(codec.Rejected):
        codec.decode_event(orjson.dumps({**GOOD, **partial}))


def _asdict_wire(e: Event) -> dict[str, object]:
    """What event_to_dict gave when it was built on dataclasses.asdict (the reference)."""
    from dataclasses import asdict

    d: dict[str, Any] = asdict(e)
    d.pop("geo", None)
    for name in ("recipient_domains", "recipient_domain_count"):
        if name in d and d[name] is None:
            del d[name]
    if d.get("recipient_domains") is not None:
        d["recipient_domains"] = list(d["recipient_domains"])
    d["event_time"] = to_rfc3339(e.event_time)
    return d


def test_wire_dict_is_the_asdict_one_and_never_carries_geo() -> None:
    from dataclasses import replace

    from relayguard.stream.records import GeoPoint, LoginEvent

    geo = GeoPoint(48.1, 11.6, 20.0, "DE")
    events: list[Event] = [
        LoginEvent("l1", 1796000000.25, "r", "u", "192.0.2.1", False, "TLSv1.3", "PLAIN",
                   "bad_credentials", "postfix-log", "sha1:abcd", geo),
        LoginEvent("l2", 1796000000.0, "r", None, "2001:db8::1", True, None, None, None, "x"),
        SendEvent("s1", 1796000001.5, "r", "u", "192.0.2.1", "u@x", 3, 100,
                  recipient_domains=("a.example", "b.example"), recipient_domain_count=2),
        SendEvent("s2", 1796000001.5, "r", "u", "192.0.2.1", "u@x", 3, 100),
        DeliveryEvent("d1", 1796000002.0, "r", "u", "ABC123", "bounced", "x.example", "5.1.1",
                      "postfix-log"),
    ]
    for e in events:
        got = codec.event_to_dict(e)
        want = _asdict_wire(e)
        want["type"] = got["type"]
        assert got == want and "geo" not in got
        back = replace(e, geo=None) if isinstance(e, LoginEvent) else e
        assert codec.decode_event(codec.encode_event(e)) == back
