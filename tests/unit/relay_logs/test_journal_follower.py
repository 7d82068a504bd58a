"""JournalFollower with a stand-in journalctl (a script of ours printing JSON lines and then
exiting, as journalctl does when its journal goes away): restarts continue after the last
handed-over cursor, nothing is repeated, and the cursor is saved. The real journalctl on a real
journal is tests/integration/test_relay_hook_journal.py."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import orjson

from relayguard.relay.checkpoint import CursorStore
from relayguard.relay.journal_follower import JournalFollower
from relayguard.relay.log_parser import LogParser
from relayguard.stream.records import Event

FAKE = r'''
import json, sys
entries = [json.loads(l) for l in open(sys.argv[1])]
args = sys.argv[2:]
open(sys.argv[1] + ".calls", "a").write(" ".join(args) + "\n")
after = next((a.split("=", 1)[1] for a in args if a.startswith("--after-cursor=")), None)
start = 0 if after is None else [e["__CURSOR"] for e in entries].index(after) + 1
for e in entries[start:start + 3]:  # at most 3 entries per run, then "crash"
    print(json.dumps(e), flush=True)
'''


class Collect:
    def __init__(self) -> None:
        self.events: list[Event] = []

    async def publish(self, event: Event) -> bool:
        self.events.append(event)
        return True


def _journal(tmp_path: Path, n: int) -> Path:
    path = tmp_path / "entries.jsonl"
    with path.open("wb") as fh:
        for i in range(n):
            fh.write(orjson.dumps({
                "__CURSOR": f"s=abc;i={i + 1:x};b=0;m=1;t=2;x=3",
                "__REALTIME_TIMESTAMP": str(1_796_000_000_000_000 + i),
                "SYSLOG_IDENTIFIER": "postfix/smtpd", "_PID": "7",
                "MESSAGE": f"warning: unknown[203.0.113.{i + 1}]: SASL PLAIN authentication "
                           f"failed: x, sasl_username=u{i}"}) + b"\n")
    return path


async def test_restarts_after_the_last_handed_cursor(tmp_path: Path) -> None:
    entries = _journal(tmp_path, 8)
    script = tmp_path / "journalctl"
    script.write_text(f"#!{sys.executable}\n{FAKE}")
    script.chmod(0o755)
    wrapper = tmp_path / "jctl"
    wrapper.write_text(f"#!/bin/sh\nexec {script} {entries} \"$@\"\n")
    wrapper.chmod(0o755)
    sink = Collect()
    store = CursorStore(tmp_path / "ckpt", "test")
    f = JournalFollower(LogParser("r"), sink, store, units=("postfix@-",), from_end=False,
                        journalctl=str(wrapper), restart_delay=0.01, save_interval=0.05)
    task = asyncio.create_task(f.run())
    for _ in range(500):
        if len(sink.events) >= 8:
            break
        await asyncio.sleep(0.02)
    f.stop()
    await asyncio.wait_for(task, 10)
    users = [e.user for e in sink.events]
    assert users == [f"u{i}" for i in range(8)]  # in order, none lost, none repeated
    assert f.stats.restarts >= 2
    assert store.load() == "s=abc;i=8;b=0;m=1;t=2;x=3"
    calls = (tmp_path / "entries.jsonl.calls").read_text().splitlines()
    assert "--no-tail" in calls[0] and "--after-cursor" not in calls[0]
    assert "--after-cursor=s=abc;i=3;b=0;m=1;t=2;x=3" in calls[1]
    assert "--after-cursor=s=abc;i=6;b=0;m=1;t=2;x=3" in calls[2]


async def test_missing_journalctl_is_reported_not_fatal(tmp_path: Path) -> None:
    f = JournalFollower(LogParser("r"), Collect(), CursorStore(tmp_path, "k"),
                        journalctl=str(tmp_path / "no-such-journalctl"), restart_delay=0.01)
    task = asyncio.create_task(f.run())
    for _ in range(200):
        if f.stats.restarts >= 2:
            break
        await asyncio.sleep(0.02)
    f.stop()
    await asyncio.wait_for(task, 10)
    assert f.stats.restarts >= 2 and f.stats.entries == 0
