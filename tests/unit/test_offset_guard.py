"""OffsetGuard with an in-memory partition: skipped offsets are found, re-read in order before
the record that revealed them, counted with topic/partition labels, and reported as done."""

from __future__ import annotations

from relayguard.agents.metrics import Metrics
from relayguard.agents.offset_guard import OffsetGuard, Record


class FakeLog:
    def __init__(self, n: int, committed: int | None,
                 deleted: frozenset[int] = frozenset()) -> None:
        self.records = {o: Record("ev", 0, o, b"k", f"v{o}".encode()) for o in range(n)
                        if o not in deleted}
        self.committed = committed
        self.end = n

    async def start_offset(self, topic: str, partition: int) -> int | None:
        return self.committed if self.committed is not None else 0

    async def read(self, topic: str, partition: int, start: int, end: int) -> list[Record]:
        return [self.records[o] for o in range(start, end) if o in self.records]

    async def end_offset(self, topic: str, partition: int) -> int:
        return self.end


class Harness:
    def __init__(self, log: FakeLog) -> None:
        self.handled: list[int] = []
        self.healed: list[int] = []
        self.generation = 1
        self.metrics = Metrics()
        self.guard = OffsetGuard(log, self.metrics, lambda: self.generation,
                                 lambda t, p, offs: self.healed.extend(offs))

    async def handle(self, rec: Record) -> None:
        self.handled.append(rec.offset)

    async def deliver(self, *offsets: int) -> None:
        for o in offsets:
            await self.guard.before("ev", 0, o, self.handle)
            await self.handle(Record("ev", 0, o, b"k", b""))
            self.guard.after("ev", 0, o)

    def count(self, name: str) -> int:
        return self.metrics.value(name, topic="ev", partition="0")


async def test_first_record_after_restart_beyond_committed_offset_is_healed() -> None:
    h = Harness(FakeLog(10, committed=4))
    await h.deliver(7, 8, 9)  # Faust's consumer stepped over 4..6
    assert h.handled == [4, 5, 6, 7, 8, 9] and h.healed == [4, 5, 6]
    assert h.count("offset_gaps_found_total") == 3 and h.count("offset_gaps_healed_total") == 3


async def test_gap_inside_a_generation_and_redeliveries() -> None:
    h = Harness(FakeLog(10, committed=0))
    await h.deliver(0, 1, 4, 2, 5)  # 2, 3 skipped; 2 arrives late (a redelivery: no new gap)
    assert h.handled == [0, 1, 2, 3, 4, 2, 5]
    assert h.count("offset_gaps_found_total") == 2


async def test_a_new_generation_starts_from_the_committed_offset_again() -> None:
    log = FakeLog(10, committed=0)
    h = Harness(log)
    await h.deliver(0, 1, 2)
    h.generation, log.committed = 2, 2
    await h.deliver(2, 3)
    assert h.count("offset_gaps_found_total") == 0


async def test_deleted_records_are_counted_as_lost_never_silent() -> None:
    h = Harness(FakeLog(10, committed=0, deleted=frozenset({1, 2})))
    await h.deliver(0, 4)
    assert h.handled == [0, 3, 4]
    assert h.count("offset_gaps_found_total") == 3 and h.count("offset_gaps_lost_total") == 2


async def test_sweep_heals_a_skipped_tail_only_when_idle() -> None:
    h = Harness(FakeLog(6, committed=0))
    await h.deliver(0, 1, 2)
    await h.guard.sweep([("ev", 0)], {"ev": h.handle}, idle_seconds=60)
    assert h.handled == [0, 1, 2]  # busy a moment ago: nothing done
    await h.guard.sweep([("ev", 0)], {"ev": h.handle}, idle_seconds=0)
    assert h.handled == [0, 1, 2, 3, 4, 5] and h.healed == [3, 4, 5]


async def test_uncommitted_work_redelivered_after_a_rebalance_is_no_gap() -> None:
    log = FakeLog(20, committed=0)
    h = Harness(log)
    await h.deliver(*range(10))  # handled 0..9, committed nothing yet
    h.generation = 2  # rebalance; the consumer restarts at 0, or (a skip) goes on at 12
    await h.deliver(0, 1, 12)
    assert h.count("offset_gaps_found_total") == 2  # 10 and 11 only
    assert h.handled[-3:] == [10, 11, 12]


async def test_sweep_with_refetch_seeks_back_and_counts_what_comes_through() -> None:
    log = FakeLog(6, committed=0)
    h = Harness(log)
    seeks: list[tuple[str, int, int]] = []

    async def refetch(topic: str, partition: int, offset: int) -> None:
        seeks.append((topic, partition, offset))

    h.guard.refetch = refetch
    await h.deliver(0, 1, 2)
    await h.guard.sweep([("ev", 0)], {"ev": h.handle}, idle_seconds=0)
    assert seeks == [("ev", 0, 3)] and h.handled == [0, 1, 2]
    await h.deliver(3, 4, 5)  # the consumer delivers them again after the seek
    assert h.count("offset_gaps_found_total") == 3 and h.count("offset_gaps_healed_total") == 3
