"""`relayguard hook postfix` as a real process: serves Postfix policy requests, enforces a lock
produced to Kafka, publishes send events (as batch records by default; single-event records
with --single-records or RELAYGUARD_RELAY_BATCH_RECORDS=false), and stops cleanly on
SIGTERM."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest

from relayguard.foundation.settings import Settings
from relayguard.roof.broker.config import free_port
from tests.kafka_helpers import lock_cmd, make_topics, produce_locks, read_events

pytestmark = pytest.mark.integration

RUN = ("import logging, sys; logging.basicConfig(level=logging.INFO, "
       "format='%(levelname)s %(name)s: %(message)s'); "
       "logging.getLogger('aiokafka').setLevel(logging.WARNING); "
       "from relay.hook_cli import hook; hook.main(sys.argv[1:], prog_name='hook')")


def _req(user: str, state: str) -> bytes:
    return (f"request=smtpd_access_policy\nprotocol_state={state}\nsasl_username={user}\n"
            "client_address=198.51.100.20\nsender=a@example.com\nqueue_id=QCLI1\n"
            "instance=cli.1\nrecipient_count=2\nsize=999\n\n").encode()


async def _connect(port: int, proc: subprocess.Popen[bytes]) -> tuple[
        asyncio.StreamReader, asyncio.StreamWriter]:
    deadline = time.monotonic() + 60
    while True:
        try:
            return await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError("hook postfix never listened") from None
            await asyncio.sleep(0.2)


@pytest.mark.parametrize(("switch", "setting", "batched"), [
    ([], None, True),  # the default
    (["--single-records"], None, False),
    ([], "false", False),
    (["--batch-records"], "false", True),  # the flag beats the setting
], ids=["default", "flag-off", "setting-off", "flag-beats-setting"])
async def test_hook_postfix_process(kafka_settings: Settings, tmp_path: Path, switch: list[str],
                                    setting: str | None, batched: bool) -> None:
    s = kafka_settings
    await make_topics(s)
    port = free_port()
    env = {**os.environ, "RELAYGUARD_TOPICS__PREFIX": s.topics.prefix,
           "RELAYGUARD_DATA_DIR": str(tmp_path)}
    env.pop("RELAYGUARD_RELAY_BATCH_RECORDS", None)
    if setting is not None:
        env["RELAYGUARD_RELAY_BATCH_RECORDS"] = setting
    log_path = tmp_path / "hook.log"
    with log_path.open("wb") as log_file:
        proc = subprocess.Popen(
            [sys.executable, "-c", RUN, "postfix", "--listen", f"inet:127.0.0.1:{port}",
             "--relay-id", "relay-cli", "--bootstrap", s.bootstrap_servers,
             "--reject-text", "locked (cli test)", *switch],
            stdout=log_file, stderr=subprocess.STDOUT, env=env, cwd=Path(__file__).parents[2],
        )
    try:
        r, w = await _connect(port, proc)
        w.write(_req("trudy", "RCPT"))
        assert await asyncio.wait_for(r.readuntil(b"\n\n"), 5) == b"action=DUNNO\n\n"
        w.write(_req("trudy", "END-OF-MESSAGE"))
        assert await asyncio.wait_for(r.readuntil(b"\n\n"), 5) == b"action=DUNNO\n\n"
        await produce_locks(s.bootstrap_servers, s.topics.locks, [lock_cmd("trudy", 7)])
        deadline = time.monotonic() + 10
        while True:
            w.write(_req("trudy", "RCPT"))
            reply = await asyncio.wait_for(r.readuntil(b"\n\n"), 5)
            if reply != b"action=DUNNO\n\n" or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.1)
        assert reply == b"action=REJECT 5.7.1 locked (cli test)\n\n"
        w.close()
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(proc.wait, 30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    out = log_path.read_text()
    assert "policy service listening on inet:127.0.0.1" in out
    assert out.rstrip().endswith("relay.hook_cli: stopped"), out[-2000:]
    (rec,) = await read_events(s.bootstrap_servers, s.topics.events, want=1, settle=1.0)
    ev = orjson.loads(rec.value)
    assert (ev["user"], ev["relay_id"], ev["recipient_count"]) == ("trudy", "relay-cli", 2)
    assert rec.batched is batched and rec.key == b"trudy"  # batched: in trudy's partition
