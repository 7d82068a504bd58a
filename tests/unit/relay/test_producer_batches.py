"""The producer's batch records against a fake Kafka: one record per partition per hand-over,
on the partition Kafka's partitioner gives each user, per-user order kept; after a failed batch
the spool resends exactly what was not acknowledged (nothing lost, nothing skipped)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from relayguard.relay.producer import EventProducer
from relayguard.stream import batch_codec, codec
from relayguard.stream.records import SendEvent

PARTS = 4


class BatchKafka:
    def __init__(self, world: BatchWorld) -> None:
        self.world = world

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        pass

    async def partitions_for(self, topic: str) -> set[int]:
        return set(range(PARTS))

    async def send(self, topic: str, value: bytes, key: bytes | None = None,
                   partition: int | None = None) -> asyncio.Future[None]:
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.world.sends += 1
        if self.world.fail_sends and self.world.sends in self.world.fail_sends:
            fut.set_exception(ConnectionError("not acknowledged"))
        else:
            assert partition is not None and key is None
            self.world.log.append((partition, value))
            fut.set_result(None)
        return fut


class BatchWorld:
    def __init__(self) -> None:
        self.log: list[tuple[int, bytes]] = []
        self.sends = 0
        self.fail_sends: set[int] = set()

    def events(self) -> list[tuple[int, str, str]]:
        """(partition, user, event id) of every event delivered, in delivery order."""
        out = []
        for partition, record in self.log:
            items = batch_codec.decode_batch(record)
            assert items is not None
            for item in items:
                e = codec.decode_event(item)
                out.append((partition, e.user or "", e.event_id))
        return out


def _producer(tmp: Path, world: BatchWorld) -> EventProducer:
    return EventProducer("fake:1", "t", tmp, retry_interval=0.05, batch_records=True,
                         producer_factory=lambda: BatchKafka(world))


def _ev(i: int, user: str) -> SendEvent:
    return SendEvent(f"{user}/{i}", 1.8e9 + i, "r1", user, "192.0.2.1", "a@x", 1, 10)


async def _until(cond: Any, timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not cond():
            await asyncio.sleep(0.01)


async def test_one_batch_record_per_partition_on_the_users_partition(tmp_path: Path) -> None:
    world = BatchWorld()
    p = _producer(tmp_path, world)
    users = [f"user{u}@example.com" for u in range(12)]
    for i in range(120):  # before start: one hand-over of 120 events
        assert p.publish_nowait(_ev(i, users[i % 12]))
    await p.start()
    await _until(lambda: len(world.events()) == 120)
    await p.stop()
    parts = [part for part, _ in world.log]
    assert len(parts) == len(set(parts)) <= PARTS  # one record per partition
    for part, user, _ in world.events():
        assert part == batch_codec.partition_for(user.encode(), PARTS)
    for user in users:
        ids = [eid for _, u, eid in world.events() if u == user]
        assert ids == [f"{user}/{i}" for i in range(120) if users[i % 12] == user]
    assert p.stats.spool_bytes == 0 and p.stats.queue_depth == 0


async def test_a_failed_batch_is_resent_with_everything_after_it(tmp_path: Path) -> None:
    world = BatchWorld()
    world.fail_sends = {2}  # the second batch record of the first hand-over fails
    p = _producer(tmp_path, world)
    users = [f"u{u}" for u in range(8)]
    for i in range(64):
        p.publish_nowait(_ev(i, users[i % 8]))
    await p.start()
    await _until(lambda: {eid for _, _, eid in world.events()} ==
                 {f"{users[i % 8]}/{i}" for i in range(64)})
    await p.stop()
    got = [eid for _, _, eid in world.events()]
    # at-least-once: what the spool resent may repeat, never skip; per-user order holds
    # within each delivery, and the last copy of every event is where order says
    for user in users:
        mine = [eid for _, u, eid in world.events() if u == user]
        want = [f"{user}/{i}" for i in range(64) if users[i % 8] == user]
        assert set(mine) == set(want)
        last = [e for k, e in enumerate(mine) if e not in mine[k + 1:]]
        assert last == want
    assert len(got) >= 64 and p.stats.queue_depth == 0
