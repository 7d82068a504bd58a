"""The agent's logic with a dict for a table and a recorder for Kafka: bad input goes to the DLQ,
wrongly keyed input is re-keyed, good input reaches the core and its commands go out."""

from __future__ import annotations

import time

import orjson

from relayguard.agents.metrics import Metrics
from relayguard.agents.pipeline import Origin, Pipeline, unwrap_source, wrap_source
from relayguard.foundation.core_params import build_core_params
from relayguard.foundation.settings import Settings
from relayguard.stream import codec
from relayguard.stream.records import Alert, LockCommand, SendEvent

NOW = time.time() - 60  # the pipeline bounds event times against the clock: stay near it


class Recorder:
    def __init__(self) -> None:
        self.dlq: list[dict[str, object]] = []
        self.locks: list[LockCommand] = []
        self.alerts: list[Alert] = []
        self.rerouted: list[tuple[str, bytes]] = []
        self.by_ip_records: list[tuple[str, bytes]] = []

    async def dead_letter(self, record: dict[str, object]) -> None:
        self.dlq.append(record)

    async def lock_command(self, command: LockCommand) -> None:
        self.locks.append(command)

    async def alert(self, alert: Alert) -> None:
        self.alerts.append(alert)

    async def reroute(self, key: str, raw: bytes) -> None:
        self.rerouted.append((key, raw))

    async def by_ip(self, key: str, raw: bytes) -> None:
        self.by_ip_records.append((key, raw))


def make() -> tuple[Pipeline, Recorder, Metrics]:
    rec, metrics = Recorder(), Metrics()
    return Pipeline(build_core_params(Settings()), None, rec, metrics), rec, metrics


def origin(key: bytes | None, offset: int = 0) -> Origin:
    return Origin("relayguard.events", 0, offset, key)


async def test_bad_record_goes_to_dlq_and_next_is_processed() -> None:
    pipe, rec, metrics = make()
    table: dict[str, bytes] = {}
    await pipe.ingest(b"{broken", origin(b"x"), table)
    assert rec.dlq[0]["reason"] == "not_json" and rec.dlq[0]["payload_b64"] == "e2Jyb2tlbg=="
    good = SendEvent("e1", NOW, "r", "alice", "192.0.2.1", "a@x", 1, 10)
    await pipe.ingest(codec.encode_event(good), origin(b"alice", 1), table)
    assert "alice" in table
    assert metrics.value("dead_letters_total", reason="not_json") == 1
    assert metrics.value("events_total", outcome="processed") == 1


async def test_wrong_key_is_rerouted_not_processed() -> None:
    pipe, rec, _ = make()
    table: dict[str, bytes] = {}
    raw = orjson.dumps(codec.event_to_dict(
        SendEvent("e1", NOW, "r", "alice", "192.0.2.1", "a@x", 1, 10)))
    await pipe.ingest(raw, origin(b"192.0.2.1"), table)
    assert rec.rerouted == [("alice", raw)] and table == {}


async def test_burst_publishes_one_lock_and_alert() -> None:
    pipe, rec, _ = make()
    table: dict[str, bytes] = {}
    for i in range(15):
        e = SendEvent(f"e{i}", NOW + i, "r", "bob", "192.0.2.1", "b@x", 1, 10)
        await pipe.ingest(codec.encode_event(e), origin(b"bob", i), table)
    assert [c.subject for c in rec.locks] == ["bob"]
    assert rec.alerts and rec.alerts[0].command_id == rec.locks[0].command_id


async def test_redelivered_offsets_have_no_effect_even_beyond_the_id_ring() -> None:
    """1,000 sends, then all of them again at the same offsets (a lost commit): counted once,
    although the event-id ring only remembers the last 256."""
    pipe, _, metrics = make()
    table: dict[str, bytes] = {}
    raws = [codec.encode_event(SendEvent(f"id{i}", NOW + i * 0.01, "r", "carol", "192.0.2.1",
                                         "c@x", 1, 10)) for i in range(1000)]
    for _ in range(2):
        for i, raw in enumerate(raws):
            await pipe.ingest(raw, origin(b"carol", i), table)
    assert metrics.value("events_total", outcome="processed") == 1000
    assert metrics.value("redeliveries_total", kind="user") == 1000
    state = pipe.decoded.load("user", "carol", table["carol"])
    assert state is not None and state.events_applied == 1000
    assert state.applied == ((0, 999),)


async def test_by_ip_records_carry_their_source_and_dedupe_by_it() -> None:
    pipe, rec, metrics = make()
    users: dict[str, bytes] = {}
    ips: dict[str, bytes] = {}
    from relayguard.stream.records import LoginEvent
    e = LoginEvent("l1", NOW, "r", "dave", "192.0.2.7", False, failure_reason="bad_credentials")
    await pipe.ingest(codec.encode_event(e), Origin("relayguard.events", 3, 41, b"dave"), users)
    ((key, wrapped),) = rec.by_ip_records
    assert key == "192.0.2.7" and unwrap_source(wrapped) == ((3, 41), codec.encode_event(e))
    for _ in range(3):  # re-forwarded after a restart: one effect
        await pipe.ingest_by_ip(wrapped, ips)
    assert metrics.value("redeliveries_total", kind="ip") == 2
    state = pipe.decoded.load("ip", "192.0.2.7", ips["192.0.2.7"])
    assert state is not None and state.events_applied == 1 and state.applied == ((3, 41),)


def test_source_wrapper_round_trips_and_passes_plain_records() -> None:
    assert unwrap_source(wrap_source((7, 2**40), b"{}")) == ((7, 2**40), b"{}")
    assert unwrap_source(b'{"type":"login"}') == (None, b'{"type":"login"}')


async def test_far_future_and_stale_events_are_dead_lettered_not_applied() -> None:
    pipe, rec, metrics = make()
    table: dict[str, bytes] = {}
    now = time.time()
    for i, t in enumerate((now + 3600, now + 86400, now - 8 * 86400)):
        e = SendEvent(f"t{i}", t, "r", "erin", "192.0.2.1", "e@x", 1, 10)
        await pipe.ingest(codec.encode_event(e), origin(b"erin", i), table)
    assert [d["reason"] for d in rec.dlq] == ["time_out_of_range"] * 3
    assert metrics.value("time_rejected_total", direction="future") == 2
    assert metrics.value("time_rejected_total", direction="past") == 1
    assert table == {}  # no watermark moved: nothing was stored
