"""`relayguard lock / locks / unlock` against the real broker."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
from click.testing import CliRunner

from relayguard.foundation.settings import Settings
from relayguard.foundation.topics import ensure_topics, standard_topics
from relayguard.relay.lock_follower import LockFollower
from relayguard.roof.cli import main
from relayguard.stream import codec
from relayguard.stream.records import SendEvent
from tests.fixtures.worker import StartWorker
from tests.kafka_helpers import produce

pytestmark = pytest.mark.integration


def test_lock_list_unlock(kafka_settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    asyncio.run(ensure_topics(kafka_settings.bootstrap_servers, standard_topics(kafka_settings)))
    monkeypatch.setenv("RELAYGUARD_BOOTSTRAP_SERVERS", kafka_settings.bootstrap_servers)
    monkeypatch.setenv("RELAYGUARD_TOPICS__PREFIX", kafka_settings.topics.prefix)
    runner = CliRunner()

    def run(*args: str) -> str:
        result = runner.invoke(main, list(args), catch_exceptions=False)
        assert result.exit_code == 0, result.output
        return result.output

    assert "0 active lock(s)" in run("locks")
    assert "locked user mallory@example.com" in run(
        "lock", "mallory@example.com", "--reason", "abuse desk ticket 42")
    assert "locked ip 192.0.2.66" in run("lock", "192.0.2.66", "--ip", "--ttl", "600",
                                         "--reason", "scanner")
    listing = run("locks")
    assert "mallory@example.com" in listing and "until unlocked" in listing
    assert "192.0.2.66" in listing and "2 active lock(s)" in listing
    assert "unlocked user mallory@example.com" in run(
        "unlock", "mallory@example.com", "--reason", "password reset")
    listing = run("locks")
    assert "mallory@example.com" not in listing and "1 active lock(s)" in listing


# ---- the operator's view against a real worker and a real relay lock follower ----------------

def _cli(settings: Settings, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "RELAYGUARD_BOOTSTRAP_SERVERS": settings.bootstrap_servers,
           "RELAYGUARD_TOPICS__PREFIX": settings.topics.prefix}
    return subprocess.run([sys.executable, "-m", "relayguard", *args], capture_output=True,
                          text=True, timeout=timeout, env=env)


def _json(settings: Settings, *args: str) -> Any:
    run = _cli(settings, *args, "--json")
    assert run.returncode == 0, run.stderr
    return orjson.loads(run.stdout)


async def _wait(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        await asyncio.sleep(0.5)


async def test_locks_relays_and_audit_with_a_worker_and_a_relay(
        start_worker: StartWorker) -> None:
    w = start_worker(
        RELAYGUARD_POLICY=orjson.dumps({"detectors": {"volume": {"ttl_seconds": 4}}}).decode(),
        RELAYGUARD_EXPIRY_CHECK_SECONDS="1",
    )
    s = w.settings
    spammer, victim = f"spam-{uuid.uuid4().hex[:6]}@example.com", "192.0.2.77"
    # relay-follows applies and acks every lock; relay-stale publishes events, never follows.
    follower = LockFollower(s.bootstrap_servers, s.topics.locks, s.topics.lock_acks,
                            "relay-follows")
    await follower.start()
    try:
        assert await follower.ready(30)
        now = time.time()
        await produce(s.bootstrap_servers, s.topics.events, [
            (spammer.encode(), codec.encode_event(SendEvent(
                str(uuid.uuid4()), now + i, "relay-follows" if i % 2 else "relay-stale",
                spammer, "192.0.2.3", spammer, 1, 100))) for i in range(12)])
        await _wait(lambda: any(c.subject == spammer for c in follower.book.active(time.time())),
                    40, "the worker's lock to reach the relay")
        assert "locked ip 192.0.2.77" in _cli(s, "lock", victim, "--ip", "--reason",
                                              "scanner, ticket 7").stdout
        await _wait(lambda: any(c.subject == victim for c in follower.book.active(time.time())),
                    20, "the operator's lock to reach the relay")

        listing = _json(s, "locks")
        mine = {e["subject"]: e for e in listing["locks"]}
        assert mine[victim]["acked_by"] == ["relay-follows"] and mine[victim]["acks"] == 1
        assert mine[victim]["slowest_ack_seconds"] >= 0
        text = _cli(s, "locks").stdout
        assert "acks 1/1 slowest" in text and victim in text

        # Let the throttle expire into an unlock that the relay applies, so no command is in
        # flight; then the follower must be caught up, the other relay behind.
        def events_for(subject: str, *extra: str) -> list[str]:
            return [r["event"] for r in _json(s, "audit", subject, *extra)["records"]]

        deadline = time.monotonic() + 30
        while events_for(spammer) != ["lock", "expiry"] and time.monotonic() < deadline:
            await asyncio.sleep(1)
        deadline = time.monotonic() + 20
        while True:
            relays = {r["relay_id"]: r for r in _json(s, "relays", "--grace", "0")["relays"]}
            if relays["relay-follows"]["following"] or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.5)  # its ack of the unlock may still be on its way
        assert relays["relay-follows"]["following"] is True, relays
        assert relays["relay-follows"]["last_ack"] and relays["relay-follows"]["last_event"]
        stale = relays["relay-stale"]
        assert stale["following"] is False and stale["last_ack"] is None
        assert stale["unacked_commands"] >= 2 and stale["behind_seconds"] > 0
        assert "BEHIND" in _cli(s, "relays", "--grace", "0").stdout

        # The throttle's expiry and an operator unlock: all kept in the audit trail.
        assert "unlocked ip 192.0.2.77" in _cli(s, "unlock", victim, "--ip", "--reason",
                                                "false positive").stdout
        trail = _json(s, "audit", spammer)["records"]
        assert [r["event"] for r in trail] == ["lock", "expiry"], w.process.tail_log()
        assert {r["source"] for r in trail} == {"worker"}
        assert trail[0]["detector"] == "volume" and trail[1]["detector"] == "policy.expiry"
        assert trail[1]["version"] > trail[0]["version"]
        ops = _json(s, "audit", victim, "--ip")["records"]
        assert [(r["event"], r["source"], r["reason"]) for r in ops] == [
            ("lock", "cli", "scanner, ticket 7"), ("unlock", "cli", "false positive")]
        assert ops[0]["issuer"].startswith("cli:") and ops[0]["command_id"]
        everything = _cli(s, "audit", "--since", "10m").stdout
        expiry_line = next(ln for ln in everything.splitlines() if " expiry " in ln)
        assert f"expiry user:{spammer} by relayguard-worker:" in expiry_line
        assert "via worker [policy.expiry]" in expiry_line
        assert "4 audit record(s)" in everything
        assert _json(s, "audit", spammer, "--since", "2026-01-01T00:00:00Z")["count"] == 2
    finally:
        await follower.stop()


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_every_failure_is_one_clear_line(tmp_path: Path) -> None:
    """Unreachable Kafka, bad subjects, bad options: one line on stderr, exit != 0, through the
    real CLI. Run side by side to keep the test short."""
    unreachable = Settings(bootstrap_servers=f"127.0.0.1:{_closed_port()}")
    cases: dict[tuple[str, ...], str] = {
        ("locks",): "cannot reach Kafka at 127.0.0.1:",
        ("locks", "--json"): "cannot reach Kafka at 127.0.0.1:",
        ("relays",): "cannot reach Kafka at 127.0.0.1:",
        ("audit", "bob@example.com"): "cannot reach Kafka at 127.0.0.1:",
        ("lock", "bob@example.com", "--reason", "x"): "cannot reach Kafka at 127.0.0.1:",
        ("unlock", "192.0.2.1", "--ip", "--reason", "x"): "cannot reach Kafka at 127.0.0.1:",
        ("lock", "not-an-ip", "--ip", "--reason", "x"): "is not an IPv4 or IPv6 address",
        ("audit", "999.1.1.1", "--ip"): "is not an IPv4 or IPv6 address",
        ("lock", "", "--reason", "x"): "the user is empty",
        ("unlock", "u" * 400, "--reason", "x"): "at most 320 allowed",
        ("lock", "bob", "--reason", "x", "--ttl", "-5"): "Invalid value for '--ttl'",
        ("locks", "--bogus"): "No such option: --bogus",
        ("relays", "--since", "banana"): "neither a duration nor an RFC 3339 time",
        ("audit", "--max-records", "0"): "Invalid value for '--max-records'",
        ("replay", str(tmp_path / "missing.jsonl")): "does not exist",
    }
    env = {**os.environ, "RELAYGUARD_BOOTSTRAP_SERVERS": unreachable.bootstrap_servers}
    procs = {args: subprocess.Popen([sys.executable, "-m", "relayguard", *args], env=env,
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for args in cases}
    for args, proc in procs.items():
        out, err = proc.communicate(timeout=90)
        lines = [line for line in err.splitlines() if line.strip()]
        assert proc.returncode != 0, (args, out, err)
        assert len(lines) == 1 and "Traceback" not in err, (args, err)
        assert cases[args] in lines[0], (args, err)
