"""The agent's logic with a dict for a table and a recorder for Kafka: bad input goes to the DLQ,
wrongly keyed input is re-keyed, good input reaches the core and its commands go out."""

from __future__ import annotations

import orjson

from relayguard.agents.metrics import Metrics
from relayguard.agents.pipeline import Origin, Pipeline
from relayguard.foundation.core_params import build_core_params
from relayguard.foundation.settings import Settings
from relayguard.stream import codec
from relayguard.stream.records import Alert, LockCommand, SendEvent


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
    good = SendEvent("e1", 1796000000.0, "r", "alice", "192.0.2.1", "a@x", 1, 10)
    await pipe.ingest(codec.encode_event(good), origin(b"alice", 1), table)
    assert "alice" in table
    assert metrics.value("dead_letters_total", reason="not_json") == 1
    assert metrics.value("events_total", outcome="processed") == 1


async def test_wrong_key_is_rerouted_not_processed() -> None:
    pipe, rec, _ = make()
    table: dict[str, bytes] = {}
    raw = orjson.dumps(codec.event_to_dict(
        SendEvent("e1", 1796000000.0, "r", "alice", "192.0.2.1", "a@x", 1, 10)))
    await pipe.ingest(raw, origin(b"192.0.2.1"), table)
    assert rec.rerouted == [("alice", raw)] and table == {}


async def test_burst_publishes_one_lock_and_alert() -> None:
    pipe, rec, _ = make()
    table: dict[str, bytes] = {}
    for i in range(15):
        e = SendEvent(f"e{i}", 1796000000.0 + i, "r", "bob", "192.0.2.1", "b@x", 1, 10)
        await pipe.ingest(codec.encode_event(e), origin(b"bob", i), table)
    assert [c.subject for c in rec.locks] == ["bob"]
    assert rec.alerts and rec.alerts[0].command_id == rec.locks[0].command_id
