"""Hypothesis fuzzing of the lock-command and control-record decoders: hostile bytes and JSON
never raise anything but codec.Rejected; a signed command round-trips and verifies; any change
to any one field after signing makes it fail."""

from __future__ import annotations

import contextlib
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from relayguard.foundation import signing
from relayguard.stream import codec, control_codec, signed
from relayguard.stream.records import LockCommand

NOW = 1_796_000_000.0
SKEW = 300.0
SIGNER = signing.Signer(signing.generate())
RING = signing.Keyring([SIGNER.public])
RELAXED = settings(deadline=None, suppress_health_check=[HealthCheck.too_slow], max_examples=300)

JSON_SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-(2**63), 2**64 - 1),
                         st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=30))
JSON = st.recursive(JSON_SCALARS, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=10), inner, max_size=4)),
    max_leaves=20)
FIELDS = ("type", "command_id", "subject", "subject_kind", "action", "reason", "detector",
          "evidence", "issued_at", "expires_at", "issuer", "version", "severity", "dry_run",
          "signature")


def _decode(raw: bytes) -> LockCommand:
    return codec.decode_signed_lock_command(raw, RING, NOW, SKEW)


@RELAXED
@given(st.binary(max_size=400))
def test_arbitrary_bytes_raise_only_rejected(raw: bytes) -> None:
    with contextlib.suppress(codec.Rejected):
        _decode(raw)
    with contextlib.suppress(codec.Rejected):
        control_codec.decode_control(raw, RING, NOW, SKEW)


@RELAXED
@given(JSON)
def test_arbitrary_json_raises_only_rejected(value: Any) -> None:
    raw = orjson.dumps(value)
    with contextlib.suppress(codec.Rejected):
        _decode(raw)
    with contextlib.suppress(codec.Rejected):
        control_codec.decode_control(raw, RING, NOW, SKEW)


TIMES = st.one_of(st.sampled_from(["2026-11-29T10:17:00Z", "9999-12-31T23:59:59Z",
                                   "0001-01-01T00:00:00+23:59", "2026-02-30T00:00:00Z",
                                   "1969-12-31T23:59:59Z"]), JSON_SCALARS)


@RELAXED
@given(st.dictionaries(st.sampled_from(FIELDS), st.one_of(JSON, TIMES), max_size=15),
       st.booleans())
def test_lock_command_shaped_junk_raises_only_rejected(fields: dict[str, Any],
                                                       sign: bool) -> None:
    record = {"type": "lock_command", **fields}
    if sign:
        with contextlib.suppress(Exception):  # junk may not even serialise canonically
            record = signed.sign(record, SIGNER)
    with contextlib.suppress(codec.Rejected):
        _decode(orjson.dumps(record))


@st.composite
def commands(draw: st.DrawFn) -> LockCommand:
    issued = draw(st.floats(0, NOW + SKEW - 1))
    action: Any = draw(st.sampled_from(["lock", "unlock"]))
    ttl = draw(st.one_of(st.none(), st.floats(1, 86400 * 3650)))
    text = st.text(min_size=1, max_size=40)
    return LockCommand(
        command_id=draw(text), subject=draw(text),
        subject_kind=draw(st.sampled_from(["user", "ip"])), action=action,
        reason=draw(st.text(max_size=60)), detector=draw(st.text(max_size=20)),
        evidence=draw(st.dictionaries(st.text(max_size=8), JSON_SCALARS, max_size=4)),
        issued_at=round(issued, 3), expires_at=None if ttl is None else round(issued + ttl, 3),
        issuer=draw(st.text(max_size=20)),
        version=draw(st.integers(0, int((NOW + SKEW) * 1000))),
        severity=draw(st.sampled_from(["info", "low", "medium", "high", "critical"])),
        dry_run=draw(st.booleans()),
    )


@RELAXED
@given(commands())
def test_signed_round_trip_verifies(cmd: LockCommand) -> None:
    raw = codec.encode_lock_command(cmd, SIGNER)
    got = _decode(raw)
    assert codec.lock_command_to_dict(got) == codec.lock_command_to_dict(cmd)
    assert got.version == cmd.version and got.action == cmd.action


@RELAXED
@given(commands(), st.sampled_from(FIELDS[:-1]), st.one_of(JSON, TIMES))
def test_any_single_field_change_breaks_verification(cmd: LockCommand, name: str,
                                                     value: Any) -> None:
    signed_dict = codec.signed_lock_command(cmd, SIGNER)
    assume(orjson.dumps(signed_dict.get(name)) != orjson.dumps(value))
    forged = {**signed_dict, name: value}
    with pytest.raises(codec.Rejected) as err:
        _decode(orjson.dumps(forged))
    assert err.value.reason != "unknown_key"


@RELAXED
@given(commands(), st.sampled_from(FIELDS[1:-1]))
def test_removing_a_field_breaks_verification(cmd: LockCommand, name: str) -> None:
    signed_dict = codec.signed_lock_command(cmd, SIGNER)
    forged = {k: v for k, v in signed_dict.items() if k != name}
    with pytest.raises(codec.Rejected):
        _decode(orjson.dumps(forged))


@RELAXED
@given(st.sampled_from(["user", "ip"]), st.text(min_size=1, max_size=40),
       st.floats(NOW - SKEW, NOW + SKEW), st.sampled_from(["kind", "key", "now", "type"]),
       JSON_SCALARS)
def test_control_tick_round_trip_and_tamper(kind: str, key: str, now: float, name: str,
                                            value: Any) -> None:
    raw = control_codec.tick_value(kind, key, now, SIGNER)  # type: ignore[arg-type]
    assert control_codec.decode_control(raw, RING, NOW, SKEW) == control_codec.Tick(
        kind, key, now)  # type: ignore[arg-type]
    data = orjson.loads(raw)
    assume(orjson.dumps(data[name]) != orjson.dumps(value))
    with pytest.raises(codec.Rejected):
        control_codec.decode_control(orjson.dumps({**data, name: value}), RING, NOW, SKEW)
