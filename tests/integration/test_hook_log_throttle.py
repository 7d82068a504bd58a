"""`relayguard hook postfix` whose broker dies: aiokafka's reconnect errors (tens a second
without the throttle) come out at most one line per 5 s, each saying how many were suppressed
meanwhile. Kills a LocalBroker of its own."""

from __future__ import annotations

import asyncio
import itertools
import re
import signal
from pathlib import Path

import pytest

from relayguard.foundation.settings import Settings
from relayguard.roof.broker.config import free_port
from relayguard.roof.broker.server import LocalBroker
from tests.integration.hook_process import (
    answers,
    ask,
    policy_request,
    start_hook,
    stop,
    wait_until,
)
from tests.integration.test_hook_outage_stop import _aiokafka_lines
from tests.kafka_helpers import make_topics

pytestmark = pytest.mark.integration
SUPPRESSED = re.compile(r"\[(\d+) similar line\(s\) from aiokafka suppressed\]")


def _suppressed(text: str) -> int:
    return sum(int(n) for n in SUPPRESSED.findall(text))


def test_aiokafka_flood_is_one_line_per_five_seconds(kafka_bootstrap: str,
                                                      tmp_path: Path) -> None:
    # kafka_bootstrap: the session fixture fetched the jars; this test kills its own broker
    broker = LocalBroker(data_dir=tmp_path / "kafka", port=free_port())
    broker.start(120)
    asyncio.run(make_topics(Settings(bootstrap_servers=broker.bootstrap)))
    policy_port = free_port()
    log_path = tmp_path / "hook.log"
    hook = start_hook(["--listen", f"inet:127.0.0.1:{policy_port}", "--relay-id", "relay-quiet",
                       "--bootstrap", broker.bootstrap, "--ready-timeout", "5"],
                      {"RELAYGUARD_DATA_DIR": str(tmp_path / "data")}, log_path)
    try:
        wait_until(lambda: answers(policy_port), 60, "hook answers", hook, log_path)
        # one send event, so the producer connects too (it does so at its first send)
        assert ask(policy_port, policy_request("alice", "END-OF-MESSAGE")) == \
            b"action=DUNNO\n\n"
        wait_until(lambda: "connected to Kafka" in log_path.read_text(), 60,
                   "hook's producer connected to Kafka", hook, log_path)
        broker.stop(0.1)
        wait_until(lambda: _suppressed(log_path.read_text()) >= 20, 90,
                   "aiokafka lines suppressed during the outage", hook, log_path)
        hook.send_signal(signal.SIGTERM)
        assert hook.wait(60) == 0
    finally:
        stop(hook)
        broker.stop()
    text = log_path.read_text()
    (times,) = _aiokafka_lines(text)
    gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(times)]
    print(f"\n{len(times)} aiokafka lines logged, {_suppressed(text)} suppressed, over "
          f"{(times[-1] - times[0]).total_seconds():.0f} s")
    assert all(g >= 4.9 for g in gaps), f"aiokafka lines closer than 5 s: {gaps}"
