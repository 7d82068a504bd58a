"""aiokafka helpers shared by the integration and e2e tests: topics, producing records and lock
commands, reading topics from the start (the events topic item by item, batch records
expanded), waiting for a condition."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.structs import ConsumerRecord

from relayguard.foundation.settings import Settings
from relayguard.foundation.topics import ensure_topics, standard_topics
from relayguard.stream import batch_codec
from relayguard.stream.codec import Rejected, encode_lock_command, lock_key
from relayguard.stream.records import LockCommand
from tests.fixtures.signing import session_signer

Records = list[ConsumerRecord[bytes, bytes]]


async def make_topics(settings: Settings) -> None:
    await ensure_topics(settings.bootstrap_servers, standard_topics(settings))


def lock_cmd(subject: str, version: int, action: str = "lock", kind: str = "user",
             dry_run: bool = False, expires_at: float | None = None) -> LockCommand:
    return LockCommand(
        command_id=f"cmd-{subject}-{version}", subject=subject, subject_kind=kind,  # type: ignore[arg-type]
        action=action, reason="test", detector="operator", evidence={},  # type: ignore[arg-type]
        issued_at=time.time(), expires_at=expires_at, issuer="test", version=version,
        dry_run=dry_run,
    )


async def produce(
    bootstrap: str, topic: str, records: Iterable[tuple[bytes | None, bytes]]
) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    await producer.start()
    try:
        for key, value in records:
            await producer.send(topic, value, key=key)
        await producer.flush()
    finally:
        await producer.stop()


async def produce_locks(bootstrap: str, topic: str, cmds: list[LockCommand]) -> None:
    """Publish commands signed with the session key, as a worker or operator would."""
    signer = session_signer()
    await produce(bootstrap, topic, [
        (lock_key(c.subject_kind, c.subject), encode_lock_command(c, signer)) for c in cmds
    ])


async def collect(bootstrap: str, topics: list[str], until: Callable[[Records], bool],
                  timeout: float, settle: float = 0.0) -> Records:
    """Read the topics from the beginning until `until(records)` holds or the timeout passes,
    then `settle` seconds more, so that records beyond what was awaited (duplicates) show up."""
    return await _collect(bootstrap, topics, until, timeout, settle)


async def _collect(bootstrap: str, topics: list[str], until: Callable[[Records], bool],
                   timeout: float, settle: float,
                   on_start: Callable[[AIOKafkaConsumer], Awaitable[None]] | None = None
                   ) -> Records:
    consumer = AIOKafkaConsumer(*topics, bootstrap_servers=bootstrap, group_id=None,
                                auto_offset_reset="earliest", enable_auto_commit=False)
    await consumer.start()
    seen: Records = []
    try:
        if on_start is not None:
            await on_start(consumer)
        deadline = time.monotonic() + timeout
        settling = False
        while time.monotonic() < deadline:
            for records in (await consumer.getmany(timeout_ms=300)).values():
                seen.extend(records)
            if not settling and until(seen):
                settling, deadline = True, time.monotonic() + settle
        return seen
    finally:
        await consumer.stop()


@dataclass(frozen=True, slots=True)
class EventRecord:
    """One event read from the events topic. `key` is the record's key for a single-event
    record; for an item of a batch record (which has no key) it is the key the relay
    partitioned by (user, else client IP), after checking that the batch really sits in that
    key's partition. `batched` says which of the two it came in."""

    key: bytes | None
    value: bytes
    partition: int
    offset: int
    batched: bool


def event_records(records: Records, partitions: int) -> list[EventRecord]:
    """Records of the events topic, batch records expanded into their items, in order.
    `partitions`: the topic's partition count, to check where each batch item was sent."""
    out: list[EventRecord] = []
    for r in records:
        try:
            items = batch_codec.decode_batch(r.value or b"")
        except Rejected:
            items = None  # a bad envelope (a test's own garbage): kept as it came
        if items is None:
            out.append(EventRecord(r.key, r.value or b"", r.partition, r.offset, False))
            continue
        assert r.key is None, f"a batch record with a key ({r.key!r}) at offset {r.offset}"
        for item in items:
            event = orjson.loads(item)
            name = event.get("user") or event.get("client_ip")
            key = name.encode() if isinstance(name, str) else None
            if key is not None:
                home = batch_codec.partition_for(key, partitions)
                assert home == r.partition, (f"{key!r} hashes to partition {home} but came in "
                                             f"a batch on partition {r.partition}")
            out.append(EventRecord(key, item, r.partition, r.offset, True))
    return out


async def collect_events(bootstrap: str, topic: str, until: Callable[[list[EventRecord]], bool],
                         timeout: float, settle: float = 0.0) -> list[EventRecord]:
    """`collect` for the events topic, item by item (batch records expanded)."""
    parts: list[int] = []

    async def count(consumer: AIOKafkaConsumer) -> None:
        await consumer.topics()  # fresh metadata (a hook may have created the topic just now)
        known = consumer.partitions_for_topic(topic)
        assert known, f"no partitions known for {topic}"
        parts.append(len(known))

    def expanded(rs: Records) -> list[EventRecord]:
        return event_records(rs, parts[0])

    records = await _collect(bootstrap, [topic], lambda rs: until(expanded(rs)), timeout,
                             settle, on_start=count)
    return expanded(records)


async def read_events(bootstrap: str, topic: str, want: int, timeout: float = 30.0,
                      settle: float = 2.0) -> list[EventRecord]:
    """Every event on the events topic from the start (batch records expanded): waits for
    `want` events, then `settle` s more."""
    return await collect_events(bootstrap, topic, lambda es: len(es) >= want, timeout, settle)


async def read_all(bootstrap: str, topic: str, want: int, timeout: float = 30.0,
                   settle: float = 2.0) -> Records:
    """Every record of `topic` from the start: waits for `want`, then `settle` s more."""
    return await collect(bootstrap, [topic], lambda rs: len(rs) >= want, timeout, settle)


async def until(cond: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout}s: {what}")
        await asyncio.sleep(0.05)
