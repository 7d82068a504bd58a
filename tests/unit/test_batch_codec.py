"""Batch records: Kafka's partitioner reproduced exactly, strict and bounded envelope checks,
items handed back as single-event bytes for the one event decoder."""

from __future__ import annotations

import random

import jsonschema
import orjson
import pytest
from aiokafka.partitioner import murmur2 as aiokafka_murmur2

from relayguard.stream import batch_codec, codec
from relayguard.stream.records import SendEvent

NOW = 1796000000.0


def _event(i: int, user: str = "alice") -> bytes:
    return codec.encode_event(SendEvent(f"e{i}", NOW + i, "r", user, "192.0.2.1", "a@x", 1, 10))


def test_murmur2_is_kafkas_default_partitioner() -> None:
    rnd = random.Random(3)
    keys = [rnd.randbytes(n) for n in range(64) for _ in range(20)]
    keys += [f"user{i}@example.com".encode() for i in range(500)]
    for key in keys:
        assert batch_codec.murmur2(key) & 0x7FFFFFFF == int(aiokafka_murmur2(key)) & 0x7FFFFFFF
    # Kafka's own test vector (Java's signed int -973932308 for "21")
    assert batch_codec.murmur2(b"21") == -973932308 & 0xFFFFFFFF


def test_round_trip_keeps_order_and_bytes_meaning() -> None:
    values = [_event(i) for i in range(5)]
    items = batch_codec.decode_batch(batch_codec.encode_batch(values))
    assert items is not None
    assert [codec.decode_event(i) for i in items] == [codec.decode_event(v) for v in values]


def test_single_records_and_garbage_are_not_batches() -> None:
    assert batch_codec.decode_batch(_event(1)) is None
    assert batch_codec.decode_batch(b"{broken") is None
    # a single event that merely mentions the type in a field is still a single event
    tricky = codec.encode_event(SendEvent("e", NOW, "r", "event_batch", "192.0.2.1", "a", 1, 1))
    assert batch_codec.looks_like_batch(tricky) and batch_codec.decode_batch(tricky) is None


@pytest.mark.parametrize(("record", "reason"), [
    ({"type": "event_batch", "events": []}, "invalid"),
    ({"type": "event_batch"}, "invalid"),
    ({"type": "event_batch", "events": {"a": 1}}, "invalid"),
    ({"type": "event_batch", "events": [{}], "extra": 1}, "invalid"),
    ({"type": "event_batch", "events": [{}] * (batch_codec.MAX_BATCH_EVENTS + 1)}, "oversized"),
])
def test_bad_envelopes_are_rejected_whole(record: dict[str, object], reason: str) -> None:
    with pytest.raises(codec.Rejected) as exc:
        batch_codec.decode_batch(orjson.dumps(record))
    assert exc.value.reason == reason


def test_oversized_record_is_rejected_before_parsing() -> None:
    raw = b'{"type":"event_batch","events":["' + b"x" * batch_codec.MAX_BATCH_BYTES + b'"]}'
    with pytest.raises(codec.Rejected) as exc:
        batch_codec.decode_batch(raw)
    assert exc.value.reason == "oversized"


def test_bad_items_come_back_for_the_event_decoder_to_judge() -> None:
    raw = orjson.dumps({"type": "event_batch", "events": [7, {"type": "nope"},
                                                           orjson.loads(_event(1))]})
    items = batch_codec.decode_batch(raw)
    assert items is not None and len(items) == 3
    reasons = []
    for item in items[:2]:
        with pytest.raises(codec.Rejected) as exc:
            codec.decode_event(item)
        reasons.append(exc.value.reason)
    assert reasons == ["not_an_object", "unknown_type"]
    assert codec.decode_event(items[2]).event_id == "e1"


def test_pack_respects_both_bounds_and_keeps_order() -> None:
    values = [_event(i) for i in range(25)]
    packed = list(batch_codec.pack(values, max_events=10))
    assert [n for n, _ in packed] == [10, 10, 5]
    small = len(batch_codec.encode_batch(values[:3]))
    by_bytes = list(batch_codec.pack(values, max_bytes=small))
    assert all(len(b) <= small for _, b in by_bytes) and sum(n for n, _ in by_bytes) == 25
    back = [i for _, b in packed for i in (batch_codec.decode_batch(b) or [])]
    assert [codec.decode_event(i).event_id for i in back] == [f"e{i}" for i in range(25)]


def test_group_by_partition_matches_the_partitioner() -> None:
    items = [(f"u{i}".encode(), _event(i, f"u{i}")) for i in range(40)]
    groups = batch_codec.group_by_partition(items, 4)
    assert sorted(i for g in groups.values() for i, _ in g) == list(range(40))
    for part, group in groups.items():
        assert [i for i, _ in group] == sorted(i for i, _ in group)
        for i, _ in group:
            assert batch_codec.partition_for(items[i][0], 4) == part


def test_schema_is_valid_and_its_examples_decode_item_by_item() -> None:
    schema = batch_codec.load_schema()
    assert schema["$schema"].endswith("2020-12/schema")
    jsonschema.Draft202012Validator.check_schema(schema)
    assert schema["properties"]["events"]["maxItems"] == batch_codec.MAX_BATCH_EVENTS
    validator = jsonschema.Draft202012Validator(schema)
    assert schema["examples"]
    for example in schema["examples"]:
        validator.validate(example)
        items = batch_codec.decode_batch(orjson.dumps(example))
        assert items is not None
        assert [codec.decode_event(i).event_id for i in items] == \
            [e["event_id"] for e in example["events"]]
