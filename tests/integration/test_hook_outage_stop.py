"""`relayguard hook postfix` stopped (SIGTERM) or killed (SIGKILL) during a broker outage loses
no accepted event: every END-OF-MESSAGE request that got its answer reaches the events topic
after broker and hook are restarted, in per-user order; repeats stay within one producer batch
(256, the worker's per-user dedupe ring). The test kills a LocalBroker of its own."""

from __future__ import annotations

import asyncio
import itertools
import signal
import socket
import time
from collections import Counter
from datetime import datetime
from pathlib import Path

import orjson
import pytest

from relayguard.foundation.settings import Settings
from relayguard.relay.policy_protocol import send_event_id
from relayguard.roof.broker.config import free_port
from relayguard.roof.broker.server import LocalBroker
from tests.integration.hook_process import answers, policy_request, start_hook, stop, wait_until
from tests.kafka_helpers import make_topics, read_events

pytestmark = pytest.mark.integration

RELAY = "relay-outage"
USERS = ("alice", "bob", "carol")
BEFORE, DURING = 30, 300  # events with the broker up, then during the outage
MAX_REPEATS = 256  # EventProducer.batch: at most one unacknowledged batch is sent again


def _aiokafka_lines(log_text: str) -> list[list[datetime]]:
    """Per hook run (each starts by logging its open-file limit), the times of aiokafka's
    log lines."""
    runs: list[list[datetime]] = []
    for line in log_text.splitlines():
        if "open-file limit:" in line:
            runs.append([])
        parts = line.split(" ", 4)
        if runs and len(parts) > 3 and parts[3].startswith("aiokafka"):
            runs[-1].append(datetime.strptime(f"{parts[0]} {parts[1]}", "%Y-%m-%d %H:%M:%S,%f"))
    return runs


def _send(port: int, first: int, n: int, pace: float) -> list[str]:
    """n END-OF-MESSAGE requests on one persistent connection; the ids of those answered."""
    ids = []
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        f = s.makefile("rb")
        for i in range(first, first + n):
            user, queue_id = USERS[i % len(USERS)], f"Q{i:05d}"
            s.sendall(policy_request(user, "END-OF-MESSAGE", queue_id, "out.1"))
            assert f.readline() == b"action=DUNNO\n" and f.readline() == b"\n"
            ids.append(send_event_id(RELAY, queue_id, "out.1"))
            time.sleep(pace)
    return ids


@pytest.mark.parametrize("how", ["SIGTERM", "SIGKILL"])
def test_hook_stopped_during_outage_loses_nothing(
        how: str, kafka_bootstrap: str, tmp_path: Path) -> None:
    # kafka_bootstrap: the session fixture fetched the jars; this test kills its own broker
    port, policy_port = free_port(), free_port()
    broker = LocalBroker(data_dir=tmp_path / "kafka", port=port)
    broker.start(120)
    s = Settings(bootstrap_servers=broker.bootstrap)
    asyncio.run(make_topics(s))
    log_path = tmp_path / "hook.log"
    args = ["--listen", f"inet:127.0.0.1:{policy_port}", "--relay-id", RELAY, "--bootstrap",
            broker.bootstrap, "--ready-timeout", "5"]
    env = {"RELAYGUARD_DATA_DIR": str(tmp_path / "data")}
    hook = start_hook(args, env, log_path)
    try:
        wait_until(lambda: answers(policy_port), 60, "hook answers", hook, log_path)
        sent = _send(policy_port, 0, BEFORE, 0.0)
        asyncio.run(read_events(s.bootstrap_servers, s.topics.events, want=BEFORE, settle=0))

        broker.stop(0.1, keep_dir=True)  # SIGTERM, SIGKILL after 0.1 s
        sent += _send(policy_port, BEFORE, DURING, 0.007)  # ~2 s of outage traffic
        t0 = time.monotonic()
        if how == "SIGTERM":
            hook.send_signal(signal.SIGTERM)
            assert hook.wait(60) == 0, log_path.read_text()[-3000:]
            print(f"\nSIGTERM during the outage: exited in {time.monotonic() - t0:.1f}s")
        else:
            hook.send_signal(signal.SIGKILL)
            hook.wait(10)
        first_log = log_path.read_text()

        broker.start(120)
        hook = start_hook(args, env, log_path)
        wait_until(lambda: answers(policy_port), 60, "restarted hook answers", hook, log_path)
        records = asyncio.run(read_events(s.bootstrap_servers, s.topics.events, want=len(sent),
                                          timeout=90, settle=3.0))
        hook.send_signal(signal.SIGTERM)
        assert hook.wait(60) == 0
    finally:
        stop(hook)
        broker.stop()

    events = [orjson.loads(r.value) for r in records]
    counts = Counter(e["event_id"] for e in events)
    lost = set(sent) - set(counts)
    repeats = sum(n - 1 for n in counts.values())
    print(f"{how}: {len(sent)} accepted, {len(lost)} lost, {repeats} repeated")
    assert not lost, f"{how}: {len(lost)} accepted events never reached Kafka: {sorted(lost)[:5]}"
    assert set(counts) == set(sent), "unknown events on the topic"
    assert repeats <= MAX_REPEATS, f"{how}: {repeats} events sent twice, over {MAX_REPEATS}"
    for user in USERS:  # per-user order kept (first delivery of each id)
        seen: dict[str, float] = {}
        for e in events:
            if e["user"] == user:
                seen.setdefault(e["event_id"], e["event_time"])
        order = list(seen.values())
        assert order == sorted(order), f"{user}: out of order"
    if how == "SIGTERM":
        assert "stopped with" in first_log and "in the spool" in first_log
    # aiokafka's outage flood is throttled to one line per 5 s in each hook process
    runs = _aiokafka_lines(log_path.read_text())
    print(f"aiokafka lines per hook run: {[len(r) for r in runs]}")
    for run in runs:
        gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(run)]
        assert all(g >= 4.9 for g in gaps), f"aiokafka lines closer than 5 s: {gaps}"
