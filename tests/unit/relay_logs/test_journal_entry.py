"""journalctl JSON lines -> entries, and the journalctl command the follower runs."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from relayguard.relay.checkpoint import CursorStore
from relayguard.relay.journal_entry import parse_entry
from relayguard.relay.journal_follower import JournalFollower
from relayguard.relay.log_parser import LogParser

CURSOR = "s=6ac5a3daab66475bb1236dbba3161d07;i=1f;b=0123;m=1;t=661991b6e0113;x=319bc2637ee0df95"


def line(**fields: object) -> bytes:
    return orjson.dumps({"__CURSOR": CURSOR, **fields})


def test_fields_and_stable_id() -> None:
    e = parse_entry(line(MESSAGE="hello", SYSLOG_IDENTIFIER="postfix/smtpd", SYSLOG_PID="12",
                         _PID="13", __REALTIME_TIMESTAMP="1796000000250000"), 0.0)
    assert e is not None
    assert (e.prog, e.pid, e.message, e.time) == ("postfix/smtpd", 12, "hello", 1796000000.25)
    assert e.entry_id == "j:6ac5a3daab66475bb1236dbba3161d07:1f" and e.cursor == CURSOR


def test_source_stamp_wins_and_bytes_message_is_decoded() -> None:
    e = parse_entry(line(MESSAGE=list(b"caf\xc3\xa9 \xff"), _COMM="exim4",
                         _SOURCE_REALTIME_TIMESTAMP="1796000000000000",
                         __REALTIME_TIMESTAMP="1796000009000000"), 5.0)
    assert e is not None
    assert (e.prog, e.pid, e.message, e.time) == ("exim4", None, "café \ufffd", 1796000000.0)


@pytest.mark.parametrize("raw", [b"", b"not json", b"[1,2]", b'{"MESSAGE": "no cursor"}',
                                 orjson.dumps({"__CURSOR": 5}),
                                 orjson.dumps({"__CURSOR": "a\nb"})])
def test_unusable_lines(raw: bytes) -> None:
    assert parse_entry(raw, 0.0) is None


def test_null_or_odd_message_becomes_empty() -> None:
    for msg in (None, 5, [300], {"a": 1}):
        e = parse_entry(line(MESSAGE=msg, __REALTIME_TIMESTAMP="x"), 7.0)
        assert e is not None and e.message == "" and e.time == 7.0


def test_command_lines(tmp_path: Path) -> None:
    f = JournalFollower(LogParser("r"), publisher=None,  # type: ignore[arg-type]
                        cursors=CursorStore(tmp_path, "k"), units=("postfix@-", "dovecot"),
                        directory=tmp_path / "j")
    base = ["journalctl", "--follow", "--output=json", "--all", "--no-pager", "--quiet",
            f"--directory={tmp_path / 'j'}", "--unit=postfix@-", "--unit=dovecot"]
    assert f.command(None) == [*base, "--lines=0"]
    assert f.command("s=1;i=2") == [*base, "--after-cursor=s=1;i=2", "--no-tail"]
    f.from_end = False
    assert f.command(None) == [*base, "--no-tail"]


def test_cursor_store_round_trip_and_garbage(tmp_path: Path) -> None:
    store = CursorStore(tmp_path / "c", "/var/log/journal")
    assert store.load() is None
    store.save(CURSOR)
    assert CursorStore(tmp_path / "c", "/var/log/journal").load() == CURSOR
    assert CursorStore(tmp_path / "c", "system").load() is None  # another journal
    store.path.write_text("{torn")
    assert store.load() is None
