"""The broker SIGKILLed and restarted under load (its own broker: the session's is never
killed). A relay publishes through relay.producer.EventProducer with a disk spool, as in
production. Nothing may be lost or double counted, and the worker must recover unaided."""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path

import pytest

from relayguard.relay.producer import EventProducer
from relayguard.roof.broker.config import free_port
from relayguard.roof.broker.server import LocalBroker
from relayguard.roof.worker_process import WorkerProcess
from tests.fault_helpers import WORKER_ENV, Workload, kill, lock_audit, metric, wait_exact

pytestmark = pytest.mark.integration


async def _publish(relay: EventProducer, records: list[tuple[bytes, bytes]]) -> None:
    for i, (key, value) in enumerate(records):
        assert relay.publish_raw(key, value), "relay refused an event (spool full?)"
        if i % 25 == 0:
            await asyncio.sleep(0.01)  # a relay's pace, not one burst


async def _drained(relay: EventProducer, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        s = relay.stats
        if s.spool_bytes == 0 and s.queue_depth == 0 and relay.state == "ok":
            return
        await asyncio.sleep(0.2)
    pytest.fail(f"relay never drained its spool/queue: {relay.stats}")


async def test_broker_sigkilled_and_restarted_under_load(tmp_path: Path,
                                                         test_city_db: Path) -> None:
    broker = LocalBroker(data_dir=tmp_path / "kafka", port=free_port())
    broker.start(timeout=120)
    tag = uuid.uuid4().hex[:8]
    prefix = f"t{tag}."
    env = {"RELAYGUARD_BOOTSTRAP_SERVERS": broker.bootstrap, "RELAYGUARD_APP_ID": f"rg-test-{tag}",
           "RELAYGUARD_TOPICS__PREFIX": prefix, "RELAYGUARD_PARTITIONS": "2",
           "RELAYGUARD_GEOIP_CITY_DB": str(test_city_db),
           "RELAYGUARD_DATA_DIR": str(tmp_path / "data"), **WORKER_ENV}
    worker = WorkerProcess(env, tmp_path / "worker.log")
    relay = EventProducer(broker.bootstrap, f"{prefix}events", tmp_path / "spool",
                          retry_interval=0.5, stall_timeout=2.0, request_timeout_ms=3000)
    try:
        worker.start(timeout=120)
        await relay.start()
        w = Workload(users=20)  # 20 x 21 + 20 x 20 = 820 events
        chunks = w.chunks(3)
        await _publish(relay, chunks[0])
        deadline = time.monotonic() + 60
        while metric(worker.get("/metrics"), "events_total") < 1:
            assert time.monotonic() < deadline, worker.tail_log()
            await asyncio.sleep(0.05)
        assert broker.pid is not None
        kill(broker.pid)  # SIGKILL mid stream: no clean shutdown, no last flush
        await _publish(relay, chunks[1])  # during the outage
        deadline = time.monotonic() + 30
        while relay.state != "spooling":  # the relay noticed the outage
            assert time.monotonic() < deadline, f"relay never noticed the outage: {relay.stats}"
            await asyncio.sleep(0.1)
        broker.start(timeout=120)  # same data dir and port
        await _publish(relay, chunks[2])
        await _drained(relay, 120)

        problems = await wait_exact(broker.bootstrap, f"rg-test-{tag}-user-state-changelog", w,
                                    timeout=180)
        assert not problems, "\n".join(problems[:20]) + "\n" + worker.tail_log(40)
        assert not await lock_audit(broker.bootstrap, f"{prefix}locks", w)
        assert worker.proc is not None and worker.proc.poll() is None, "worker died"
        text = worker.get("/metrics")
        print("relay:", relay.stats, "| worker:", {n: metric(text, n) for n in (
            "redeliveries_total", "offset_gaps_found_total", "offset_gaps_healed_total")})
    finally:
        await relay.stop(timeout=5)
        worker.stop()
        broker.stop()
