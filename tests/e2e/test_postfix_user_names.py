"""Issue 10, items 3 and 4, on the real Postfix + Dovecot with the real `relayguard hook postfix`
process: a lock on `alice` refuses `ALICE` (Dovecot accepts any case), and a hook restarted while
the broker is down answers at once and still refuses the users locked before the restart."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import orjson
import pytest

from relayguard.foundation.settings import Settings
from relayguard.roof.broker.config import free_port
from relayguard.roof.broker.server import LocalBroker
from tests.e2e.postfix_env import PostfixEnv
from tests.integration.hook_process import answers, start_hook, stop, wait_until
from tests.kafka_helpers import lock_cmd, make_topics, produce_locks, read_events

pytestmark = pytest.mark.e2e
RELAYGUARD = str(Path(sys.executable).with_name("relayguard"))


def _ready(port: int) -> int:
    """HTTP status of the hook's /ready (0 if it does not answer)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/ready", timeout=2) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return 0


async def _swaks_until(env: PostfixEnv, user: str, password: str, code: int,
                       timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while True:
        got, out = await env.swaks_async(user, password, expect=None)
        if got == code:
            return out
        if time.monotonic() > deadline:
            raise AssertionError(f"swaks as {user} still exits {got}, not {code}\n{out}")
        await asyncio.sleep(0.3)


def _hook_args(env: PostfixEnv, bootstrap: str, http_port: int, relay_id: str) -> list[str]:
    return ["--listen", f"inet:127.0.0.1:{env.policy_port}", "--relay-id", relay_id,
            "--bootstrap", bootstrap, "--http", f"127.0.0.1:{http_port}",
            "--reject-text", "locked by relayguard e2e"]


async def test_lock_on_alice_refuses_ALICE(postfix_env: PostfixEnv, kafka_settings: Settings,
                                           tmp_path: Path) -> None:
    s, env = kafka_settings, postfix_env
    await make_topics(s)
    http_port = free_port()
    hook_env = {"RELAYGUARD_TOPICS__PREFIX": s.topics.prefix,
                "RELAYGUARD_DATA_DIR": str(tmp_path / "data")}
    log_path = tmp_path / "hook.log"
    proc = start_hook(_hook_args(env, s.bootstrap_servers, http_port, "relay-names"), hook_env,
                      log_path)
    try:
        wait_until(lambda: _ready(http_port) == 200, 60, "hook caught up", proc, log_path)
        # Dovecot takes any case; Postfix hands the policy service the name as typed.
        await env.swaks_async("ALICE", env.users["alice"], expect=0)
        assert "sasl_username=ALICE" in env.maillog_text()
        recs = await read_events(s.bootstrap_servers, s.topics.events, want=1, settle=0.5)
        sends = [(r.key, orjson.loads(r.value)) for r in recs]
        assert [(k, e["user"]) for k, e in sends] == [(b"alice", "alice")]  # one user, one key

        lock = subprocess.run(
            [RELAYGUARD, "lock", "alice", "--reason", "e2e: case"], capture_output=True,
            text=True, timeout=60, check=False,
            env={**os.environ, **hook_env, "RELAYGUARD_BOOTSTRAP_SERVERS": s.bootstrap_servers})
        assert lock.returncode == 0, lock.stderr
        assert lock.stdout.startswith("locked user alice ")
        out = await _swaks_until(env, "ALICE", env.users["alice"], 24, timeout=20)
        assert "Recipient address rejected: locked by relayguard e2e" in out
        for spelling in ("Alice", "alice"):
            _, out = await env.swaks_async(spelling, env.users["alice"], expect=24)
        await env.swaks_async("bob", env.users["bob"], expect=0)  # nobody else is hit
    finally:
        stop(proc)


async def test_hook_restarted_while_broker_down_answers_at_once_and_keeps_locks(
        postfix_env: PostfixEnv, kafka_bootstrap: str, tmp_path: Path) -> None:
    # kafka_bootstrap: the session fixture fetched the broker jars; we kill our own broker.
    env = postfix_env
    broker = LocalBroker(data_dir=tmp_path / "kafka", port=free_port())
    await asyncio.to_thread(broker.start, 120)
    s = Settings(bootstrap_servers=broker.bootstrap)
    await make_topics(s)
    http_port = free_port()
    data = tmp_path / "data"
    hook_env = {"RELAYGUARD_TOPICS__PREFIX": s.topics.prefix, "RELAYGUARD_DATA_DIR": str(data)}
    args = _hook_args(env, broker.bootstrap, http_port, "relay-restart")
    log_path = tmp_path / "hook.log"
    proc = start_hook(args, hook_env, log_path)
    try:
        wait_until(lambda: _ready(http_port) == 200, 60, "hook caught up", proc, log_path)
        await produce_locks(s.bootstrap_servers, s.topics.locks, [lock_cmd("carol", 1)])
        await _swaks_until(env, "carol", env.users["carol"], 24, timeout=20)
        book_file = data / "hook-lock-book.json"
        wait_until(lambda: book_file.exists() and b'"carol"' in book_file.read_bytes(), 10,
                   "lock book saved", proc, log_path)

        await asyncio.to_thread(broker.stop, 0.1, True)  # the broker dies (SIGKILL after 0.1 s)
        stop(proc)  # ... and so does the hook (SIGKILL: no orderly save at exit)
        assert not answers(env.policy_port)

        started = time.monotonic()
        proc = start_hook(args, hook_env, log_path)
        wait_until(lambda: answers(env.policy_port), 30, "restarted hook answers", proc,
                   log_path)
        first_answer = time.monotonic() - started
        print(f"hook restart (broker down) -> first policy answer: {first_answer:.2f} s "
              "(process start included)")
        assert _ready(http_port) == 503  # answering, and saying it is still catching up
        _, out = await env.swaks_async("carol", env.users["carol"], expect=24)
        assert "locked by relayguard e2e" in out
        await env.swaks_async("CAROL", env.users["carol"], expect=24)
        await env.swaks_async("alice", env.users["alice"], expect=0)
        text = log_path.read_text()
        assert "CATCHING UP" in text and "1 subjects (1 locks active)" in text

        await asyncio.to_thread(broker.start, 120)
        wait_until(lambda: _ready(http_port) == 200, 90, "caught up once the broker is back",
                   proc, log_path)
        await env.swaks_async("carol", env.users["carol"], expect=24)
    finally:
        stop(proc)
        await asyncio.to_thread(broker.stop)
