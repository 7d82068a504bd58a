"""The worker stops on SIGTERM: cleanly while Kafka is up, and within its grace period when Kafka
has gone away mid-work (Faust's own shutdown then waits for ever to flush to the dead broker)."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from relayguard.foundation.settings import Settings
from relayguard.foundation.topics import ensure_topics, standard_topics
from relayguard.roof.broker.server import LocalBroker
from relayguard.roof.worker_process import WorkerProcess
from relayguard.stream import codec
from relayguard.stream.records import SendEvent
from tests.kafka_helpers import produce

pytestmark = pytest.mark.integration
GRACE = 4.0


def _terminate(worker: WorkerProcess, timeout: float) -> tuple[int, float]:
    assert worker.proc is not None
    start = time.monotonic()
    os.killpg(worker.proc.pid, signal.SIGTERM)
    try:
        code = worker.proc.wait(timeout)
    except subprocess.TimeoutExpired:
        worker.stop()
        pytest.fail(f"worker still running {timeout}s after SIGTERM:\n{worker.tail_log()}")
    return code, time.monotonic() - start


def _processed(worker: WorkerProcess) -> int:
    text = worker.get("/metrics") or ""
    return sum(int(n) for n in re.findall(r"^relayguard_worker_events_total\{.*\} (\d+)$",
                                          text, re.M))


def test_sigterm_with_and_without_kafka(kafka_bootstrap: str, tmp_path: Path) -> None:
    # kafka_bootstrap: jars fetched; this test kills a broker of its own.
    broker = LocalBroker(data_dir=tmp_path / "kafka")
    broker.start()
    env = {"RELAYGUARD_BOOTSTRAP_SERVERS": broker.bootstrap,
           "RELAYGUARD_SHUTDOWN_GRACE_SECONDS": str(GRACE),
           "RELAYGUARD_DATA_DIR": str(tmp_path / "w")}
    try:
        up = WorkerProcess(env, tmp_path / "up.log")
        up.start(timeout=120)
        code, _ = _terminate(up, 30)
        assert code == 0, up.tail_log()

        # A backlog, so the worker is mid-work with records to flush when Kafka dies.
        settings = Settings(bootstrap_servers=broker.bootstrap)
        asyncio.run(ensure_topics(broker.bootstrap, standard_topics(settings)))
        now = time.time()
        events = [SendEvent(str(uuid.uuid4()), now + i * 0.01, "r", f"u{i % 500}", "192.0.2.1",
                            "s", 1, 100) for i in range(20000)]
        asyncio.run(produce(broker.bootstrap, settings.topics.events,
                            [((e.user).encode(), codec.encode_event(e)) for e in events]))
        down = WorkerProcess(env, tmp_path / "down.log")
        down.start(timeout=120)
        deadline = time.monotonic() + 60
        while _processed(down) < 500 and time.monotonic() < deadline:
            time.sleep(0.1)
        broker.stop(timeout=0.1)  # SIGKILL almost at once: nothing gets flushed
        _, took = _terminate(down, GRACE + 20)
        assert took < GRACE + 15, down.tail_log()
    finally:
        broker.stop()
