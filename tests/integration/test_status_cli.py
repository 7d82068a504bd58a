"""`relayguard status` against the real broker and two real workers in one group: the worker
asked forwards to the one owning the subject's partition; the report shows counters against
limits, the last location with its time, the lock with a real relay's ack, and the findings."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import pytest
from aiokafka.partitioner import murmur2

from relayguard.relay.lock_follower import LockFollower
from relayguard.stream import codec
from relayguard.stream.records import LoginEvent, SendEvent
from tests.fixtures.worker import RunningWorker, StartWorker
from tests.kafka_helpers import produce

pytestmark = pytest.mark.integration
PARTITIONS = 2


def partition(key: str) -> int:
    """The events topic's partition for `key` (aiokafka's default partitioner, as relays use)."""
    return int(murmur2(key.encode()) & 0x7FFFFFFF) % PARTITIONS


def users_on_each_partition() -> tuple[str, str]:
    tag = uuid.uuid4().hex[:6]
    names = [f"st{i}-{tag}@example.com" for i in range(64)]
    first = next(n for n in names if partition(n) == 0)
    return first, next(n for n in names if partition(n) == 1)


def cli(w: RunningWorker, tmp: Path, *args: str, worker_url: str | None = None,
        bootstrap: str | None = None) -> tuple[int, str, str]:
    env = {**os.environ, "RELAYGUARD_BOOTSTRAP_SERVERS": bootstrap or w.bootstrap,
           "RELAYGUARD_TOPICS__PREFIX": w.settings.topics.prefix,
           "RELAYGUARD_DATA_DIR": str(tmp)}
    url = worker_url or w.process.url
    proc = subprocess.run([sys.executable, "-m", "relayguard", "status", *args, "--worker", url],
                          env=env, capture_output=True, text=True, timeout=60)
    return proc.returncode, proc.stdout, proc.stderr


def both_ready(workers: list[RunningWorker]) -> bool:
    return all(w.process.status("/ready") == 200 for w in workers)


LAST: dict[str, Any] = {}


async def wait_for(check: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = await asyncio.to_thread(check)
        if got:
            return got
        await asyncio.sleep(0.5)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}; last: "
                         f"{LAST.get('seen')!r}")


def api(w: RunningWorker, kind: str, subject: str) -> tuple[int, dict[str, Any]]:
    try:
        with urllib.request.urlopen(f"{w.process.url}/api/status/{kind}/{subject}",
                                    timeout=10) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


async def test_status_routed_between_two_workers_with_lock_acks_and_findings(
        start_worker: StartWorker, tmp_path: Path) -> None:
    tag = uuid.uuid4().hex[:8]
    a = await asyncio.to_thread(start_worker, tag, RELAYGUARD_PARTITIONS=str(PARTITIONS))
    b = await asyncio.to_thread(start_worker, tag, RELAYGUARD_PARTITIONS=str(PARTITIONS))
    workers = [a, b]
    await wait_for(lambda: both_ready(workers), 90, "both workers ready after the rebalance")

    spammer, traveller = users_on_each_partition()
    attacker_ip = "203.0.113.50"
    now = time.time()
    events: list[tuple[bytes, bytes]] = []
    # spammer: logs in from Berlin, then 12 messages in 12 s (limit 10/minute): throttle
    login = LoginEvent(str(uuid.uuid4()), now - 30, "relay-st", spammer, "192.0.2.20", True,
                       "TLSv1.3", "PLAIN")
    events.append((spammer.encode(), codec.encode_event(login)))
    for i in range(12):
        ev = SendEvent(str(uuid.uuid4()), now - 12 + i, "relay-st", spammer, "192.0.2.20",
                       spammer, 3, 2048)
        events.append((spammer.encode(), codec.encode_event(ev)))
    # traveller (the other partition): Berlin, then Sydney ten minutes later: locked
    for t, ip in ((now - 600, "192.0.2.21"), (now - 1, "198.51.100.7")):
        ev2 = LoginEvent(str(uuid.uuid4()), t, "relay-st", traveller, ip, True, "TLSv1.3",
                         "PLAIN")
        events.append((traveller.encode(), codec.encode_event(ev2)))
    # attacker IP: 8 failed logins in 4 s against different users (burst limit 5 in 10 s)
    for i in range(8):
        ev3 = LoginEvent(str(uuid.uuid4()), now - 4 + i * 0.5, "relay-st", f"v{i}@example.com",
                         attacker_ip, False, "TLSv1.3", "PLAIN", "bad_credentials")
        events.append((f"v{i}@example.com".encode(), codec.encode_event(ev3)))

    follower = LockFollower(a.bootstrap, a.topics.locks, a.topics.lock_acks, "relay-status-it",
                            retry_interval=0.5)
    await follower.start()
    try:
        assert await follower.ready(timeout=30), "lock follower did not catch up"
        await produce(a.bootstrap, a.topics.events, events)
        for kind, subject in (("user", spammer), ("user", traveller), ("ip", attacker_ip)):
            await wait_for(lambda k=kind, s=subject: follower.book.is_locked(k, s, time.time()),
                           60, f"the relay to enforce a lock on {kind} {subject}")

        # the API: asked at worker A, both users are answered, each by the worker owning it
        docs = {}
        for user in (spammer, traveller):
            code, doc = await asyncio.to_thread(api, a, "user", user)
            assert code == 200, doc
            docs[user] = doc
        urls = {a.process.url, b.process.url}
        served = {doc["served_by"].rstrip("/") for doc in docs.values()}
        assert served == urls, (served, a.process.tail_log(), b.process.tail_log())
        routed = [d for d in docs.values() if d["routed_from"]]
        assert len(routed) == 1 and routed[0]["routed_from"].rstrip("/") == a.process.url
        assert all(d["known"] for d in docs.values())  # the owner had the state

        # the CLI, user: counters against limits, location with time, lock with its ack
        def user_report() -> tuple[int, str, str] | None:
            r = LAST["seen"] = cli(a, tmp_path, spammer)
            return r if r[0] == 0 and "acked by 1 relay(s)" in r[1] else None

        code, out, err = await wait_for(user_report, 60, "the relay's ack in the status")
        assert "messages_1m" in out and "12 / 10" in out and "OVER" in out, out
        assert "recipients_1h" in out and "36 / 500" in out, out
        assert "worker's lock state: locked (throttle" in out, out
        assert "lock ACTIVE" in out and "relay-status-it" in out, out
        assert "last login" in out and "from 192.0.2.20 (Berlin, DE)" in out, out
        assert "volume" in out.split("recent findings")[1], out
        assert "lock history: " in out and " lock    by relayguard-worker" in out, out

        # the API with ?kafka=1 gives the same extras, whichever worker is asked
        for w in (a, b):
            code, full = await asyncio.to_thread(api, w, "user", f"{spammer}?kafka=1&scan=500")
            assert code == 200 and full["served_by"] == docs[spammer]["served_by"], full
            assert [x["relay_id"] for x in full["acks"]] == ["relay-status-it"], full
            assert full["lock_command"]["detector"] == "volume" and full["lock_active"]
            assert full["findings"][0]["detector"] == "volume"
            assert full["scan_per_partition"] == 500
        code, body = await asyncio.to_thread(api, a, "user", f"{spammer}?kafka=1&scan=0")
        assert code == 400 and "scan" in body["error"]

        code, out, err = await asyncio.to_thread(cli, a, tmp_path, traveller, "--json")
        assert code == 0, err
        doc = json.loads(out)
        st = doc["status"]
        last = st["detectors"]["impossible_travel"]["last_login"]
        assert (last["city"], last["ip"]) == ("Sydney", "198.51.100.7")
        assert abs(last["time"]["epoch"] - (now - 1)) < 0.01
        assert doc["lock_command"]["detector"] == "impossible_travel" and doc["lock_active"]
        assert [x["relay_id"] for x in doc["acks"]] == ["relay-status-it"]
        assert doc["acks"][0]["after_seconds"] >= 0
        assert any(f["detector"] == "impossible_travel" for f in doc["findings"])
        history = doc["lock_history"]
        assert history["available"] is True, history
        assert any(r["event"] == "lock" and r["detector"] == "impossible_travel"
                   for r in history["records"]), history

        # the CLI, --ip, asked at worker B this time
        def ip_report() -> tuple[int, str, str] | None:
            r = LAST["seen"] = cli(a, tmp_path, attacker_ip, "--ip", "--json",
                                   worker_url=b.process.url)
            return r if r[0] == 0 and json.loads(r[1])["acks"] else None

        code, out, err = await wait_for(ip_report, 60, "the IP lock's ack in the status")
        doc = json.loads(out)
        burst = {c["name"]: c for c in doc["status"]["detectors"]["auth_failures_ip"]["counters"]}
        assert burst["burst"]["limit"] == 5 and burst["burst"]["count"] >= 0
        assert burst["sustained"]["count"] == 8 and burst["sustained"]["limit"] == 15
        assert doc["status"]["lock"]["active"] and doc["lock_command"]["subject"] == attacker_ip
        assert doc["findings"] and all(f["subject"] == attacker_ip for f in doc["findings"])
        code, out, err = await asyncio.to_thread(cli, a, tmp_path, attacker_ip, "--ip")
        assert code == 0 and f"ip {attacker_ip}" in out and "auth_failures_ip:" in out, err

        # an unseen user: a clear answer, not an error
        code, out, err = await asyncio.to_thread(cli, a, tmp_path, f"nobody-{tag}@example.com")
        assert code == 0 and "no state for this subject" in out and "none" in out, err
    finally:
        await follower.stop()


async def test_status_fails_in_one_line_without_worker_or_with_bad_subject(
        worker: RunningWorker, tmp_path: Path) -> None:
    from relayguard.roof.broker.config import free_port

    dead = f"http://127.0.0.1:{free_port()}"
    no_kafka = f"127.0.0.1:{free_port()}"
    for args, url, kafka, words in (
        (("alice@example.com",), dead, None, "no worker answered"),
        (("not-an-ip", "--ip"), worker.process.url, None, "is not an IP address"),
        (("a" * 400,), worker.process.url, None, "bad subject"),
        (("alice@example.com",), worker.process.url, no_kafka, f"Kafka at {no_kafka}"),
    ):
        code, out, err = await asyncio.to_thread(cli, worker, tmp_path, *args, worker_url=url,
                                                 bootstrap=kafka)
        lines = [ln for ln in err.splitlines() if " INFO " not in ln]
        assert code == 2 and out == "", (out, err)
        assert len(lines) == 1 and words in lines[0] and "Traceback" not in err, err
    # --no-kafka: the worker's view alone, with Kafka unreachable
    code, out, err = await asyncio.to_thread(cli, worker, tmp_path, "alice@example.com",
                                             "--no-kafka", "--json", bootstrap=no_kafka)
    assert code == 0 and json.loads(out)["status"]["subject"] == "alice@example.com", err
    # the API refuses a bad subject itself too
    code, body = await asyncio.to_thread(api, worker, "ip", "not-an-ip")
    assert code == 400 and "not an IP address" in body["error"]
    code, body = await asyncio.to_thread(api, worker, "group", "x")
    assert code == 400
