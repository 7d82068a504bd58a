"""One line of `journalctl --output=json` -> the fields the log parser needs. Pure: no I/O.

journalctl writes one JSON object per entry. Values are strings, except that a field that is not
valid UTF-8 comes as an array of byte values, and (without --all) a field over 4096 bytes as
null. Everything is checked: a line that is not such an object, or lacks a cursor, is None.

The event-id base of an entry is `j:<seqnum id>:<seqnum>` from its cursor (``s=...;i=...``):
stable across restarts and re-reads of the same journal, distinct between entries.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

MAX_MESSAGE_CHARS = 16 * 1024  # as relay.log_header.MAX_LINE_CHARS
MAX_CURSOR_CHARS = 1024


@dataclass(frozen=True, slots=True)
class JournalEntry:
    cursor: str
    entry_id: str
    time: float
    prog: str
    pid: int | None
    message: str


def parse_entry(raw: bytes, fallback_time: float) -> JournalEntry | None:
    """The entry in one JSON line; None when it is not one we can use."""
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(data, dict):
        return None
    cursor = data.get("__CURSOR")
    if not isinstance(cursor, str) or not cursor or len(cursor) > MAX_CURSOR_CHARS \
            or "\n" in cursor:
        return None
    message = _text(data.get("MESSAGE"))
    if message is None or len(message) > MAX_MESSAGE_CHARS:
        message = ""
    prog = _text(data.get("SYSLOG_IDENTIFIER")) or _text(data.get("_COMM")) or ""
    pid = _int(data.get("SYSLOG_PID")) or _int(data.get("_PID"))
    usec = _int(data.get("_SOURCE_REALTIME_TIMESTAMP")) or _int(data.get("__REALTIME_TIMESTAMP"))
    t = usec / 1e6 if usec else fallback_time
    return JournalEntry(cursor, _entry_id(cursor), t, prog[:128], pid, message)


def _text(value: Any) -> str | None:
    if isinstance(value, str):
        return value
    if isinstance(value, list) and len(value) <= MAX_MESSAGE_CHARS \
            and all(isinstance(b, int) and 0 <= b <= 255 for b in value):
        return bytes(value).decode("utf-8", "replace")
    return None


def _int(value: Any) -> int | None:
    if isinstance(value, str) and value.isdigit() and len(value) <= 20:
        return int(value)
    return None


def _entry_id(cursor: str) -> str:
    fields = dict(part.split("=", 1) for part in cursor.split(";") if "=" in part)
    s, i = fields.get("s"), fields.get("i")
    if s and i and len(s) <= 64 and len(i) <= 20:
        return f"j:{s}:{i}"
    return "j:" + cursor[:200]
