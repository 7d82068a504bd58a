"""Real Postfix 3.x + Dovecot + swaks on loopback with relayguard's log follower attached: the
maillog becomes login events (success, bad password, backend outage), across a real rotation and
a restart, and the `tail` command publishes them to the real Kafka broker."""

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

from relayguard.foundation.settings import Settings
from relayguard.relay.checkpoint import CheckpointStore
from relayguard.relay.log_follower import LogFollower
from relayguard.relay.log_parser import LogParser
from relayguard.relay.tail_cli import local_zone
from relayguard.stream.records import Event, LoginEvent
from tests.e2e.postfix_env import PostfixEnv
from tests.kafka_helpers import make_topics, read_events

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
    await postfix_env.swaks_until("alice", 0, timeout=10)


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
    # `relayguard hook tail ...` (the hook group as mounted in relayguard's CLI)
    cmd = [sys.executable, "-c", "from relay.hook_cli import hook; hook()", "tail",
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
        recs = await read_events(s.bootstrap_servers, s.topics.events, want=2, timeout=30,
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
