"""Split a mail-log line into (event time, program, pid, message). Pure: no I/O, no clock.

Formats understood:
- RFC 3164 syslog: ``Nov 29 10:15:02 host prog[pid]: msg`` (also Postfix's own maillog_file).
  There is no year: it is taken from the caller's reference time, choosing among the previous,
  same and next year the one closest to it, so a December line read in January lands in the old
  year and a clock a little ahead across New Year lands in the new one.
- RFC 3339 syslog: ``2026-11-29T10:15:02.123456+00:00 host prog[pid]: msg``.
- Dovecot's own log file: ``Nov 29 10:15:02 auth: Info: msg`` (no host, level after the program).
- Exim mainlog: ``2026-11-29 10:15:02[.mmm][ +0000][ [pid]] msg`` (program reported as "exim").
- A bare ``prog[pid]: msg`` (journal output without stamps): the reference time is used.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo

_MONTHS = {m: i for i, m in enumerate(
    ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"), 1)}

_RFC3164 = re.compile(
    r"(?P<mon>[A-Z][a-z]{2}) {1,2}(?P<day>\d{1,2}) (?P<h>\d\d):(?P<m>\d\d):(?P<s>\d\d)"
    r"(?P<frac>\.\d{1,9})? (?P<rest>.*)"
)
_RFC3339 = re.compile(
    r"(?P<ts>\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d{1,9})?(?:Z|[+-]\d\d:?\d\d)?) (?P<rest>.*)"
)
_EXIM = re.compile(
    r"(?P<ts>\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(?:\.\d{1,6})?)(?: (?P<tz>[+-]\d{4}))?"
    r"(?: \[(?P<pid>\d+)\])? (?P<msg>.*)"
)
# Program tag: "postfix/submission/smtpd[123]: ", "dovecot: ", "auth: Info: " (dovecot log file).
_TAG = re.compile(r"(?P<prog>[A-Za-z0-9_.@/-]{1,128}?)(?:\[(?P<pid>\d{1,10})\])?: (?P<msg>.*)")
_DOVECOT_LEVEL = re.compile(r"(?:Info|Warning|Error|Fatal|Panic|Debug): ")

MAX_LINE_CHARS = 16 * 1024  # longer is not a mail-log line we understand; drop it unparsed


@dataclass(frozen=True, slots=True)
class Header:
    time: float
    prog: str
    pid: int | None
    msg: str


def parse_header(line: str, reference_time: float, tz: tzinfo = UTC) -> Header | None:
    """The line's time, program, pid and message; None when the line has no shape we know."""
    line = line.rstrip("\r\n")
    if not line or len(line) > MAX_LINE_CHARS:
        return None
    m = _RFC3164.match(line)
    if m:
        t = _rfc3164_time(m, reference_time, tz)
        return None if t is None else _tagged(m["rest"], t, host_expected=True)
    m = _RFC3339.match(line)
    if m:
        try:
            dt = datetime.fromisoformat(m["ts"])
        except ValueError:
            return None
        if dt.tzinfo is None:
            dt = dt.replace(tzinfo=tz)
        return _tagged(m["rest"], dt.timestamp(), host_expected=True)
    m = _EXIM.match(line)
    if m:
        return _exim(m, tz)
    return _tagged(line, reference_time, host_expected=False)


def _tagged(rest: str, t: float, host_expected: bool) -> Header | None:
    if host_expected:
        host, sep, after = rest.partition(" ")
        # Dovecot's log file has no host: "auth: Info: ..." follows the stamp directly.
        if not sep or (host.endswith(":") and _TAG.match(rest)):
            after = rest
    else:
        after = rest
    m = _TAG.match(after)
    if not m:
        return None
    msg = m["msg"]
    lvl = _DOVECOT_LEVEL.match(msg)
    if lvl:
        msg = msg[lvl.end():]
    return Header(t, m["prog"], int(m["pid"]) if m["pid"] else None, msg)


def _rfc3164_time(m: re.Match[str], reference_time: float, tz: tzinfo) -> float | None:
    mon = _MONTHS.get(m["mon"])
    if mon is None:
        return None
    ref_year = datetime.fromtimestamp(reference_time, tz).year
    frac = float(m["frac"]) if m["frac"] else 0.0
    best: float | None = None
    for year in (ref_year - 1, ref_year, ref_year + 1):
        try:
            dt = datetime(year, mon, int(m["day"]), int(m["h"]), int(m["m"]), int(m["s"]),
                          tzinfo=tz)
        except ValueError:  # Feb 29 in a non-leap year, day 31 in a short month, 25:00 ...
            continue
        t = dt.timestamp() + frac
        if best is None or abs(t - reference_time) < abs(best - reference_time):
            best = t
    return best


def _exim(m: re.Match[str], tz: tzinfo) -> Header | None:
    try:
        dt = datetime.fromisoformat(m["ts"])
    except ValueError:
        return None
    if m["tz"]:
        sign = 1 if m["tz"][0] == "+" else -1
        off = timedelta(hours=int(m["tz"][1:3]), minutes=int(m["tz"][3:5]))
        dt = dt.replace(tzinfo=_fixed(sign * off))
    else:
        dt = dt.replace(tzinfo=tz)
    return Header(dt.timestamp(), "exim", int(m["pid"]) if m["pid"] else None, m["msg"])


def _fixed(off: timedelta) -> tzinfo:
    from datetime import timezone

    return timezone(off)
