"""Notice offsets the consumer skipped in a partition and process them anyway.

Faust 0.15.3 can step over an offset after a restart or rebalance (see agents/faust_offsets.py
for what it does and the two fixes applied there). This guard does not rely on those fixes: per
partition it knows the next offset the agent should see (at the start of a consumer generation:
the group's committed offset, where Faust seeks to); when a record arrives beyond it, the missing
offsets are re-read with a side consumer and handed to the same handler first, so per-key order
holds. Every gap is logged and counted (found / healed / lost) with topic and partition labels.
Re-processing is safe: per-key state ignores positions it has already applied (engine.step).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

from relayguard.agents.metrics import Metrics

log = logging.getLogger("relayguard.worker")


@dataclass(frozen=True)
class Record:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes


class RangeReader(Protocol):
    async def start_offset(self, topic: str, partition: int) -> int | None:
        """Where the group resumes this partition: its committed offset, else the log start."""

    async def read(self, topic: str, partition: int, start: int, end: int) -> list[Record]:
        """The records at offsets start <= o < end that still exist."""

    async def end_offset(self, topic: str, partition: int) -> int:
        """The partition's high watermark (offset of the next record to be written)."""


Handler = Callable[[Record], Awaitable[None]]
Healed = Callable[[str, int, list[int]], None]  # tells the consumer these offsets are done
Refetch = Callable[[str, int, int], Awaitable[None]]  # seek the consumer back to an offset


class OffsetGuard:
    def __init__(self, reader: RangeReader, metrics: Metrics,
                 generation: Callable[[], int], on_healed: Healed | None = None,
                 refetch: Refetch | None = None) -> None:
        self.reader = reader
        self.refetch = refetch
        # Tail gaps handed back to the consumer by `sweep`: (topic, partition) -> end offset.
        self._refetching: dict[tuple[str, int], int] = {}
        self.metrics = metrics
        self.generation = generation
        self.on_healed = on_healed
        self._gen: int | None = None
        self._next: dict[tuple[str, int], int] = {}
        # Before the last rebalance: how far this worker had handled each partition. After a
        # rebalance the consumer re-reads from the committed offset, which may be behind that
        # (uncommitted work: redeliveries, not gaps); a gap starts after what was handled here.
        self._before: dict[tuple[str, int], int] = {}
        # Held while one record (or one healed range) is handled, so the sweep and the agents
        # never process the same partition at once.
        self.lock = asyncio.Lock()
        self._last_activity = time.monotonic()

    def _check_generation(self) -> None:
        gen = self.generation()
        if gen != self._gen:  # a rebalance: the consumer seeked to the committed offsets
            self._before = {**self._before, **self._next}
            self._gen, self._next = gen, {}
            self._last_activity = time.monotonic()

    async def _expected(self, topic: str, partition: int) -> int | None:
        """Where the record stream of this generation should go on from."""
        tp = (topic, partition)
        committed = await self.reader.start_offset(topic, partition)
        before = self._before.get(tp)
        if committed is None:
            return before
        return committed if before is None else max(committed, before)

    async def before(self, topic: str, partition: int, offset: int, handle: Handler) -> None:
        """Call before handling the record at `offset`: heals any gap in front of it."""
        self._check_generation()
        self._last_activity = time.monotonic()
        tp = (topic, partition)
        expected = self._next.get(tp)
        if expected is None:
            try:
                expected = await self._expected(topic, partition)
            except Exception as exc:  # Kafka trouble: check from the next record on
                log.warning("cannot read the committed offset of %s[%d] (%s); gap check "
                            "starts after offset %d", topic, partition, exc, offset)
                expected = offset
            if expected is not None:
                self._next[tp] = expected  # redeliveries below it are no gap
        if expected is not None and offset > expected:
            await self._heal(topic, partition, expected, offset, handle)

    async def sweep(self, assigned: list[tuple[str, int]], handlers: dict[str, Handler],
                    idle_seconds: float) -> None:
        """The tail: records the consumer skipped with nothing after them yet. When no record
        has arrived for `idle_seconds` (the consumer fetches within milliseconds when it has
        work), every assigned partition whose high watermark is beyond what was handled is
        re-fetched from where handling stopped: with `refetch`, by seeking the consumer back
        (the records then come through the stream, as table writes need: Faust refuses them
        outside stream iteration); else read and handled here. Call with flow active."""
        if time.monotonic() - self._last_activity < idle_seconds:
            return
        async with self.lock:
            self._check_generation()
            for topic, partition in assigned:
                handle = handlers.get(topic)
                if handle is None:
                    continue
                expected = self._next.get((topic, partition))
                if expected is None:
                    expected = await self._expected(topic, partition)
                    if expected is None:
                        continue
                    self._next[(topic, partition)] = expected
                end = await self.reader.end_offset(topic, partition)
                if end <= expected:
                    continue
                if self.refetch is None:
                    await self._heal(topic, partition, expected, end, handle)
                    continue
                labels = {"topic": topic, "partition": str(partition)}
                self.metrics.inc("offset_gaps_found_total", end - expected, **labels)
                log.error("offset gap in %s[%d]: %d..%d (%d records) never reached this "
                          "worker; seeking back to %d", topic, partition, expected, end - 1,
                          end - expected, expected)
                self._refetching[(topic, partition)] = end
                await self.refetch(topic, partition, expected)
            self._last_activity = time.monotonic()

    def after(self, topic: str, partition: int, offset: int) -> None:
        tp = (topic, partition)
        self._next[tp] = max(self._next.get(tp, 0), offset + 1)
        end = self._refetching.get(tp)
        if end is not None:
            if offset < end:
                self.metrics.inc("offset_gaps_healed_total", topic=topic,
                                 partition=str(partition))
            if offset >= end - 1:
                del self._refetching[tp]

    async def _heal(self, topic: str, partition: int, start: int, end: int,
                    handle: Handler) -> None:
        labels = {"topic": topic, "partition": str(partition)}
        missing = end - start
        self.metrics.inc("offset_gaps_found_total", missing, **labels)
        log.error("offset gap in %s[%d]: %d..%d (%d records) never reached this worker; "
                  "re-reading them", topic, partition, start, end - 1, missing)
        try:
            records = await self.reader.read(topic, partition, start, end)
        except Exception as exc:
            log.error("re-reading %s[%d] %d..%d failed: %s", topic, partition, start, end - 1,
                      exc)
            records = []
        done: list[int] = []
        for rec in records:
            await handle(rec)
            done.append(rec.offset)
            self.after(topic, partition, rec.offset)
        self.metrics.inc("offset_gaps_healed_total", len(done), **labels)
        if len(done) < missing:
            self.metrics.inc("offset_gaps_lost_total", missing - len(done), **labels)
            log.error("%d records of %s[%d] %d..%d could not be re-read (deleted by retention?)",
                      missing - len(done), topic, partition, start, end - 1)
        if done and self.on_healed is not None:
            self.on_healed(topic, partition, done)
