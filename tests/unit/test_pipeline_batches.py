"""Batch records through the agent's logic (a dict for a table, a recorder for Kafka): one bad
event dead-lettered alone, wrongly partitioned events re-keyed, each key's state written once
per batch, and a redelivered batch without effect, by event and by per-user state."""

from __future__ import annotations

import base64
import time

import orjson

from relayguard.agents.metrics import Metrics
from relayguard.agents.pipeline import Origin, Pipeline, unwrap_source
from relayguard.foundation.core_params import build_core_params
from relayguard.foundation.settings import Settings
from relayguard.stream import batch_codec, codec
from relayguard.stream.records import Event, LoginEvent, SendEvent
from tests.unit.test_pipeline import Recorder

NOW = time.time() - 60
PARTS = 4


class CountingTable(dict[str, bytes]):
    def __init__(self) -> None:
        super().__init__()
        self.writes: dict[str, int] = {}

    def __setitem__(self, key: str, value: bytes) -> None:
        self.writes[key] = self.writes.get(key, 0) + 1
        super().__setitem__(key, value)


def make() -> tuple[Pipeline, Recorder, Metrics]:
    rec, metrics = Recorder(), Metrics()
    return Pipeline(build_core_params(Settings()), None, rec, metrics, PARTS), rec, metrics


def users_of(partition: int, n: int, prefix: str = "u") -> list[str]:
    out: list[str] = []
    i = 0
    while len(out) < n:
        name = f"{prefix}{i}@example.com"
        if batch_codec.partition_for(name.encode(), PARTS) == partition:
            out.append(name)
        i += 1
    return out


def send(i: int, user: str, t: float | None = None) -> SendEvent:
    return SendEvent(f"{user}-{i}", NOW + i * 0.01 if t is None else t, "r", user,
                     "192.0.2.1", user, 1, 10)


def batch(events: list[Event]) -> bytes:
    return batch_codec.encode_batch([codec.encode_event(e) for e in events])


def at(partition: int, offset: int) -> Origin:
    return Origin("relayguard.events", partition, offset, None)


async def test_one_bad_event_is_dead_lettered_alone_with_its_reason() -> None:
    pipe, rec, metrics = make()
    table = CountingTable()
    (alice,) = users_of(1, 1)
    good = [codec.encode_event(send(i, alice)) for i in range(3)]
    future = codec.encode_event(send(9, alice, time.time() + 86400))
    raw = batch_codec.encode_batch([good[0], b'{"type":"nope"}', good[1], future, good[2]])
    await pipe.ingest(raw, at(1, 5), table)
    assert [d["reason"] for d in rec.dlq] == ["unknown_type", "time_out_of_range"]
    assert "event 1 of a batch record" in str(rec.dlq[0]["error"])
    assert orjson.loads(base64.b64decode(str(rec.dlq[0]["payload_b64"]))) == {"type": "nope"}
    assert rec.dlq[1]["source_offset"] == 5 and rec.dlq[1]["source_partition"] == 1
    state = pipe.decoded.load("user", alice, table[alice])
    assert state is not None and state.events_applied == 3 and state.applied == ((1, 5),)
    assert metrics.value("event_batches_total") == 1
    assert metrics.value("events_total", outcome="processed") == 3


async def test_each_key_written_once_per_batch_and_redelivery_has_no_effect() -> None:
    pipe, _, metrics = make()
    table = CountingTable()
    users = users_of(2, 5)
    events: list[Event] = [send(i, users[i % 5]) for i in range(50)]  # interleaved users
    raw = batch(events)
    await pipe.ingest(raw, at(2, 10), table)
    assert table.writes == {u: 1 for u in users}
    before = dict(table)
    await pipe.ingest(raw, at(2, 10), table)  # the same record again (a lost commit)
    assert dict(table) == before and table.writes == {u: 1 for u in users}
    assert metrics.value("events_total", outcome="processed") == 50
    assert metrics.value("redeliveries_total", kind="user") == 50
    for u in users:
        s = pipe.decoded.load("user", u, table[u])
        assert s is not None and s.events_applied == 10 and s.applied == ((2, 10),)
    # the next record, single or batch, applies again
    await pipe.ingest(codec.encode_event(send(99, users[0])),
                      Origin("relayguard.events", 2, 11, users[0].encode()), table)
    s = pipe.decoded.load("user", users[0], table[users[0]])
    assert s is not None and s.events_applied == 11 and s.applied == ((2, 11),)


async def test_batch_locks_once_in_order_and_matches_single_records() -> None:
    """The same events as one batch or as single records: same locks, same per-user state."""
    (bob,) = users_of(3, 1, "bob")
    events: list[Event] = [send(i, bob) for i in range(15)]
    pipe_b, rec_b, _ = make()
    batched: dict[str, bytes] = {}
    await pipe_b.ingest(batch(events), at(3, 0), batched)
    pipe_s, rec_s, _ = make()
    single: dict[str, bytes] = {}
    for i, e in enumerate(events):
        await pipe_s.ingest(codec.encode_event(e), Origin("relayguard.events", 3, i,
                                                          bob.encode()), single)
    assert [c.command_id for c in rec_b.locks] == [c.command_id for c in rec_s.locks]
    assert len(rec_b.locks) == 1 and rec_b.locks[0].subject == bob
    sb = pipe_b.decoded.load("user", bob, batched[bob])
    ss = pipe_s.decoded.load("user", bob, single[bob])
    assert sb is not None and ss is not None
    assert (sb.detectors, sb.lock, sb.recent_event_ids, sb.events_applied) == \
        (ss.detectors, ss.lock, ss.recent_event_ids, ss.events_applied)


async def test_events_of_another_partition_are_rerouted_not_applied() -> None:
    pipe, rec, _ = make()
    table: dict[str, bytes] = {}
    (mine,) = users_of(0, 1)
    (other,) = users_of(1, 1, "x")
    raw = batch([send(0, mine), send(1, other)])
    await pipe.ingest(raw, at(0, 0), table)
    assert [k for k, _ in rec.rerouted] == [other] and set(table) == {mine}
    assert codec.decode_event(rec.rerouted[0][1]).user == other


async def test_relay_resends_inside_a_batch_are_duplicates() -> None:
    pipe, _, metrics = make()
    table: dict[str, bytes] = {}
    (carol,) = users_of(0, 1, "carol")
    e = send(0, carol)
    await pipe.ingest(batch([e, e, send(1, carol)]), at(0, 0), table)
    assert metrics.value("events_total", outcome="duplicate") == 1
    s = pipe.decoded.load("user", carol, table[carol])
    assert s is not None and s.events_applied == 2


async def test_unknown_types_are_judged_by_the_same_decoder_as_single_records() -> None:
    """A type the codec does not know gets exactly the single record's verdict."""
    pipe, rec, _ = make()
    (dave,) = users_of(0, 1, "dave")
    delivery = orjson.dumps({"type": "teleport", "event_id": "d1", "event_time": "2026-12-01T00:"
                             "00:00Z", "relay_id": "r", "user": dave, "queue_id": "4X",
                             "status": "bounced"})
    await pipe.ingest(delivery, Origin("relayguard.events", 0, 0, dave.encode()), {})
    await pipe.ingest(batch_codec.encode_batch([delivery]), at(0, 1), {})
    assert len(rec.dlq) == 2 and rec.dlq[0]["reason"] == rec.dlq[1]["reason"]


async def test_failed_logins_go_to_by_ip_once_per_ip_and_dedupe_by_position() -> None:
    pipe, rec, metrics = make()
    users = users_of(1, 3, "f")
    logins: list[Event] = [LoginEvent(f"l{i}", NOW + i, "r", users[i % 3], "192.0.2.7", False,
                                      failure_reason="bad_credentials") for i in range(6)]
    logins.append(LoginEvent("ok", NOW + 9, "r", users[0], "192.0.2.8", True))
    await pipe.ingest(batch(logins), at(1, 40), {})
    ((key, wrapped),) = rec.by_ip_records
    source, _inner = unwrap_source(wrapped)
    assert key == "192.0.2.7" and source == (1, 40)
    ips: dict[str, bytes] = {}
    for _ in range(2):  # re-forwarded after a restart: one effect
        await pipe.ingest_by_ip(wrapped, ips)
    state = pipe.decoded.load("ip", "192.0.2.7", ips["192.0.2.7"])
    assert state is not None and state.events_applied == 6 and state.applied == ((1, 40),)
    assert metrics.value("redeliveries_total", kind="ip") == 6


async def test_without_a_partition_count_batches_are_refused_whole() -> None:
    rec, metrics = Recorder(), Metrics()
    pipe = Pipeline(build_core_params(Settings()), None, rec, metrics)
    table: dict[str, bytes] = {}
    await pipe.ingest(batch([send(0, "a")]), at(0, 0), table)
    assert table == {} and len(rec.dlq) == 1


async def test_trusted_cache_skips_table_reads_until_the_generation_changes() -> None:
    pipe, _, _ = make()
    pipe.trust_cache = True
    table = CountingTable()
    (erin,) = users_of(0, 1, "erin")
    pipe.new_generation(1)
    await pipe.ingest(batch([send(0, erin)]), at(0, 0), table)
    reads: list[str] = []

    class Reads(CountingTable):
        def get(self, key: str, default: object = None) -> object:  # type: ignore[override]
            reads.append(key)
            return super().get(key, default)

    watched = Reads()
    watched.update(table)
    await pipe.ingest(batch([send(1, erin)]), at(0, 1), watched)
    assert reads == []  # served from the cache
    # a rebalance replaced the value (recovery of another worker's state): read it again
    other = make()[0]
    fresh: dict[str, bytes] = {}
    await other.ingest(batch([send(i, erin) for i in range(5, 9)]), at(0, 7), fresh)
    watched[erin] = fresh[erin]
    pipe.new_generation(2)
    await pipe.ingest(batch([send(9, erin)]), at(0, 8), watched)
    assert reads == [erin]
    s = pipe.decoded.load("user", erin, watched[erin])
    assert s is not None and s.events_applied == 5 and s.applied == ((0, 8),)
