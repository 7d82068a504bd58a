"""`relayguard hook journal` as a real process on a real journal: entries written with
systemd-journal-remote into a private journal directory, read through `journalctl --directory
--follow`, published to the test broker; stopped, more entries written while it is down,
restarted from the saved cursor: every expected event arrives exactly once (by event id)."""

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
from tests.fixtures.systemd import systemd_tools, write_journal  # noqa: F401  (fixture)
from tests.kafka_helpers import collect_events, make_topics

pytestmark = pytest.mark.integration

RUN = ("import logging, sys; logging.basicConfig(level=logging.INFO, "
       "format='%(levelname)s %(name)s: %(message)s'); "
       "logging.getLogger('aiokafka').setLevel(logging.WARNING); "
       "from relay.hook_cli import hook; hook.main(sys.argv[1:], prog_name='hook')")
BOOT = "0123456789abcdef0123456789abcdef"
T0_US = 1_796_000_000_000_000


class Journal:
    """Writes entries with increasing stamps, as journald would."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.n = 0

    def entry(self, unit: str, ident: str, pid: int, message: str) -> dict[str, str]:
        self.n += 1
        return {"__REALTIME_TIMESTAMP": str(T0_US + self.n * 100_000),
                "__MONOTONIC_TIMESTAMP": str(self.n * 100_000), "_BOOT_ID": BOOT,
                "_SYSTEMD_UNIT": unit, "SYSLOG_IDENTIFIER": ident, "_PID": str(pid),
                "MESSAGE": message}

    def batch(self, k: int) -> set[tuple[str, str]]:
        """Write batch k; returns the (user, client_ip) of the events it must give."""
        entries: list[dict[str, str]] = []
        expected: set[tuple[str, str]] = set()
        for j in range(4):
            ip, user = f"203.0.113.{10 * k + j}", f"user{k}{j}@example.com"
            entries.append(self.entry("dovecot.service", "dovecot", 900,
                                      f"auth: passwd-file({user},{ip}): Password mismatch"))
            entries.append(self.entry("postfix@-.service", "postfix/qmgr", 901,
                                      f"{k}{j}ABCDEF: removed"))
            entries.append(self.entry(
                "postfix@-.service", "postfix/submission/smtpd", 1000 + j,
                f"warning: unknown[{ip}]: SASL LOGIN authentication failed: UGFzc3dvcmQ6"))
            expected.add((user, ip))
        # the same text from a unit that is not followed gives nothing
        entries.append(self.entry("sshd.service", "postfix/smtpd", 77,
                                  "warning: unknown[192.0.2.99]: SASL LOGIN authentication "
                                  "failed: x, sasl_username=intruder"))
        ip = f"198.51.100.{k}"
        entries.append(self.entry(
            "exim4.service", "exim", 500 + k,
            f"login authenticator failed for ([{ip}]) [{ip}]:5{k}000: 535 Incorrect "
            f"authentication data (set_id=exim{k})"))
        expected.add((f"exim{k}", ip))
        write_journal(self.directory, entries)
        return expected


async def _events(s: Settings, want: int, settle: float = 0.5) -> list[dict[str, object]]:
    recs = await collect_events(s.bootstrap_servers, s.topics.events,
                                lambda rs: len(rs) >= want, 60, settle)
    return [orjson.loads(r.value) for r in recs]


def _start(s: Settings, journal_dir: Path, data_dir: Path, log_path: Path) -> subprocess.Popen[
        bytes]:
    env = {**os.environ, "RELAYGUARD_TOPICS__PREFIX": s.topics.prefix,
           "RELAYGUARD_DATA_DIR": str(data_dir)}
    with log_path.open("ab") as log_file:
        return subprocess.Popen(
            [sys.executable, "-c", RUN, "journal", "--directory", str(journal_dir),
             "--relay-id", "relay-journal", "--bootstrap", s.bootstrap_servers, "--from-start"],
            stdout=log_file, stderr=subprocess.STDOUT, env=env, cwd=Path(__file__).parents[2])


async def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGTERM)
    assert await asyncio.to_thread(proc.wait, 30) == 0


async def test_hook_journal_follows_and_resumes_from_its_cursor(
        kafka_settings: Settings, tmp_path: Path, systemd_tools: None) -> None:  # noqa: F811
    s = kafka_settings
    await make_topics(s)
    jdir, data, log_path = tmp_path / "journal", tmp_path / "data", tmp_path / "hook.log"
    journal = Journal(jdir)
    expected = journal.batch(1)  # already in the journal at start: read with --from-start
    proc = _start(s, jdir, data, log_path)
    try:
        got = await _events(s, 5)
        assert len(got) == 5, log_path.read_text()[-3000:]
        expected |= journal.batch(2)  # written while the hook follows
        got = await _events(s, 10)
        assert len(got) == 10, log_path.read_text()[-3000:]
        await _stop(proc)
        cursors = list((data / "journal-checkpoints").glob("journal-*.json"))
        assert len(cursors) == 1

        expected |= journal.batch(3)  # written while the hook is down
        proc = _start(s, jdir, data, log_path)  # --from-start again: the cursor must win
        got = await _events(s, 15, settle=3.0)  # settle: a repeat of batch 1 or 2 would show
        deadline = time.monotonic() + 30
        while "journal: following" not in log_path.read_text().split("journal: stopped")[-1]:
            assert time.monotonic() < deadline and proc.poll() is None, "restart never followed"
            await asyncio.sleep(0.1)
        await _stop(proc)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    ids = [e["event_id"] for e in got]
    assert len(ids) == 15 and len(set(ids)) == 15, sorted(map(str, ids))  # no loss, no repeat
    assert {(e["user"], e["client_ip"]) for e in got} == expected
    assert {e["relay_id"] for e in got} == {"relay-journal"}
    assert {e["source"] for e in got} == {"postfix-log", "exim-log"}
    assert all(str(e["event_id"]).count(":j:") == 1 for e in got)  # ids from journal seqnums
    out = log_path.read_text()
    assert "after the saved cursor" in out and "intruder" not in out
