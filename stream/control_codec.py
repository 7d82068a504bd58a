"""Control records (schemas/control-record.schema.json): build them signed, and decode them only
when signed by a known key and in range. Pure: the caller passes its clock reading in.

A forged tick used to make the worker expire throttles early and publish the unlock itself; a
forged sync could unlock any user in the worker's state. Both are refused here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import fastjsonschema
import orjson

from relayguard import schemas
from relayguard.stream import signed
from relayguard.stream.codec import MAX_EVENT_BYTES, Rejected, verified_lock_command
from relayguard.stream.records import LockCommand, SubjectKind

_VALIDATE: Callable[[Any], Any] = fastjsonschema.compile(schemas.load("control-record"))
MAX_CONTROL_BYTES = MAX_EVENT_BYTES + 4096  # a sync wraps a whole lock command


@dataclass(frozen=True, slots=True)
class Sync:
    command: LockCommand


@dataclass(frozen=True, slots=True)
class Tick:
    kind: SubjectKind
    key: str
    now: float


def sync_value(signed_command: dict[str, Any], signer: signed.Signer) -> bytes:
    """A sync record carrying `signed_command` as read from the locks topic (its own signature
    intact, so the owner of the subject verifies the original issuer, not just the forwarder)."""
    return orjson.dumps(signed.sign({"type": "sync", "command": signed_command}, signer))


def tick_value(kind: SubjectKind, key: str, now: float, signer: signed.Signer) -> bytes:
    return orjson.dumps(signed.sign({"type": "tick", "kind": kind, "key": key, "now": now},
                                    signer))


def decode_control(raw: bytes, verifier: signed.Verifier, now: float,
                   skew: float) -> Sync | Tick:
    """Raises only Rejected (reasons as for lock commands, plus 'tick_out_of_range')."""
    if len(raw) > MAX_CONTROL_BYTES:
        raise Rejected("oversized", f"{len(raw)} bytes, limit {MAX_CONTROL_BYTES}")
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise Rejected("not_json", str(exc)) from None
    if not isinstance(data, dict):
        raise Rejected("not_an_object", f"top level is {type(data).__name__}, want an object")
    if data.get("type") not in ("sync", "tick"):
        raise Rejected("unknown_type", f"type {data.get('type')!r} is not sync or tick")
    if signed.SIGNATURE_FIELD not in data:
        raise Rejected("unsigned", "no signature field")
    try:
        _VALIDATE(data)
    except fastjsonschema.JsonSchemaValueException as exc:
        raise Rejected("invalid", exc.message) from None
    try:
        signed.check_signature(data, verifier)
        if data["type"] == "tick" and not abs(float(data["now"]) - now) <= skew:
            raise signed.Refused("tick_out_of_range", f"tick now={data['now']!r} is more than "
                                 f"{skew:g}s from this worker's clock")
    except signed.Refused as exc:
        raise Rejected(exc.reason, exc.detail) from None
    if data["type"] == "sync":
        return Sync(verified_lock_command(data["command"], verifier, now, skew))
    return Tick(data["kind"], data["key"], float(data["now"]))
