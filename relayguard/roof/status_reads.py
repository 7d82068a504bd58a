"""Bounded reads for `relayguard status`: the recent end of a topic, never the whole of it.

The alerts and lock-acks topics grow with traffic; a status query reads at most `per_partition`
records from the end of each partition, within a deadline, and keeps what matches.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from aiokafka import AIOKafkaConsumer

from relayguard.foundation.kafka_read import assign_from_beginning
from relayguard.stream import codec
from relayguard.stream.records import Alert, LockAck

T = TypeVar("T")


async def read_tail(bootstrap: str, topic: str, per_partition: int,
                    keep: Callable[[bytes], T | None], timeout: float = 10.0,
                    kafka_options: Mapping[str, Any] | None = None) -> tuple[list[T], int]:
    """Records `keep` accepts among the last `per_partition` of each partition of `topic`, and
    how many records were read. A topic that does not exist gives nothing."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                                request_timeout_ms=int(timeout * 1000),
                                **(kafka_options or {}))
    await consumer.start()
    try:
        ends = await assign_from_beginning(consumer, topic, attempts=1)
        if not ends:
            return [], 0
        starts = await consumer.beginning_offsets(list(ends))
        for tp, end in ends.items():
            consumer.seek(tp, max(starts[tp], end - per_partition))
        kept: list[T] = []
        read = 0
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if all([await consumer.position(tp) >= end for tp, end in ends.items()]):
                break
            batch = await consumer.getmany(timeout_ms=300)
            for tp, records in batch.items():
                for rec in records:
                    if rec.offset >= ends[tp] or rec.value is None:
                        continue
                    read += 1
                    item = keep(rec.value)
                    if item is not None:
                        kept.append(item)
        return kept, read
    finally:
        await consumer.stop()


def _matching(raw: bytes, kind: str, subject: str, record_type: str) -> dict[str, Any] | None:
    """The record if it is a valid `record_type` about this subject (schema-checked)."""
    if subject.encode() not in raw:  # cheap pre-filter: most records are about others
        return None
    try:
        d = codec.parse_record(raw, (record_type,))
    except codec.Rejected:
        return None  # hostile or foreign bytes: not shown
    if d.get("subject") != subject or d.get("subject_kind") != kind:
        return None
    return d


def alert_for(kind: str, subject: str) -> Callable[[bytes], Alert | None]:
    def keep(raw: bytes) -> Alert | None:
        d = _matching(raw, kind, subject, "alert")
        try:
            return None if d is None else codec.alert_from_dict(d)
        except (ValueError, TypeError):
            return None
    return keep


def ack_for(kind: str, subject: str) -> Callable[[bytes], LockAck | None]:
    def keep(raw: bytes) -> LockAck | None:
        d = _matching(raw, kind, subject, "lock_ack")
        try:
            return None if d is None else codec.lock_ack_from_dict(d)
        except (ValueError, TypeError):
            return None
    return keep
