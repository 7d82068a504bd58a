"""The worker's table store on the real broker: values planted in the changelog are dropped and
counted without running anything, Faust's data views are not served, and a RocksDB store is
kept across a clean stop but rebuilt from the changelog after a kill."""

from __future__ import annotations

import os
import pickle
import re
import signal
import time
import uuid
from pathlib import Path

import orjson
import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.partitioner import murmur2

from relayguard.stream import codec
from relayguard.stream.records import SendEvent
from tests.fixtures.worker import RunningWorker, StartWorker
from tests.kafka_helpers import collect, produce

pytestmark = pytest.mark.integration


class _Planted:
    """Unpickling this creates a directory: the code an attacker would plant."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, ...]:
        return (os.mkdir, (str(self.marker),))


def _send(user: str, t: float) -> SendEvent:
    return SendEvent(str(uuid.uuid4()), t, "relay-it", user, "192.0.2.9", user, 2, 2048)


def _burst(user: str, n: int, start: float) -> list[tuple[bytes, bytes]]:
    return [(user.encode(), codec.encode_event(_send(user, start + i * 0.5))) for i in range(n)]


def _metric(worker: RunningWorker, name: str) -> int:
    text = worker.process.get("/metrics") or ""
    return sum(int(n) for n in re.findall(
        rf"^relayguard_worker_{name}(?:{{.*}})? (\d+)$", text, re.M))


async def _locked(worker: RunningWorker, users: set[str], timeout: float = 30) -> set[str]:
    def subjects(rs: list) -> set[str]:  # type: ignore[type-arg]
        return {codec.decode_lock_command(r.value).subject for r in rs} & users

    locks = await collect(worker.bootstrap, [worker.topics.locks],
                          lambda rs: subjects(rs) == users, timeout)
    return subjects(locks)


def _changelog(worker: RunningWorker) -> str:
    return f"rg-test-{worker.tag}-user-state-changelog"


async def _plant(worker: RunningWorker, records: list[tuple[str, bytes, bytes]]) -> None:
    """Write (user, key, value) records into the user-state changelog partition that a
    user's events (and so their state) land in: Kafka's default partitioner on the user."""
    producer = AIOKafkaProducer(bootstrap_servers=worker.bootstrap, acks="all")
    await producer.start()
    try:
        for user, key, value in records:
            partition = (murmur2(user.encode()) & 0x7FFFFFFF) % 2  # the fixture's 2 partitions
            await producer.send_and_wait(_changelog(worker), value, key=key, partition=partition)
    finally:
        await producer.stop()


@pytest.mark.parametrize("store", ["rocksdb", "memory"])
async def test_planted_changelog_values_are_dropped_and_counted(
        start_worker: StartWorker, tmp_path: Path, store: str) -> None:
    first = start_worker(RELAYGUARD_TABLE_STORE=store)  # creates the topics, changelog included
    victim, other, garbled = (f"{p}-{uuid.uuid4().hex[:6]}" for p in ("victim", "other", "junk"))
    marker = tmp_path / "unpickled"
    await _plant(first, [
        # Keyed as the table keys are, in the partition that holds the victim's state.
        (victim, orjson.dumps(victim), pickle.dumps(_Planted(marker))),
        (garbled, garbled.encode(), b"\x00garbage\xff" * 10),  # a key that is not even JSON
    ])
    first.process.stop()

    # Same topics, fresh data dir: the whole changelog is replayed, planted values included.
    second = start_worker(tag=first.tag, RELAYGUARD_TABLE_STORE=store)  # waits for 200
    assert not marker.exists()
    assert _metric(second, "state_undecodable_total") == 2, second.process.tail_log()
    log = second.process.log_path.read_text()
    assert victim in log and garbled in log  # each reported with its key

    now = time.time()
    await produce(second.bootstrap, second.topics.events,
                  _burst(victim, 30, now) + _burst(other, 30, now))
    assert await _locked(second, {victim, other}) == {victim, other}, second.process.tail_log()
    assert not marker.exists()
    assert _metric(second, "state_undecodable_total") == 2
    second.process.stop()


def test_faust_data_views_are_not_served(worker: RunningWorker) -> None:
    for path in ("/table/", "/table/user-state/", "/router/", "/graph/", "/stats/",
                 "/assignment/"):
        assert worker.process.status(path) == 404, path
    assert worker.process.status("/ready") == 200
    assert worker.process.status("/metrics") == 200


async def test_rocksdb_store_kept_after_clean_stop_and_rebuilt_after_kill(
        start_worker: StartWorker, tmp_path: Path) -> None:
    data = tmp_path / "data"
    env = {"RELAYGUARD_TABLE_STORE": "rocksdb", "RELAYGUARD_DATA_DIR": str(data)}
    first = start_worker(**env)
    user = f"kept-{uuid.uuid4().hex[:6]}"
    now = time.time()
    events = _burst(user, 13, now)  # 13 sends in 6 s: over the 10 a minute limit at the 11th
    await produce(first.bootstrap, first.topics.events, events[:8])
    written = await collect(first.bootstrap, [_changelog(first)], lambda rs: any(
        r.key == orjson.dumps(user) for r in rs), 20)
    assert any(r.key == orjson.dumps(user) for r in written), first.process.tail_log()
    first.process.stop()
    assert list(data.rglob("relayguard-clean-stop")), "no clean-stop mark after SIGTERM"

    second = start_worker(tag=first.tag, **env)
    assert "did not stop cleanly" not in second.process.log_path.read_text()
    assert _metric(second, "changelog_records_recovered_total") == 0  # all read from disk
    await produce(second.bootstrap, second.topics.events, events[8:])
    assert await _locked(second, {user}) == {user}  # 8 from the store + 5 new ones
    assert second.process.proc is not None
    os.killpg(second.process.proc.pid, signal.SIGKILL)
    second.process.proc.wait(10)

    third = start_worker(tag=first.tag, **env)
    assert "did not stop cleanly" in third.process.log_path.read_text()
    assert _metric(third, "changelog_records_recovered_total") >= 1  # rebuilt from Kafka
    third.process.stop()
