"""The fixes agents/faust_offsets.py makes to Faust's offset bookkeeping, on a real Faust
consumer object (no broker: ack and the commit choice are pure bookkeeping)."""

from __future__ import annotations

import asyncio
from typing import Any

import faust
import pytest
from faust.types import TP, Message

from relayguard.agents import faust_offsets

TOPIC = "events"
TPX = TP(TOPIC, 0)


@pytest.fixture
def consumer() -> Any:
    app = faust.App("faust-offsets-test", broker="kafka://127.0.0.1:1")
    faust_offsets.install(app)
    c = app.consumer
    assert isinstance(c, faust_offsets.GuardedConsumer)
    app.topics.acks_enabled_for = lambda topic: True  # type: ignore[method-assign]
    app.flow_control.resume()
    app.consumer_generation_id = 1
    c._committed_offset[TPX] = 10  # the group resumes at offset 10 (next to read)
    return c


def _msg(offset: int) -> Message:
    return Message(TOPIC, 0, offset, 0.0, 0, None, b"k", b"v", None, tp=TPX, generation_id=1)


def test_commit_waits_for_the_committed_offset_itself(consumer: Any) -> None:
    for offset in (11, 12):
        assert consumer.ack(_msg(offset))
    assert consumer._new_offset(TPX) is None  # 10 was never acked: Faust would commit 13
    assert consumer.ack(_msg(10))
    assert consumer._new_offset(TPX) == 13


def test_a_record_whose_handling_did_not_finish_is_not_acked(consumer: Any) -> None:
    """A graceful stop cancels the agent mid-record; the stream's `finally` still acks it."""
    app = consumer.app
    faust_offsets.begin(app, TOPIC, 0, 10)
    assert not consumer.ack(_msg(10))  # cancelled half-way: must be redone after the restart
    faust_offsets.begin(app, TOPIC, 0, 11)
    faust_offsets.finish(app, TOPIC, 0, 11)
    assert consumer.ack(_msg(11))
    assert consumer._new_offset(TPX) is None  # the commit stops in front of offset 10


def test_a_finished_record_is_acked(consumer: Any) -> None:
    app = consumer.app
    faust_offsets.begin(app, TOPIC, 0, 10)
    faust_offsets.finish(app, TOPIC, 0, 10)
    assert consumer.ack(_msg(10))
    assert consumer._new_offset(TPX) == 11


def test_records_from_an_earlier_generation_are_not_acked(consumer: Any) -> None:
    old = Message(TOPIC, 0, 10, 0.0, 0, None, b"k", b"v", None, tp=TPX, generation_id=0)
    assert not consumer.ack(old)
    assert consumer._new_offset(TPX) is None


async def test_commit_waits_for_unconfirmed_changelog_writes(
        consumer: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Fix 4: Faust's own flush gives up after 100 ms; the commit must not pass a state write
    the broker has not confirmed."""
    committed: list[Any] = []

    async def base_commit(self: Any, offsets: Any, start_new_transaction: bool = True) -> bool:
        committed.append(dict(offsets))
        return True

    monkeypatch.setattr(faust_aiokafka_base(), "_commit_offsets", base_commit)
    monkeypatch.setattr(faust_offsets, "WRITE_CONFIRM_TIMEOUT_S", 0.05)
    write: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
    faust_offsets.track_write(consumer.app, write)
    assert not await consumer._commit_offsets({TPX: 11})  # not confirmed in time: skipped
    assert committed == []
    monkeypatch.setattr(faust_offsets, "WRITE_CONFIRM_TIMEOUT_S", 5.0)
    later = asyncio.create_task(consumer._commit_offsets({TPX: 11}))
    await asyncio.sleep(0.01)
    assert not later.done()  # still waiting for the write
    write.set_result(None)
    assert await later
    assert committed == [{TPX: 11}]
    assert not consumer.unconfirmed


async def test_a_failed_changelog_write_stops_the_worker_instead_of_committing(
        consumer: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    crashed: list[BaseException] = []

    async def crash(exc: BaseException) -> None:
        crashed.append(exc)

    monkeypatch.setattr(consumer, "crash", crash)
    write: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
    faust_offsets.track_write(consumer.app, write)
    write.set_exception(RuntimeError("broker said no"))
    assert not await consumer._commit_offsets({TPX: 11})
    assert [str(e) for e in crashed] == ["broker said no"]


async def test_state_table_writes_are_tracked(consumer: Any) -> None:
    from relayguard.agents.metrics import Metrics
    from relayguard.agents.state_table import UndecodableReporter, state_table

    table = state_table(consumer.app, "t", UndecodableReporter(Metrics()), key_type=str,
                        value_type=bytes, partitions=1)
    fut = table.send_changelog(0, "alice", b"state")
    assert fut in consumer.unconfirmed


def faust_aiokafka_base() -> type:
    """The class whose `_commit_offsets` the guarded consumer extends."""
    return faust_offsets.GuardedConsumer.__mro__[1]
