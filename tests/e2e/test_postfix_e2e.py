"""Real Postfix 3.x + Dovecot + swaks on loopback, with relayguard's relay side attached:
the log follower turns the maillog into login events; the policy server (fed by the lock
follower from Kafka) refuses locked users; send events and login events reach Kafka."""

from __future__ import annotations

import asyncio
import base64
import os
import signal
import smtplib
import ssl
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import orjson
import pytest

from relay.checkpoint import CheckpointStore
from relay.lock_follower import LockFollower
from relay.log_follower import LogFollower
from relay.log_parser import LogParser
from relay.policy_protocol import DecisionConfig
from relay.policy_server import ListenAddress, PolicyServer
from relay.producer import EventProducer
from relay.tail_cli import local_zone
from relayguard.settings import Settings
from stream.records import Event, LoginEvent
from tests.e2e.postfix_env import PostfixEnv
from tests.fixtures.worker import RunningWorker
from tests.integration.relay_helpers import lock_cmd, make_topics, produce_locks, read_all

pytestmark = pytest.mark.e2e
REPO = Path(__file__).resolve().parents[2]


class ListPublisher:
    def __init__(self) -> None:
        self.events: list[Event] = []

    async def publish(self, event: Event) -> bool:
        self.events.append(event)
        return True


def log_follower(env: PostfixEnv, tmp_path: Path) -> tuple[LogFollower, ListPublisher]:
    pub = ListPublisher()
    f = LogFollower([env.dovecot_log, env.maillog], LogParser("relay-e2e", tz=local_zone()), pub,
                    CheckpointStore(tmp_path / "ckpt"), from_end=True)
    f.restore()  # only what happens from now on
    return f, pub


async def wait_for_login(f: LogFollower, pub: ListPublisher, env: PostfixEnv,
                         match: Callable[[LoginEvent], bool], timeout: float = 15
                         ) -> LoginEvent:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        await f.poll_once()
        for e in pub.events:
            if isinstance(e, LoginEvent) and match(e):
                return e
        await asyncio.sleep(0.2)
    raise AssertionError(f"no matching login event within {timeout}s; got {pub.events}\n"
                         + env.maillog_text()[-3000:])


async def test_authenticated_send_is_a_success_login(postfix_env: PostfixEnv,
                                                     tmp_path: Path) -> None:
    f, pub = log_follower(postfix_env, tmp_path)
    await postfix_env.swaks_async("alice", postfix_env.users["alice"], expect=0)
    e = await wait_for_login(f, pub, postfix_env, lambda e: e.user == "alice" and e.success)
    assert (e.client_ip, e.sasl_mechanism, e.tls_protocol) == ("127.0.0.1", "PLAIN", "TLSv1.3")
    assert (e.source, e.relay_id, e.failure_reason) == ("postfix-log", "relay-e2e", None)
    assert abs(e.event_time - time.time()) < 120
    f.close()


async def test_wrong_password_is_a_failure_login(postfix_env: PostfixEnv,
                                                 tmp_path: Path) -> None:
    f, pub = log_follower(postfix_env, tmp_path)
    await postfix_env.swaks_async("alice", "not-her-password", expect=28)
    e = await wait_for_login(f, pub, postfix_env, lambda e: not e.success)
    assert (e.user, e.client_ip, e.failure_reason) == ("alice", "127.0.0.1", "bad_credentials")
    assert e.tls_protocol == "TLSv1.3" and e.sasl_mechanism == "PLAIN"
    await postfix_env.swaks_async("nobody-here", "x", expect=28)
    e = await wait_for_login(f, pub, postfix_env, lambda e: e.user == "nobody-here")
    assert not e.success
    # Dovecot says "unknown user"; the refinement needs its line read before Postfix's.
    assert e.failure_reason in ("unknown_user", "bad_credentials")
    f.close()


def _auth_plain_after_ehlo(env: PostfixEnv, user: str, password: str,
                           between: Callable[[], None]) -> tuple[int, bytes]:
    """STARTTLS + EHLO (smtpd talks to Dovecot), run `between`, then AUTH PLAIN."""
    ctx = ssl.create_default_context()
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    with smtplib.SMTP("127.0.0.1", env.submission_port, timeout=30) as c:
        c.ehlo()
        c.starttls(context=ctx)
        c.ehlo()
        between()
        token = base64.b64encode(f"\0{user}\0{password}".encode()).decode()
        return c.docmd("AUTH", "PLAIN " + token)


async def test_backend_outage_is_not_a_bad_password(postfix_env: PostfixEnv,
                                                   tmp_path: Path) -> None:
    f, pub = log_follower(postfix_env, tmp_path)
    try:
        code, text = await asyncio.to_thread(
            _auth_plain_after_ehlo, postfix_env, "alice", postfix_env.users["alice"],
            postfix_env.stop_dovecot)
        assert code == 454, text
        e = await wait_for_login(f, pub, postfix_env, lambda e: not e.success)
        # Postfix 3.7.11 logs "sasl_username=(unavailable)" here: no user, not a guess.
        assert (e.failure_reason, e.user, e.client_ip) == ("backend_unavailable", None,
                                                           "127.0.0.1")
    finally:
        postfix_env.start_dovecot()
        postfix_env.reload()  # smtpd processes that saw the outage fail their next AUTH once
        f.close()
    await _until_swaks(postfix_env, "alice", 0, timeout=10)


async def test_follower_survives_real_rotation_and_restart(postfix_env: PostfixEnv,
                                                          tmp_path: Path) -> None:
    env = postfix_env
    f, pub = log_follower(env, tmp_path)
    await env.swaks_async("alice", env.users["alice"], expect=0)
    await wait_for_login(f, pub, env, lambda e: e.user == "alice")
    rotated = env.directory / f"maillog.{int(time.time() * 1000)}"
    env.maillog.rename(rotated)
    await f.poll_once()  # path gone: the follower keeps reading the renamed file
    # Postfix (postlogd) writes to the renamed file until it is reloaded.
    await env.swaks_async("bob", env.users["bob"], expect=0)
    await wait_for_login(f, pub, env, lambda e: e.user == "bob")
    env.reload()
    await env.swaks_async("carol", env.users["carol"], expect=0)
    await wait_for_login(f, pub, env, lambda e: e.user == "carol")
    f.close()
    # A restarted follower resumes from its checkpoint in the new file: nothing old again.
    f2 = LogFollower([env.dovecot_log, env.maillog], LogParser("relay-e2e", tz=local_zone()), pub,
                     CheckpointStore(tmp_path / "ckpt"), from_end=False)
    await env.swaks_async("alice", env.users["alice"], expect=0)
    await wait_for_login(f2, pub, env, lambda e: e.user == "alice" and e is not pub.events[0])
    f2.close()
    logins = [(e.user, e.success) for e in pub.events if isinstance(e, LoginEvent)]
    assert logins == [("alice", True), ("bob", True), ("carol", True), ("alice", True)]
    assert len({e.event_id for e in pub.events}) == 4


async def test_tail_command_publishes_login_events_to_kafka(
        postfix_env: PostfixEnv, kafka_settings: Settings, tmp_path: Path) -> None:
    s = kafka_settings
    await make_topics(s)
    ckpt = tmp_path / "ckpt"
    env = dict(os.environ, RELAYGUARD_TOPICS__PREFIX=s.topics.prefix,
               RELAYGUARD_DATA_DIR=str(tmp_path / "data"))
    cmd = [sys.executable, "-c", "from relay.tail_cli import tail; tail()",
           str(postfix_env.maillog), str(postfix_env.dovecot_log), "--relay-id", "relay-tail",
           "--bootstrap", s.bootstrap_servers, "--checkpoint-dir", str(ckpt), "--from-end",
           "--timezone", "local"]
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30  # it has started once its first checkpoints exist
        while len(list(ckpt.glob("tail-*.json"))) < 2:
            assert proc.poll() is None, proc.communicate()[0].decode()
            assert time.monotonic() < deadline, "tail wrote no checkpoint within 30 s"
            await asyncio.sleep(0.1)
        await postfix_env.swaks_async("bob", postfix_env.users["bob"], expect=0)
        await postfix_env.swaks_async("bob", "wrong", expect=28)
        recs = await read_all(s.bootstrap_servers, s.topics.events, want=2, timeout=30,
                              settle=1.0)
    finally:
        proc.send_signal(signal.SIGTERM)
        out = proc.communicate(timeout=30)[0].decode()
    assert proc.returncode == 0, out
    events = [orjson.loads(r.value) for r in recs]
    assert [(e["user"], e["success"]) for e in events] == [("bob", True), ("bob", False)], out
    assert all(r.key == b"bob" for r in recs)
    assert events[0]["relay_id"] == "relay-tail" and events[0]["type"] == "login"
    assert events[1]["failure_reason"] == "bad_credentials"


async def _until_swaks(env: PostfixEnv, user: str, code: int, timeout: float) -> float:
    """Send until swaks exits with `code`; seconds it took."""
    start = time.monotonic()
    while True:
        got, out = await env.swaks_async(user, env.users[user], expect=None)
        if got == code:
            return time.monotonic() - start
        if time.monotonic() - start > timeout:
            raise AssertionError(f"swaks still exits {got}, not {code}, after {timeout}s\n{out}")
        await asyncio.sleep(0.3)


async def test_policy_server_locks_and_unlocks_a_user(
        postfix_env: PostfixEnv, kafka_settings: Settings, tmp_path: Path) -> None:
    s = kafka_settings
    await make_topics(s)
    follower = LockFollower(s.bootstrap_servers, s.topics.locks, s.topics.lock_acks, "relay-e2e")
    producer = EventProducer(s.bootstrap_servers, s.topics.events, tmp_path / "spool")
    server = PolicyServer(ListenAddress("inet", "127.0.0.1", postfix_env.policy_port),
                          follower.book, DecisionConfig(reject_text="locked by e2e"),
                          "relay-e2e", publish=producer.publish_nowait)
    await follower.start()
    await producer.start()
    await server.start()
    try:
        assert await follower.ready(timeout=30), "lock follower did not catch up in 30 s"
        await postfix_env.swaks_async("carol", postfix_env.users["carol"], expect=0)
        recs = await read_all(s.bootstrap_servers, s.topics.events, want=1, settle=0.5)
        sends = [orjson.loads(r.value) for r in recs]
        assert [(e["type"], e["user"]) for e in sends] == [("send", "carol")]
        assert sends[0]["recipient_count"] == 1 and sends[0]["tls_protocol"] == "TLSv1.3"

        await produce_locks(s.bootstrap_servers, s.topics.locks, [lock_cmd("carol", 1)])
        took = await _until_swaks(postfix_env, "carol", 24, timeout=10)  # 24: RCPT refused
        print(f"lock command -> first refused send: {took:.2f} s")
        _, out = await postfix_env.swaks_async("carol", postfix_env.users["carol"], expect=24)
        assert "554 5.7.1 " in out and "Recipient address rejected: locked by e2e" in out
        await postfix_env.swaks_async("alice", postfix_env.users["alice"], expect=0)

        await produce_locks(s.bootstrap_servers, s.topics.locks,
                            [lock_cmd("carol", 2, action="unlock")])
        took = await _until_swaks(postfix_env, "carol", 0, timeout=10)
        print(f"unlock command -> first accepted send: {took:.2f} s")
    finally:
        await server.stop()
        await producer.stop()
        await follower.stop()


async def test_wrong_passwords_lock_the_user_through_the_worker(
        postfix_env: PostfixEnv, worker: RunningWorker, tmp_path: Path) -> None:
    """maillog -> log follower -> Kafka -> worker (auth_failures) -> lock command -> lock
    follower -> policy server -> Postfix refuses the user even with the right password."""
    env, t = postfix_env, worker.topics
    producer = EventProducer(worker.bootstrap, t.events, tmp_path / "spool")
    parser = LogParser("relay-e2e", tz=local_zone())
    tail = LogFollower([env.dovecot_log, env.maillog], parser, producer,
                       CheckpointStore(tmp_path / "ckpt"), from_end=True, poll_interval=0.1)
    tail.restore()
    locks = LockFollower(worker.bootstrap, t.locks, t.lock_acks, "relay-e2e")
    server = PolicyServer(ListenAddress("inet", "127.0.0.1", env.policy_port), locks.book,
                          DecisionConfig(), "relay-e2e", publish=producer.publish_nowait)
    await producer.start()
    await locks.start()
    await server.start()
    tail_task = asyncio.create_task(tail.run())
    try:
        assert await locks.ready(timeout=30), "lock follower did not catch up in 30 s"
        await env.swaks_async("dave", env.users["dave"], expect=0)
        for i in range(6):
            await env.swaks_async("dave", f"guess-{i}", expect=28)
        took = await _until_swaks(env, "dave", 24, timeout=60)  # right password, RCPT refused
        print(f"6th wrong password -> refused send: {took:.2f} s")
        _, out = await env.swaks_async("dave", env.users["dave"], expect=24)
        assert "4.7.1" in out  # auth_failures throttles (DEFER) rather than locking for good
        await env.swaks_async("alice", env.users["alice"], expect=0)  # nobody else is hit
    finally:
        tail.stop()
        await asyncio.wait_for(tail_task, 10)
        tail.close()
        await server.stop()
        await locks.stop()
        await producer.stop()
