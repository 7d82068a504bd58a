"""The SIGKILL fault test's equalities with batch records: the events reach the broker through
the relay's own producer with `batch_records=True` (one record per partition per hand-over,
dozens of users per record), and the worker is SIGKILLed mid backlog three times, so kills land
inside batches. Counted by event id and by per-user state (read back from the worker's
`user-state` changelog) against the sums sent, and locks checked on the locks topic."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from relayguard.relay.producer import EventProducer
from tests.fault_helpers import WORKER_ENV, Workload, kill, lock_audit, metric, wait_exact
from tests.fixtures.worker import RunningWorker, StartWorker

pytestmark = pytest.mark.integration


async def _produce_batched(bootstrap: str, topic: str, records: list[tuple[bytes, bytes]],
                           spool: Path) -> None:
    producer = EventProducer(bootstrap, topic, spool, batch_records=True)
    await producer.start()
    try:
        for key, value in records:
            assert producer.publish_raw(key, value)
        deadline = time.monotonic() + 60
        while producer.stats.queue_depth and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        assert producer.stats.queue_depth == 0, producer.stats
    finally:
        await producer.stop()


def _events_and_batches(w: RunningWorker) -> tuple[int, int]:
    text = w.process.get("/metrics")
    return metric(text, "events_total"), metric(text, "event_batches_total")


async def test_sigkill_three_times_mid_backlog_of_batch_records(
        start_worker: StartWorker, tmp_path: Path) -> None:
    w = Workload(users=25)  # 25 x 21 + 25 x 20 = 1,025 events in 4 chunks
    current = start_worker(**WORKER_ENV)
    tag, bootstrap, events = current.tag, current.bootstrap, current.topics.events
    chunks = w.chunks(4)
    batches_seen = 0
    for i, chunk in enumerate(chunks[:3]):
        await _produce_batched(bootstrap, events, chunk, tmp_path / f"spool{i}")
        deadline = time.monotonic() + 60
        taken = 0
        while taken < max(1, len(chunk) // 5) and time.monotonic() < deadline:
            taken, batches = _events_and_batches(current)
            time.sleep(0.02)
        batches_seen += batches
        print(f"SIGKILL after {taken} events ({batches} batch records) of a {len(chunk)}-event "
              "chunk")
        assert current.process.proc is not None
        kill(current.process.proc.pid)
        current.process.proc.wait(10)
        current = start_worker(tag=tag, **WORKER_ENV)
    await _produce_batched(bootstrap, events, chunks[3], tmp_path / "spool3")

    problems = await wait_exact(bootstrap, f"rg-test-{tag}-user-state-changelog", w,
                                timeout=120)
    assert not problems, "\n".join(problems[:20]) + "\n" + current.process.tail_log()
    assert not await lock_audit(bootstrap, current.topics.locks, w)
    _, batches = _events_and_batches(current)
    assert batches_seen + batches > 0  # the events really came as batch records
