"""Bytes <-> records, checked against the schemas in `schemas/`.

Decoding never raises anything but `Rejected`, whose `reason` is one of the dead-letter reasons,
so the agent can route any bad payload to the DLQ with a clear cause and carry on.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from dataclasses import asdict, fields
from typing import Any, TypeVar

import fastjsonschema
import orjson

from relayguard import schemas
from relayguard.stream import signed
from relayguard.stream.records import (
    Alert,
    DeliveryEvent,
    Event,
    LockAck,
    LockCommand,
    LoginEvent,
    SendEvent,
)
from relayguard.stream.timefmt import TimeBounds, parse_rfc3339, to_rfc3339

R = TypeVar("R")
EVENT_TYPES = ("login", "send", "delivery")  # what the events topic carries
MAX_EVENT_BYTES = 64 * 1024  # a login or send event is well under 1 KiB; anything this big is junk


class Rejected(Exception):
    """A payload that is not a valid record. `reason` is a dead-letter reason code."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


def _compile(name: str) -> Callable[[Any], Any]:
    validate: Callable[[Any], Any] = fastjsonschema.compile(schemas.load(name))
    return validate


_VALIDATORS: dict[str, Callable[[Any], Any]] = {
    "login": _compile("login-event"),
    "send": _compile("send-event"),
    "delivery": _compile("delivery-event"),
    "lock_command": _compile("lock-command"),
    "lock_ack": _compile("lock-ack"),
    "alert": _compile("alert"),
}


def parse_record(raw: bytes, allowed: tuple[str, ...]) -> dict[str, Any]:
    """Parse and validate a JSON record whose `type` is one of `allowed`."""
    if len(raw) > MAX_EVENT_BYTES:
        raise Rejected("oversized", f"{len(raw)} bytes, limit {MAX_EVENT_BYTES}")
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        reason = "not_utf8" if "utf-8" in str(exc).lower() else "not_json"
        raise Rejected(reason, str(exc)) from None
    if not isinstance(data, dict):
        raise Rejected("not_an_object", f"top level is {type(data).__name__}, want an object")
    kind = data.get("type")
    if kind not in allowed:
        raise Rejected("unknown_type", f"type {kind!r} is not one of {', '.join(allowed)}")
    try:
        _VALIDATORS[kind](data)
    except fastjsonschema.JsonSchemaValueException as exc:
        raise Rejected("invalid", exc.message) from None
    return data


def decode_event(raw: bytes, now: float | None = None,
                 bounds: TimeBounds | None = None) -> Event:
    """A checked event. With `now` (the caller's clock), a time outside `bounds` is refused
    with reason `time_out_of_range`: it must never reach the core, where it would move the
    key's watermark. Without `now` (offline replay of old logs) times are not bounded."""
    data = parse_record(raw, EVENT_TYPES)
    try:
        event = event_from_dict(data)
    except (ValueError, TypeError, OverflowError) as exc:  # calendar, range, type problems
        raise Rejected("invalid", str(exc)) from None
    if now is not None:
        problem = (bounds or TimeBounds()).problem(event.event_time, now)
        if problem is not None:
            raise Rejected("time_out_of_range", problem)
    return event


def _int(d: dict[str, Any], name: str) -> int:
    """JSON Schema counts 1.0 and 1e30 as integers; we want what the relay wrote: a plain int."""
    value = d[name]
    if type(value) is not int:
        raise TypeError(f"{name} must be a JSON integer without fraction or exponent, "
                        f"got {value!r}")
    return value


# canonical_ip of recently seen texts: a fleet's events come from a few thousand addresses
# again and again, and ipaddress parses one in ~2 µs (py-spy: 2.4% of the worker's time).
# Only texts that parsed are kept; cleared when full, so it stays bounded (~1 MiB).
_CANONICAL_CACHE = 8192
_canonical: dict[str, str] = {}


def canonical_ip(text: str) -> str:
    """The canonical text of an IPv4/IPv6 address (IPv4-mapped IPv6 as plain IPv4)."""
    got = _canonical.get(text)
    if got is None:
        got = _canonical_ip(text)
        if len(_canonical) >= _CANONICAL_CACHE:
            _canonical.clear()
        _canonical[text] = got
    return got


def _canonical_ip(text: str) -> str:
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        raise ValueError(f"client_ip {text[:80]!r} is not an IPv4 or IPv6 address") from None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped)
    return str(ip)


def event_from_dict(d: dict[str, Any]) -> Event:
    t = parse_rfc3339(d["event_time"])
    if d["type"] == "delivery":
        return DeliveryEvent(
            event_id=d["event_id"], event_time=t, relay_id=d["relay_id"], user=d["user"],
            queue_id=d["queue_id"], status=d["status"],
            recipient_domain=d.get("recipient_domain"), dsn=d.get("dsn"),
            source=d.get("source", "unknown"),
        )
    ip = canonical_ip(d["client_ip"])
    if d["type"] == "login":
        return LoginEvent(
            event_id=d["event_id"], event_time=t, relay_id=d["relay_id"], user=d["user"],
            client_ip=ip, success=d["success"], tls_protocol=d.get("tls_protocol"),
            sasl_mechanism=d.get("sasl_mechanism"), failure_reason=d.get("failure_reason"),
            source=d.get("source", "unknown"), password_hash=d.get("password_hash"),
        )
    domains, domain_count = _recipient_domains(d)
    return SendEvent(
        event_id=d["event_id"], event_time=t, relay_id=d["relay_id"], user=d["user"],
        client_ip=ip, sender=d["sender"], recipient_count=_int(d, "recipient_count"),
        size=_int(d, "size"), tls_protocol=d.get("tls_protocol"), queue_id=d.get("queue_id"),
        source=d.get("source", "unknown"), recipient_domains=domains,
        recipient_domain_count=domain_count,
    )


def _recipient_domains(d: dict[str, Any]) -> tuple[tuple[str, ...] | None, int | None]:
    """The optional RCPT summary of a send event, checked beyond the schema: a plain integer
    count that is not smaller than the list it summarises."""
    listed = d.get("recipient_domains")
    domains = None if listed is None else tuple(listed)
    count = _int(d, "recipient_domain_count") if "recipient_domain_count" in d else None
    if domains is not None and count is not None and count < len(domains):
        raise ValueError(f"recipient_domain_count {count} is smaller than the "
                         f"{len(domains)} recipient_domains listed")
    return domains, count


# Optional fields left out of the wire object when unset (their schemas do not allow null).
_OMIT_IF_NONE = ("recipient_domains", "recipient_domain_count")
_TYPE_NAMES: dict[type, str] = {LoginEvent: "login", SendEvent: "send", DeliveryEvent: "delivery"}


# Wire fields per event class, without `geo` (enrichment is the worker's, never on the wire).
# Every value is a str, number, bool, None or a tuple of str: a shallow copy is what `asdict`
# gave, without its recursive deep copy (a third of a relay's cost per spooled event).
_WIRE_FIELDS: dict[type, tuple[str, ...]] = {
    cls: tuple(f.name for f in fields(cls) if f.name != "geo") for cls in _TYPE_NAMES}


def event_to_dict(e: Event) -> dict[str, Any]:
    d = {name: getattr(e, name) for name in _WIRE_FIELDS[type(e)]}
    for name in _OMIT_IF_NONE:
        if name in d and d[name] is None:
            del d[name]
    if d.get("recipient_domains") is not None:
        d["recipient_domains"] = list(d["recipient_domains"])
    d["event_time"] = to_rfc3339(e.event_time)
    d["type"] = _TYPE_NAMES[type(e)]
    return d


def encode_event(e: Event) -> bytes:
    return orjson.dumps(event_to_dict(e))


_LOCK_TIMES = ("issued_at", "expires_at")


def lock_command_to_dict(c: LockCommand) -> dict[str, Any]:
    """The unsigned wire object; `signed_lock_command` adds the signature publishers must send."""
    return _to_wire(c, "lock_command", _LOCK_TIMES)


def lock_command_from_dict(d: dict[str, Any]) -> LockCommand:
    if type(d.get("version")) is not int:  # the schema lets 5.0 pass as an integer
        raise ValueError(f"version {d.get('version')!r} is not an integer")
    body = {k: v for k, v in d.items() if k != signed.SIGNATURE_FIELD}
    return _from_wire(LockCommand, body, _LOCK_TIMES)


def decode_lock_command(raw: bytes) -> LockCommand:
    """Structure only, signature NOT checked: for reading records you produced yourself.
    Anything that acts on a command uses `decode_signed_lock_command`."""
    data = parse_record(raw, ("lock_command",))
    try:
        return lock_command_from_dict(data)
    except (ValueError, OverflowError) as exc:
        raise Rejected("invalid", str(exc)) from None


def signed_lock_command(c: LockCommand, signer: signed.Signer) -> dict[str, Any]:
    return signed.sign(lock_command_to_dict(c), signer)


def encode_lock_command(c: LockCommand, signer: signed.Signer) -> bytes:
    return orjson.dumps(signed_lock_command(c, signer))


def decode_signed_lock_command(raw: bytes, verifier: signed.Verifier, now: float,
                               skew: float) -> LockCommand:
    """A command to act on: well formed, in range against `now` (+ `skew` seconds), signed by a
    key the verifier knows. Raises only Rejected; its reason says which check failed."""
    if len(raw) > MAX_EVENT_BYTES:
        raise Rejected("oversized", f"{len(raw)} bytes, limit {MAX_EVENT_BYTES}")
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise Rejected("not_json", str(exc)) from None
    return verified_lock_command(data, verifier, now, skew)


def verified_lock_command(data: Any, verifier: signed.Verifier, now: float,
                          skew: float) -> LockCommand:
    """The checks of `decode_signed_lock_command` on an already parsed JSON value."""
    if not isinstance(data, dict):
        raise Rejected("not_an_object", f"top level is {type(data).__name__}, want an object")
    if data.get("type") != "lock_command":
        raise Rejected("unknown_type", f"type {data.get('type')!r} is not lock_command")
    try:
        _VALIDATORS["lock_command"](data)
    except fastjsonschema.JsonSchemaValueException as exc:
        raise Rejected("invalid", exc.message) from None
    try:
        if signed.SIGNATURE_FIELD not in data:
            raise signed.Refused("unsigned", "no signature field")
        signed.check_version(data["version"], now, skew)
        try:
            command = lock_command_from_dict(data)
        except (ValueError, OverflowError) as exc:  # dates that pass the format, not the calendar
            raise Rejected("invalid", str(exc)) from None
        signed.check_times(command.issued_at, command.expires_at, now, skew)
        signed.check_signature(data, verifier)
    except signed.Refused as exc:
        raise Rejected(exc.reason, exc.detail) from None
    return command


def lock_key(kind: str, subject: str) -> bytes:
    """Key of the compacted locks topic: one latest command per subject."""
    return f"{kind}:{subject}".encode()


def _to_wire(record: Any, kind: str, times: tuple[str, ...]) -> dict[str, Any]:
    """A record as its schema's JSON object: `type` added, epoch times as RFC 3339."""
    d = asdict(record)
    d["type"] = kind
    for name in times:
        if d[name] is not None:
            d[name] = to_rfc3339(d[name])
    return d


def _from_wire(cls: type[R], d: dict[str, Any], times: tuple[str, ...]) -> R:
    fields = {k: v for k, v in d.items() if k != "type"}
    for name in times:
        if fields.get(name) is not None:
            fields[name] = parse_rfc3339(fields[name])
    return cls(**fields)


def alert_to_dict(a: Alert) -> dict[str, Any]:
    return _to_wire(a, "alert", ("event_time",))


def alert_from_dict(d: dict[str, Any]) -> Alert:
    return _from_wire(Alert, d, ("event_time",))


def lock_ack_to_dict(a: LockAck) -> dict[str, Any]:
    return _to_wire(a, "lock_ack", ("applied_at",))


def lock_ack_from_dict(d: dict[str, Any]) -> LockAck:
    return _from_wire(LockAck, d, ("applied_at",))


def dumps(d: dict[str, Any]) -> bytes:
    return orjson.dumps(d)
