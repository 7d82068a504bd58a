"""The event producer against a fake Kafka: queue path, spool on outage, ordered replay."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from typing import Any

import orjson

from relayguard.relay.producer import EventProducer
from relayguard.stream.records import SendEvent


class FakeKafka:
    """Stands in for AIOKafkaProducer; `down` makes start() and deliveries fail."""

    def __init__(self, world: FakeWorld) -> None:
        self.world = world

    async def start(self) -> None:
        if self.world.start_hangs:  # idempotent aiokafka when the broker dies mid-start
            await asyncio.Event().wait()
        if self.world.down:
            raise ConnectionError("broker down")

    async def stop(self) -> None:
        pass

    async def send(self, topic: str, value: bytes, key: bytes) -> asyncio.Future[None]:
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if self.world.hang:  # like idempotent aiokafka: retried until the broker is back
            self.world.held.append((fut, key, value))
        elif self.world.down:
            fut.set_exception(ConnectionError("broker down"))
        else:
            self.world.log.append((key, value))
            fut.set_result(None)
        return fut


class FakeWorld:
    def __init__(self) -> None:
        self.down = False
        self.hang = False
        self.start_hangs = False
        self.held: list[tuple[asyncio.Future[None], bytes, bytes]] = []
        self.log: list[tuple[bytes, bytes]] = []

    def release(self) -> None:
        self.hang = False
        for fut, key, value in self.held:
            self.log.append((key, value))
            fut.set_result(None)
        self.held.clear()

    def ids(self) -> list[str]:
        return [orjson.loads(v)["event_id"] for _, v in self.log]


def _ev(i: int, user: str = "alice") -> SendEvent:
    return SendEvent(event_id=f"e{i}", event_time=1.8e9 + i, relay_id="r1", user=user,
                     client_ip="192.0.2.1", sender="a@x", recipient_count=1, size=10)


def _producer(tmp: Path, world: FakeWorld, **kw: Any) -> EventProducer:
    return EventProducer("fake:1", "t", tmp, retry_interval=0.05,
                         producer_factory=lambda: FakeKafka(world), **kw)


async def _until(cond: Any, timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not cond():
            await asyncio.sleep(0.01)


async def test_direct_path(tmp_path: Path) -> None:
    world = FakeWorld()
    p = _producer(tmp_path, world)
    await p.start()
    for i in range(5):
        assert p.publish_nowait(_ev(i))
    await _until(lambda: len(world.log) == 5)
    await p.stop()
    assert world.ids() == [f"e{i}" for i in range(5)]
    assert world.log[0][0] == b"alice"
    assert p.stats.sent == 5 and p.stats.spooled == 0


async def test_outage_spools_then_replays_in_order(tmp_path: Path) -> None:
    world = FakeWorld()
    world.down = True
    p = _producer(tmp_path, world)
    await p.start()
    for i in range(20):
        p.publish_nowait(_ev(i))
    await _until(lambda: p.stats.spooled == 20)
    assert p.state == "spooling" and p.stats.spool_bytes > 0
    world.down = False
    for i in range(20, 25):  # arrive while the spool still holds older events
        p.publish_nowait(_ev(i))
    await _until(lambda: len(world.log) == 25)
    await p.stop()
    assert world.ids() == [f"e{i}" for i in range(25)]
    assert p.stats.replayed == 25 and p.stats.spool_bytes == 0


async def test_events_before_start_wait_on_disk(tmp_path: Path) -> None:
    world = FakeWorld()
    p = _producer(tmp_path, world)
    for i in range(10):  # sender not started: all wait in the spool, in order
        assert p.publish_nowait(_ev(i))
    assert p.stats.spooled == 10
    await p.start()
    await _until(lambda: len(world.log) == 10)
    await p.stop()
    assert world.ids() == [f"e{i}" for i in range(10)]


async def test_spool_survives_restart(tmp_path: Path) -> None:
    world = FakeWorld()
    world.down = True
    p = _producer(tmp_path, world)
    await p.start()
    for i in range(4):
        p.publish_nowait(_ev(i))
    await p.stop(timeout=1.0)
    assert world.log == []
    world.down = False
    again = _producer(tmp_path, world)
    await again.start()
    await _until(lambda: len(world.log) == 4)
    await again.stop()
    assert world.ids() == ["e0", "e1", "e2", "e3"]


async def test_full_spool_refuses_loudly(tmp_path: Path, caplog: Any) -> None:
    world = FakeWorld()
    world.down = True
    p = _producer(tmp_path, world, spool_max_bytes=1000)
    results = [p.publish_nowait(_ev(i)) for i in range(30)]
    assert results[0] and not results[-1]
    assert p.state == "spool_full" and p.stats.dropped_full > 0
    assert "SPOOL FULL" in caplog.text
    await p.stop(timeout=1.0)


async def test_stalled_send_is_not_duplicated(tmp_path: Path) -> None:
    world = FakeWorld()
    p = _producer(tmp_path, world, stall_timeout=0.1)
    await p.start()
    p.publish_nowait(_ev(0))
    await _until(lambda: len(world.log) == 1)
    world.hang = True  # broker vanishes with e1 handed over
    p.publish_nowait(_ev(1))
    await _until(lambda: len(world.held) == 1)
    await _until(lambda: p.state == "spooling")
    for i in range(2, 6):
        p.publish_nowait(_ev(i))
    assert p.stats.spooled == 5  # e1 (held by the client, still on disk) and e2..e5
    world.release()
    await _until(lambda: len(world.log) == 6)
    await p.stop()
    assert world.ids() == [f"e{i}" for i in range(6)]
    assert p.state == "stopped" and p.stats.spool_bytes == 0


async def test_stop_during_stall_keeps_unconfirmed_events(tmp_path: Path) -> None:
    world = FakeWorld()
    p = _producer(tmp_path, world, stall_timeout=0.1)
    await p.start()
    world.hang = True
    p.publish_nowait(_ev(0))
    await _until(lambda: len(world.held) == 1)
    p.publish_nowait(_ev(1))
    await p.stop(timeout=0.3)
    world.hang = False
    world.held.clear()  # that process is gone
    again = _producer(tmp_path, world)
    await again.start()
    await _until(lambda: len(world.log) == 2)
    await again.stop()
    assert world.ids() == ["e0", "e1"]


async def test_unwritable_spool_is_counted_not_raised(tmp_path: Path, caplog: Any) -> None:
    world = FakeWorld()
    p = _producer(tmp_path, world)

    def broken(key: bytes, value: bytes) -> bool:
        raise OSError(28, "No space left on device")

    p._spool.append = broken  # type: ignore[method-assign]
    assert not p.publish_nowait(_ev(0))  # written ahead or refused: never held in RAM only
    assert p.stats.spool_errors == 1 and "event REFUSED and LOST" in caplog.text
    assert p.stats.accepted == 0


async def test_a_start_that_never_finishes_does_not_stop_spooling(tmp_path: Path) -> None:
    world = FakeWorld()
    world.start_hangs = True
    p = _producer(tmp_path, world, request_timeout_ms=100)
    await p.start()
    for i in range(3):
        assert p.publish_nowait(_ev(i))
    await _until(lambda: p.stats.spooled == 3)  # connect gave up after ~2.1 s: spooled
    assert p.state == "spooling"
    world.start_hangs = False
    await _until(lambda: p.stats.state == "ok" and p.stats.spool_bytes == 0)
    assert world.ids() == ["e0", "e1", "e2"]
    await p.stop()


async def test_accepted_means_on_disk_before_any_send(tmp_path: Path) -> None:
    """Write-ahead: what publish_nowait accepted is readable by a fresh process at once (as
    after SIGKILL), even while the sender is mid-flight and nothing was flushed by stop()."""
    world = FakeWorld()
    world.hang = True
    p = _producer(tmp_path, world, stall_timeout=0.1)
    await p.start()
    for i in range(5):
        assert p.publish_nowait(_ev(i))
    await _until(lambda: len(world.held) == 5)
    from relayguard.relay.spool import Spool

    recs = Spool(tmp_path).read()  # another reader, as the next run after a kill would be
    assert [orjson.loads(r.value)["event_id"] for r in recs] == [f"e{i}" for i in range(5)]
    p._task.cancel()  # type: ignore[union-attr]  # "killed": no stop(), no flush


async def test_resend_after_kill_is_at_most_one_batch(tmp_path: Path) -> None:
    world = FakeWorld()
    p = _producer(tmp_path, world, batch=4, stall_timeout=0.1)
    await p.start()
    for i in range(3):
        p.publish_nowait(_ev(i))
    await _until(lambda: len(world.log) == 3 and p.stats.queue_depth == 0)
    world.hang = True
    for i in range(3, 10):
        p.publish_nowait(_ev(i))
    await _until(lambda: len(world.held) == 4)  # one batch handed over, unconfirmed
    # the broker got that batch, but this process dies before it sees the acks
    world.log += [(k, v) for _, k, v in world.held]
    world.held.clear()
    p._task.cancel()  # type: ignore[union-attr]
    with contextlib.suppress(asyncio.CancelledError):
        await p._task  # type: ignore[misc]
    world.hang = False
    again = _producer(tmp_path, world, batch=4)
    await again.start()
    await _until(lambda: again.stats.spool_bytes == 0 and again.state == "ok")
    await again.stop()
    ids = world.ids()
    assert sorted(set(ids)) == sorted(f"e{i}" for i in range(10))  # nothing lost
    assert len(ids) - 10 == 4, " ".join(ids)  # repeats: exactly the unacknowledged batch
    assert again.stats.replayed == 7 and again.stats.sent == 0


def test_batch_beyond_the_dedupe_ring_is_refused(tmp_path: Path) -> None:
    import pytest

    with pytest.raises(ValueError):
        EventProducer("fake:1", "t", tmp_path, batch=257)
