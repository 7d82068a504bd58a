"""Batch records: many events of one events-topic partition in one Kafka record.

The worker's cost per Kafka record (Faust's stream, acks, offsets: 0.3-0.45 ms, issue 12) is
paid once per batch instead of once per event. A batch is `{"type": "event_batch", "events":
[...]}` (schemas/event-batch.schema.json); each item is an event object exactly as a
single-event record carries it, and is decoded by the very same `codec.decode_event`, so every
event type the codec knows (and every field it checks) passes through unchanged.

A batch goes to the partition all its events' keys hash to with Kafka's default partitioner
(murmur2 of the key, as the Java client and aiokafka compute it), so per-user order and the
co-partitioning of per-user state hold exactly as for single-event records. `murmur2` is a
pure copy here: this floor may not import aiokafka (tests compare the two).

Decoding is strict and bounded: the record's bytes, the envelope's shape and the number of
items are checked first (a bad envelope rejects the record as a whole: there is nothing else to
trust in it); then each item is turned back into bytes and decoded alone, so one bad item is
dead-lettered with its own reason and the rest are processed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import fastjsonschema
import orjson

from relayguard import schemas
from relayguard.stream.codec import Rejected

TYPE = "event_batch"
MAX_BATCH_EVENTS = 1000  # also the schema's maxItems
# Kafka's default max.message.bytes is 1 MiB (1,048,588) including the record overhead.
MAX_BATCH_BYTES = 1_000_000
_MARK = b'"event_batch"'


def load_schema() -> dict[str, Any]:
    """schemas/event-batch.schema.json."""
    return schemas.load("event-batch")


_validate: Callable[[Any], Any] = fastjsonschema.compile(load_schema())


def looks_like_batch(raw: bytes) -> bool:
    """Cheap pre-check (single-event records never carry this string unless a field does; a
    false positive is decoded as a batch, found not to be one, and handled as a single event)."""
    return _MARK in raw


def decode_batch(raw: bytes) -> list[bytes] | None:
    """The items of a batch record as single-event bytes, in order; None if `raw` is not a
    batch (a single-event record, or garbage for `codec.decode_event` to reject). Raises
    `Rejected` for a batch whose envelope is bad: oversized, too many items, wrong shape."""
    if not looks_like_batch(raw):
        return None
    if len(raw) > MAX_BATCH_BYTES:
        raise Rejected("oversized", f"batch record of {len(raw)} bytes, limit {MAX_BATCH_BYTES}")
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None  # not JSON at all: the single-event decoder says why
    if not isinstance(data, dict) or data.get("type") != TYPE:
        return None
    events = data.get("events")
    if isinstance(events, list) and len(events) > MAX_BATCH_EVENTS:
        # before the validator walks it: say the bound plainly
        raise Rejected("oversized", f"batch of {len(events)} events, limit {MAX_BATCH_EVENTS}")
    try:
        _validate(data)
    except fastjsonschema.JsonSchemaValueException as exc:
        raise Rejected("invalid", f"event batch: {exc.message}") from None
    # Back to bytes, so each item meets exactly the checks (and size bound) of a single record.
    assert isinstance(events, list)  # the validator saw to it
    return [orjson.dumps(item) for item in events]


def items_of(raw: bytes) -> list[bytes]:
    """What a reader of the events topic iterates over: the items of a batch record, or the
    record itself when it is a single event (or garbage, for `codec.decode_event` to reject).
    Raises `Rejected` for a batch whose envelope is bad, like `decode_batch`."""
    return decode_batch(raw) or [raw]


def encode_batch(values: Sequence[bytes]) -> bytes:
    """A batch record from single-event records' bytes (already valid JSON objects: the
    relay's own encoder wrote them), without re-encoding them."""
    if not 1 <= len(values) <= MAX_BATCH_EVENTS:
        raise ValueError(f"a batch holds 1..{MAX_BATCH_EVENTS} events, not {len(values)}")
    return b'{"type":"event_batch","events":[' + b",".join(values) + b"]}"


_FRAME = len(encode_batch([b"{}"])) - 2  # envelope bytes around the items


def pack(values: Iterable[bytes], max_events: int = MAX_BATCH_EVENTS,
         max_bytes: int = MAX_BATCH_BYTES) -> Iterator[tuple[int, bytes]]:
    """(number of events, batch record) for consecutive runs of `values`, each within the
    bounds. An event too big for any batch (cannot happen for valid events: 64 KiB each) still
    gets a batch of its own, which the worker dead-letters as oversized."""
    run: list[bytes] = []
    size = _FRAME
    for v in values:
        if run and (len(run) >= max_events or size + len(v) + 1 > max_bytes):
            yield len(run), encode_batch(run)
            run, size = [], _FRAME
        run.append(v)
        size += len(v) + 1
    if run:
        yield len(run), encode_batch(run)


# --- Kafka's default partitioner -------------------------------------------------------------

_M = 0x5BD1E995
_MASK = 0xFFFFFFFF


def murmur2(data: bytes) -> int:
    """Kafka's murmur2 (org.apache.kafka.common.utils.Utils.murmur2), as an unsigned 32-bit
    value; seed 0x9747b28c."""
    length = len(data)
    h = (0x9747B28C ^ length) & _MASK
    end = length & ~3
    for i in range(0, end, 4):
        k = data[i] | (data[i + 1] << 8) | (data[i + 2] << 16) | (data[i + 3] << 24)
        k = (k * _M) & _MASK
        k ^= k >> 24
        k = (k * _M) & _MASK
        h = ((h * _M) & _MASK) ^ k
    extra = length & 3
    if extra == 3:
        h ^= data[end + 2] << 16
    if extra >= 2:
        h ^= data[end + 1] << 8
    if extra >= 1:
        h ^= data[end]
        h = (h * _M) & _MASK
    h ^= h >> 13
    h = (h * _M) & _MASK
    h ^= h >> 15
    return h


def partition_for(key: bytes, partitions: int) -> int:
    """The partition Kafka's default partitioner picks for a record with this key."""
    return (murmur2(key) & 0x7FFFFFFF) % partitions


def group_by_partition(items: Iterable[tuple[bytes, bytes]], partitions: int
                       ) -> dict[int, list[tuple[int, bytes]]]:
    """(key, value) items -> partition -> [(position in `items`, value)], order kept."""
    out: dict[int, list[tuple[int, bytes]]] = {}
    for i, (key, value) in enumerate(items):
        out.setdefault(partition_for(key, partitions), []).append((i, value))
    return out
