"""The schemas are the contract: their examples are valid, and the code's records round-trip."""

from __future__ import annotations

import jsonschema
import pytest

from relayguard import schemas
from relayguard.stream import codec
from relayguard.stream.records import (
    Alert,
    DeliveryEvent,
    Event,
    LockAck,
    LockCommand,
    LoginEvent,
    SendEvent,
)


def _validator(name: str) -> jsonschema.Draft202012Validator:
    schema = schemas.load(name)
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema, format_checker=jsonschema.FormatChecker())


@pytest.mark.parametrize("name", schemas.NAMES)
def test_schema_examples_are_valid(name: str) -> None:
    schema = schemas.load(name)
    assert schema["$schema"].endswith("2020-12/schema")
    assert schema.get("examples"), f"{name} has no examples"
    validator = _validator(name)
    for example in schema["examples"]:
        validator.validate(example)


LOGIN = LoginEvent("e1", 1796000000.25, "relay-1", "alice@example.com", "2001:db8::1", False,
                   None, "LOGIN", "bad_credentials", "postfix-log", "hmac:abc")
SEND = SendEvent("e2", 1796000001.0, "relay-1", "alice@example.com", "192.0.2.1", "a@x.test",
                 7, 12345, "TLSv1.3", "4XkQ1z", "postfix-policy")
SEND_DOMAINS = SendEvent("e3", 1796000001.5, "relay-1", "alice@example.com", "192.0.2.1",
                         "a@x.test", 40, 999, None, None, "postfix-policy",
                         ("x.test", "y.test"), 12)
DELIVERY = DeliveryEvent("e4", 1796000009.0, "relay-1", "alice@example.com", "4XkQ1z",
                         "bounced", "y.test", "5.1.1", "postfix-log")
DELIVERY_BARE = DeliveryEvent("e5", 1796000010.0, "relay-1", "alice@example.com", "4XkQ1z",
                              "sent")
COMMAND = LockCommand("c1", "alice@example.com", "user", "lock", "too many", "volume",
                      {"count": 41, "limit": 10}, 1796000002.5, 1796003602.5, "worker", 17,
                      "high", False)
ALERT = Alert("a1", "volume", "high", "alice@example.com", "user", "too many", {"count": 41},
              1796000002.0, "throttle", "c1", False)
ACK = LockAck("relay-1", "c1", "alice@example.com", "user", "lock", 17, 1796000003.125)


_SCHEMA_OF = {LoginEvent: "login-event", SendEvent: "send-event", DeliveryEvent: "delivery-event"}


@pytest.mark.parametrize("event", [LOGIN, SEND, SEND_DOMAINS, DELIVERY, DELIVERY_BARE])
def test_events_round_trip_through_schema(event: Event) -> None:
    raw = codec.encode_event(event)
    _validator(_SCHEMA_OF[type(event)]).validate(codec.parse_record(raw, codec.EVENT_TYPES))
    assert codec.decode_event(raw) == event


def test_lock_command_round_trips() -> None:
    d = codec.lock_command_to_dict(COMMAND)
    _validator("lock-command").validate(d)
    assert codec.decode_lock_command(codec.dumps(d)) == COMMAND


def test_alert_and_ack_round_trip() -> None:
    a = codec.alert_to_dict(ALERT)
    _validator("alert").validate(a)
    assert codec.alert_from_dict(a) == ALERT
    k = codec.lock_ack_to_dict(ACK)
    _validator("lock-ack").validate(k)
    assert codec.lock_ack_from_dict(k) == ACK


def test_dead_letter_record_matches_schema() -> None:
    from relayguard.agents.dead_letter import dead_letter_record

    record = dead_letter_record(b"\xff junk", "not_json", "bad", "t", 1, 2, 1796000000.0)
    _validator("dead-letter").validate(record)
