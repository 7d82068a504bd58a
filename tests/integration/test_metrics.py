"""Metrics end to end: a real worker, a real `relayguard hook postfix` following its lock topic,
and a sending burst through the hook's policy service that gets the user throttled.

Both /metrics pages must parse with prometheus_client's parser and show the latency
histograms with observations, the consumer lag per partition, and the hook's counters; the
Grafana dashboard and the alert rules may only name series that these pages really have."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from prometheus_client.metrics_core import Metric

from relayguard.roof.broker.config import free_port
from tests.fixtures.worker import RunningWorker, StartWorker
from tests.integration.hook_process import (
    RELAYGUARD,
    answers,
    ask,
    policy_request,
    start_hook,
    stop,
)
from tests.metrics_text import families, metric_names, scrape, value

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
RELAY = "relay-metrics"


def _poll(fetch: Callable[[], str | None], cond: Callable[[dict[str, Metric]], bool],
          timeout: float, what: str, log: Callable[[], str]) -> dict[str, Metric]:
    deadline = time.monotonic() + timeout
    fams: dict[str, Metric] = {}
    while time.monotonic() < deadline:
        text = fetch()
        if text is not None:
            fams = families(text)
            if cond(fams):
                return fams
        time.sleep(0.3)
    raise AssertionError(f"not within {timeout}s: {what}\n{log()}")


def _count(fams: dict[str, Metric], family: str, **labels: str) -> float:
    return value(fams, f"{family}_count", **labels) or 0.0


def test_worker_and_hook_metrics_after_an_attack(start_worker: StartWorker,
                                                 tmp_path: Path) -> None:
    w: RunningWorker = start_worker()
    policy_port, metrics_port = free_port(), free_port()
    log_path = tmp_path / "hook.log"
    env = {"RELAYGUARD_BOOTSTRAP_SERVERS": w.bootstrap,
           "RELAYGUARD_TOPICS__PREFIX": w.topics.prefix, "RELAYGUARD_DATA_DIR": str(tmp_path)}
    hook = start_hook(["--listen", f"inet:127.0.0.1:{policy_port}", "--relay-id", RELAY,
                       "--metrics-listen", f"127.0.0.1:{metrics_port}"], env, log_path)
    hook_url = f"http://127.0.0.1:{metrics_port}/metrics"

    def hook_log() -> str:
        return log_path.read_text(errors="replace")[-3000:]

    try:
        hook_fams = _poll(lambda: scrape(hook_url) if answers(policy_port) else None,
                          lambda f: value(f, "relayguard_hook_lock_follower_ready") == 1, 60,
                          "hook answering and caught up with the lock topic", hook_log)
        assert value(hook_fams, "relayguard_hook_info", relay_id=RELAY) == 1

        # The attack: 12 messages in a few seconds through the policy service (10/min allowed).
        user = f"burst-{uuid.uuid4().hex[:6]}"
        burst_at = time.time()
        for i in range(12):
            reply = ask(policy_port, policy_request(user, "END-OF-MESSAGE", f"Q{i}", f"m.{i}"))
            assert reply == b"action=DUNNO\n\n"

        worker_fams = _poll(
            lambda: w.process.get("/metrics"),
            lambda f: _count(f, "relayguard_worker_lock_to_ack_seconds", action="lock",
                             ack="last") >= 1,
            90, "the worker timing the hook's ack of the lock", w.process.tail_log)
        reply = ask(policy_port, policy_request(user, "RCPT", "Q99", "m.99"))
        assert reply.startswith(b"action=DEFER"), reply  # the volume detector throttles

        # The lag gauge is refreshed every few seconds: wait for both events partitions.
        worker_fams = _poll(
            lambda: w.process.get("/metrics"),
            lambda f: {s.labels["partition"] for s in f["relayguard_worker_consumer_lag"].samples
                       if s.labels["topic"] == "events"} == {"0", "1"},
            30, "consumer lag for both events partitions", w.process.tail_log)
        hook_fams = _poll(lambda: scrape(hook_url),
                          lambda f: (value(f, "relayguard_hook_events_sent_total",
                                           path="direct") or 0) >= 12, 30,
                          "the hook's 12 send events acknowledged by Kafka", hook_log)
    finally:
        stop(hook)

    # ---- the worker ------------------------------------------------------------------------
    m = "relayguard_worker_"
    assert _count(worker_fams, m + "event_to_lock_seconds", action="lock") >= 1
    assert _count(worker_fams, m + "lock_to_ack_seconds", action="lock", ack="first") >= 1
    assert _count(worker_fams, m + "lock_to_ack_seconds", action="lock", ack="last") >= 1
    # The hook sends batch records by default: one timing per Kafka record, 12 events in all.
    assert _count(worker_fams, m + "event_processing_seconds", topic="events") >= 1
    assert value(worker_fams, m + "events_total", outcome="processed") == 12
    # seconds from the burst's events to the lock: a few at most here, never an hour
    # from the burst's event times to the lock: within what this test waited, not from 1970
    waited = time.time() - burst_at
    took = value(worker_fams, m + "event_to_lock_seconds_sum", action="lock")
    assert took is not None and 0 <= took <= waited
    first = value(worker_fams, m + "lock_to_ack_seconds_sum", action="lock", ack="first")
    print(f"\nmeasured: event->lock {took:.3f}s, lock->first ack {first:.3f}s")  # with -s
    lags = {s.labels["partition"]: s.value for s in worker_fams[m + "consumer_lag"].samples
            if s.labels["topic"] == "events"}
    assert all(v >= 0 for v in lags.values()), lags
    assert value(worker_fams, m + "lock_commands_total", action="lock") == 1
    assert value(worker_fams, m + "lock_acks_total", outcome="read") is not None
    assert worker_fams[m + "dead_letters"].type == "counter"  # by reason, none here

    # ---- the hook --------------------------------------------------------------------------
    h = "relayguard_hook_"
    assert (value(hook_fams, h + "policy_requests_total", action="DUNNO") or 0) >= 12
    assert value(hook_fams, h + "policy_requests_total", action="DEFER") == 1
    assert (value(hook_fams, h + "events_accepted_total") or 0) >= 12
    assert value(hook_fams, h + "events_refused_total", reason="spool_full") == 0
    assert value(hook_fams, h + "lock_book_subjects") == 1
    assert value(hook_fams, h + "lock_book_active") == 1
    assert value(hook_fams, h + "lock_commands_applied_total") == 1
    assert value(hook_fams, h + "lock_topic_lag", partition="0") == 0
    age = value(hook_fams, h + "lock_last_applied_age_seconds")
    assert age is not None and 0 <= age <= waited
    assert value(hook_fams, h + "spool_bytes") is not None
    assert value(hook_fams, h + "spool_records") is not None
    assert value(hook_fams, h + "producer_state", state="ok") == 1

    # ---- deploy/: every series the dashboard and the rules name exists on these pages -----
    known: set[str] = set()
    for name in [*worker_fams, *hook_fams]:
        known |= metric_names(name)
    named = _series_in(_dashboard_exprs()) | _series_in(_rule_exprs())
    assert named, "no relayguard series found in deploy/"
    assert named <= known, f"named in deploy/ but not exposed: {sorted(named - known)}"


def _dashboard_exprs() -> list[str]:
    board = json.loads((ROOT / "deploy/grafana/relayguard.json").read_text())
    return [t["expr"] for p in board["panels"] for t in p.get("targets", [])]


def _rule_exprs() -> list[str]:
    rules = yaml.safe_load((ROOT / "deploy/prometheus/relayguard-alerts.yml").read_text())
    return [r["expr"] for g in rules["groups"] for r in g["rules"]]


def _series_in(exprs: list[str]) -> set[str]:
    return {n for e in exprs for n in re.findall(r"\brelayguard_(?:worker|hook)_[a-z_]+", e)}


def test_hook_metrics_port_taken_is_one_clear_line(tmp_path: Path) -> None:
    """A --metrics-listen port already in use ends the hook with one line, not a traceback."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        taken = s.getsockname()[1]
        proc = subprocess.run(
            [RELAYGUARD, "hook", "postfix", "--listen", f"inet:127.0.0.1:{free_port()}",
             "--bootstrap", "127.0.0.1:1", "--metrics-listen", f"127.0.0.1:{taken}"],
            capture_output=True, text=True, timeout=60,
            env={**os.environ, "RELAYGUARD_DATA_DIR": str(tmp_path)})
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr, proc.stderr
    assert f"cannot serve metrics on 127.0.0.1:{taken}" in proc.stderr, proc.stderr
