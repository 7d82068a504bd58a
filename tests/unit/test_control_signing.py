"""The control agent's logic with a dict for a table: signed ticks and syncs act, forged ones are
refused and counted by reason, and never touch the subject's state."""

from __future__ import annotations

import orjson

from relayguard.agents.control import handle_control, sync_record, tick_record
from relayguard.agents.metrics import Metrics
from relayguard.agents.pipeline import Pipeline
from relayguard.foundation import signing
from relayguard.stream import codec
from relayguard.stream.records import LockCommand, SendEvent
from tests.unit.test_pipeline import Recorder, make, origin

T0 = 1796000000.0
SKEW = 300.0
SIGNER = signing.Signer(signing.generate())
RING = signing.Keyring([SIGNER.public])


async def _throttled() -> tuple[Pipeline, Recorder, Metrics, dict[str, bytes]]:
    pipe, rec, metrics = make()
    table: dict[str, bytes] = {}
    for i in range(15):  # volume: throttled for an hour
        e = SendEvent(f"e{i}", T0 + i, "r", "bob", "192.0.2.1", "b@x", 1, 10)
        await pipe.ingest(codec.encode_event(e), origin(b"bob", i), table)
    assert [c.action for c in rec.locks] == ["lock"]
    return pipe, rec, metrics, table


async def test_forged_ticks_are_refused_and_a_signed_one_expires_the_throttle() -> None:
    pipe, rec, metrics, table = await _throttled()
    later = T0 + 7200  # the throttle ran out an hour ago, as far as this clock says
    attacker = signing.Signer(signing.generate())
    forged = [
        orjson.dumps({"type": "tick", "kind": "user", "key": "bob", "now": later}),
        tick_record("user", "bob", later, attacker)[1],
        tick_record("user", "bob", later, SIGNER)[1],  # signed, but `now` is not this clock's
    ]
    for raw in forged:
        await handle_control(pipe, raw, {"user": table}, RING, T0 + 20, SKEW)
    assert [c.action for c in rec.locks] == ["lock"]
    for reason in ("unsigned", "unknown_key", "tick_out_of_range"):
        assert metrics.value("signed_records_refused_total", source="control",
                             reason=reason) == 1
    await handle_control(pipe, tick_record("user", "bob", later, SIGNER)[1],
                         {"user": table}, RING, later, SKEW)
    assert [c.action for c in rec.locks] == ["lock", "unlock"]


async def test_only_a_verified_sync_changes_the_state() -> None:
    pipe, rec, metrics, table = await _throttled()
    lock = rec.locks[0]
    unlock = LockCommand("u1", "bob", "user", "unlock", "reset", "operator", {}, T0 + 30, None,
                         "cli:ops", lock.version + 1)
    bare = codec.lock_command_to_dict(unlock)
    before = dict(table)
    for raw in (orjson.dumps({"type": "sync", "command": bare}),  # unsigned outside
                sync_record(bare, SIGNER)[1]):  # signed outside, unsigned inside
        await handle_control(pipe, raw, {"user": table}, RING, T0 + 40, SKEW)
    assert table == before
    assert metrics.value("signed_records_refused_total", source="control",
                         reason="unsigned") == 2
    good = sync_record(codec.signed_lock_command(unlock, SIGNER), SIGNER)[1]
    await handle_control(pipe, good, {"user": table}, RING, T0 + 40, SKEW)
    assert table != before
