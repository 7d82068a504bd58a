"""Issue 9 items 2 and 4 on a real Postfix 3.x + Dovecot: authenticated sends whose recipients
a real next hop refuses (an smtp-sink answering RCPT with 5xx, another with 4xx) become `delivery`
events of the right user, read from the real maillog by the real `relayguard hook tail` process
and published to the real Kafka broker; and with Dovecot's auth_verbose_passwords = sha1:6 a
failed login event carries the truncated hash of the password tried. The core does not decode
delivery events on this branch, so the test reads what the relay published: the events topic.

A private Postfix instance (not the session one): its transport map sends bounce.test and
defer.test to the refusing sinks, which no other test should meet.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import orjson
import pytest

from relayguard.foundation.settings import Settings
from relayguard.roof.broker.config import free_port
from tests.e2e.postfix_env import HarnessError, PostfixEnv, _env, _wait_port, ensure_installed
from tests.kafka_helpers import EventRecord, collect_events, make_topics

pytestmark = pytest.mark.e2e
REPO = Path(__file__).resolve().parents[2]


@dataclass
class BounceEnv(PostfixEnv):
    """PostfixEnv plus two next hops that refuse every recipient: 550 for bounce.test, 450 for
    defer.test (smtp-sink -f / -r RCPT)."""

    hard_port: int = field(default_factory=free_port)
    soft_port: int = field(default_factory=free_port)
    _refusers: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def configure(self) -> None:
        super().configure()
        conf = self.directory / "dovecot.conf"  # issue 9 item 4: a truncated hash per failure
        conf.write_text(conf.read_text().replace(
            "auth_verbose = yes\n", "auth_verbose = yes\nauth_verbose_passwords = sha1:6\n"))
        transport = self.directory / "transport"
        transport.write_text(f"bounce.test smtp:[127.0.0.1]:{self.hard_port}\n"
                             f"defer.test smtp:[127.0.0.1]:{self.soft_port}\n")
        with (self.config_dir / "main.cf").open("a") as fh:
            fh.write(f"transport_maps = texthash:{transport}\n"
                     # one try per deferred message in the test's lifetime
                     "minimal_backoff_time = 600s\nmaximal_backoff_time = 1200s\n")

    def start(self) -> None:
        deadline = time.monotonic() + 30
        for flag, port in (("-f", self.hard_port), ("-r", self.soft_port)):
            self._refusers.append(subprocess.Popen(
                ["smtp-sink", "-u", "postfix", flag, "RCPT", f"127.0.0.1:{port}", "100"],
                env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
            if not _wait_port(port, deadline):
                raise HarnessError(f"refusing smtp-sink did not listen on {port}")
        super().start()

    def stop(self) -> None:
        super().stop()
        for proc in self._refusers:
            if proc.poll() is None:
                proc.terminate()
                proc.wait(10)
        self._refusers = []


@pytest.fixture(scope="module")
def bounce_env() -> Iterator[BounceEnv]:
    try:
        ensure_installed()
        env = BounceEnv(Path(tempfile.mkdtemp(prefix="rg-postfix-bounce-")))
        try:
            env.configure()
            env.start()
        except BaseException:
            env.cleanup()
            raise
    except (HarnessError, OSError) as exc:
        pytest.fail(f"cannot start the bouncing Postfix instance: {exc}", pytrace=False)
    try:
        yield env
    finally:
        env.cleanup()


def _deliveries(recs: list[EventRecord]) -> list[tuple[bytes | None, dict[str, object]]]:
    out = []
    for r in recs:
        d = orjson.loads(r.value)
        if d.get("type") == "delivery":
            out.append((r.key, d))
    return out


async def test_bounce_storm_in_real_maillog_is_attributed_to_the_user(
        bounce_env: BounceEnv, kafka_settings: Settings, tmp_path: Path) -> None:
    env, s = bounce_env, kafka_settings
    await make_topics(s)
    ckpt = tmp_path / "ckpt"
    proc_env = dict(os.environ, RELAYGUARD_TOPICS__PREFIX=s.topics.prefix,
                    RELAYGUARD_DATA_DIR=str(tmp_path / "data"))
    cmd = [sys.executable, "-c", "from relay.hook_cli import hook; hook()", "tail",
           str(env.maillog), str(env.dovecot_log), "--relay-id", "relay-bounce",
           "--bootstrap", s.bootstrap_servers, "--checkpoint-dir", str(ckpt), "--from-end",
           "--timezone", "local", "--poll-interval", "0.1"]
    proc = subprocess.Popen(cmd, cwd=REPO, env=proc_env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)
    hard = [f"nobody{i}@bounce.test" for i in range(5)]
    try:
        deadline = time.monotonic() + 30  # started once its first checkpoint exists
        while not list(ckpt.glob("tail-*.json")):
            assert proc.poll() is None, proc.communicate()[0].decode()
            assert time.monotonic() < deadline, "tail wrote no checkpoint within 30 s"
            await asyncio.sleep(0.1)
        # alice: the bounce storm (five refused recipients in one message, then one more);
        # bob: one deferred; carol: a normal send (sent: no delivery event by default).
        await env.swaks_async("alice", env.users["alice"], to=",".join(hard))
        await env.swaks_async("alice", env.users["alice"], to="x@bounce.test")
        await env.swaks_async("bob", env.users["bob"], to="later@defer.test")
        await env.swaks_async("carol", env.users["carol"], to="friend@example.org")
        await env.swaks_async("carol", "not-carols-password", expect=28)

        def enough(rs: list[EventRecord]) -> bool:
            return len(_deliveries(rs)) >= 7 and any(b'"success":false' in r.value for r in rs)

        recs = await collect_events(s.bootstrap_servers, s.topics.events, enough, 60, 2.0)
    finally:
        proc.send_signal(signal.SIGTERM)
        out = proc.communicate(timeout=30)[0].decode()
    assert proc.returncode == 0, out
    log_text = env.maillog_text()
    got = _deliveries(recs)
    print("\n".join(ln for ln in log_text.splitlines() if "status=" in ln or "client=" in ln))
    summary = [(k, d["user"], d["status"], d.get("recipient_domain")) for k, d in got]
    assert sorted(summary, key=str) == sorted(
        [(b"alice", "alice", "bounced", "bounce.test")] * 6
        + [(b"bob", "bob", "deferred", "defer.test")], key=str), (summary, log_text[-3000:])
    for _, d in got:
        # the queue id is the one of this user's own client= line in the real maillog, and the
        # dsn the one Postfix logged for that delivery (smtp-sink gives no enhanced code)
        qid = d["queue_id"]
        assert f"{qid}: client=localhost[127.0.0.1], sasl_method=PLAIN, " \
               f"sasl_username={d['user']}" in log_text
        assert any(f"{qid}: to=<" in ln and f"dsn={d['dsn']}, status={d['status']} " in ln
                   for ln in log_text.splitlines())
        assert str(d["dsn"])[0] == ("5" if d["status"] == "bounced" else "4")
        assert d["relay_id"] == "relay-bounce" and d["source"] == "postfix-log"
        assert str(d["event_id"]).startswith("postfix-delivery:relay-bounce:")
    assert len({d["event_id"] for _, d in got}) == 7
    assert len({d["queue_id"] for _, d in got if d["user"] == "alice"}) == 2
    assert "status=sent" in log_text  # carol's mail went out, and made no delivery event
    logins = [orjson.loads(r.value) for r in recs]
    assert {e["user"] for e in logins if e["type"] == "login"} == {"alice", "bob", "carol"}
    [failed] = [e for e in logins if e["type"] == "login" and not e["success"]]
    want = "sha1:" + hashlib.sha1(b"not-carols-password").hexdigest()[:6]
    assert (failed["user"], failed["failure_reason"], failed.get("password_hash")) == (
        "carol", "bad_credentials", want), env.dovecot_log.read_text()[-2000:]
