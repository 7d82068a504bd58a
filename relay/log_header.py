"""Split a mail-log line into (event time, program, pid, message). Pure: no I/O, no clock.

Formats understood (an optional ``<PRI>`` in front of any of them is dropped):
- RFC 3164 syslog: ``Nov 29 10:15:02 host prog[pid]: msg`` (also Postfix's own maillog_file).
  There is no year: it is taken from the caller's reference time, choosing among the previous,
  same and next year the one closest to it, so a December line read in January lands in the old
  year and a clock a little ahead across New Year lands in the new one.
- RFC 3339 stamps in place of the RFC 3164 one (rsyslog's file format):
  ``2026-11-29T10:15:02.123456+00:00 host prog[pid]: msg``.
- RFC 5424: ``<22>1 2026-11-29T10:15:02.003Z host app procid msgid [sd-id k="v"...] msg``; the
  structured data (or ``-``) is skipped, a UTF-8 BOM before the message dropped.
- FreeBSD/BSD syslogd ``-v``/``-vv``: ``Nov 29 10:15:02 <2.6> host ...``/``<mail.info>``.
- busybox syslogd: ``Nov 29 10:15:02 host mail.info prog[pid]: msg``.
- Dovecot's own log file: ``Nov 29 10:15:02 auth: Info: msg``, ``auth-worker(22401): Info:``,
  Dovecot 2.4's ``auth(user,ip,sasl:plain)<session>: Info:`` (no host, a level after the
  program; stamp in RFC 3164 or ``2026-11-29 10:15:02`` form). These come back as program
  ``dovecot`` with the message ``auth-worker(22401): ...``, exactly as Dovecot writes it to
  syslog, so the parser sees one form.
- Exim mainlog: ``2026-11-29 10:15:02[.mmm][ +0000][ [pid]] msg`` (program reported as "exim").
  Exim writing to syslog repeats its own stamp (and pid) inside the message; that is stripped.
- A bare ``prog[pid]: msg`` (journal output without stamps): the reference time is used.

Speed: stamps are turned into epoch seconds through small caches keyed by the stamp text (one
conversion per distinct second); the year of an RFC 3164 stamp is chosen against the reference
time rounded down to the hour, which can only matter for a line stamped half a year away.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from functools import lru_cache
from typing import NamedTuple

_MONTHS = {m: i for i, m in enumerate(
    ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"), 1)}

_PRI = re.compile(r"<\d{1,3}>")
_RFC3164 = re.compile(
    r"(?P<stamp>[A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d)(?P<frac>\.\d{1,9})? (?P<rest>.*)"
)
_RFC3339 = re.compile(
    r"(?P<stamp>\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?P<frac>\.\d{1,9})?(?P<zone>Z|[+-]\d\d:?\d\d)?"
    r" (?P<rest>.*)"
)
_RFC5424 = re.compile(
    r"1 (?P<ts>\S+) (?P<host>\S+) (?P<app>\S+) (?P<procid>\S+) (?P<msgid>\S+) (?P<rest>.*)"
)
_EXIM = re.compile(
    r"(?P<stamp>\d{4}-\d\d-\d\d \d\d:\d\d:\d\d)(?P<frac>\.\d{1,6})?(?: (?P<zone>[+-]\d{4}))?"
    r"(?: \[(?P<pid>\d+)\])? (?P<msg>.*)"
)
# Program of a tag: "postfix/submission/smtpd" in "postfix/submission/smtpd[123]: ".
_PROG = re.compile(r"[A-Za-z0-9_.@/-]{1,128}")
# Dovecot's own log file: process name, optional "(pid)" or 2.4's "(user,ip,...)<session>",
# then a level.
_DOVECOT_FILE = re.compile(
    r"(?P<tag>[a-z][a-z0-9-]{0,40}(?:\([^()]{0,400}\))?(?:<[^<>\s]{0,80}>)?): "
    r"(?:Info|Warning|Error|Fatal|Panic|Debug): (?P<msg>.*)"
)
LEVEL_RE = r"(?:Info|Warning|Error|Fatal|Panic|Debug): "
DOVECOT_LEVEL = re.compile(LEVEL_RE)
_BSD_V = re.compile(r"<[a-z0-9]{1,10}\.[a-z0-9]{1,10}> ")  # syslogd -v: <2.6> / <mail.info>
_BUSYBOX = re.compile(
    r"[a-z0-9]{1,10}\.(?:emerg|alert|crit|err|error|warn|warning|notice|info|debug|panic|none) "
)

MAX_LINE_CHARS = 16 * 1024  # longer is not a mail-log line we understand; drop it unparsed


class Header(NamedTuple):
    """A NamedTuple, not a frozen dataclass: built for every line that passes the prefilter,
    and a tuple is several times cheaper to make."""

    time: float
    prog: str
    pid: int | None
    msg: str


# The common case, one match: RFC 3164 stamp (whole seconds), a host that is not "<fac.pri>",
# does not end in ":" (Dovecot's own file) and is followed straight by "prog[pid]: " or "prog: "
# (not busybox's "mail.info"). Everything it takes is what the general path below would take.
# Groups: stamp, prog, pid (None without one). log_parser matches the message forms it acts on
# in the same regex (FAST_HEADER_RE + its own alternatives). The repeats are possessive (none
# can give back a character that what follows it would take).
FAST_HEADER_RE = (
    r"([A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d) [^\s<]\S*+(?<!:) "
    r"([A-Za-z0-9_.@/-]{1,128}+)(?:\[([0-9]{1,10}+)\])?: "
)
FAST_HEADER = re.compile(FAST_HEADER_RE)
LEVEL_INITIALS = frozenset("IWEFPD")  # Info Warning Error Fatal Panic Debug


def parse_header(line: str, reference_time: float, tz: tzinfo = UTC) -> Header | None:
    """The line's time, program, pid and message; None when the line has no shape we know."""
    if line[-1:] in ("\n", "\r"):
        line = line.rstrip("\r\n")
    if not line or len(line) > MAX_LINE_CHARS:
        return None
    f = FAST_HEADER.match(line)
    if f is not None:
        stamp, prog, pid = f.groups()
        # Exim to syslog repeats its stamp; a "\n" inside ends the message there ("." below)
        if not prog.startswith("exim") and "\n" not in line:
            t = rfc3164_seconds(stamp, int(reference_time // 3600), tz)
            if t is None:
                return None
            msg = line[f.end():]
            if msg[:1] in LEVEL_INITIALS:
                lvl = DOVECOT_LEVEL.match(msg)
                if lvl:
                    msg = msg[lvl.end():]
            return Header(t, prog, int(pid) if pid is not None else None, msg)
    return parse_general(line, reference_time, tz)


def parse_general(line: str, reference_time: float, tz: tzinfo = UTC) -> Header | None:
    """parse_header without its fast path (every format; the line already stripped)."""
    if line[0] == "<":
        m = _PRI.match(line)
        if m:
            line = line[m.end():]
            if line.startswith("1 "):
                return _rfc5424(line, reference_time, tz)
    c = line[0]
    if c.isalpha():
        m = _RFC3164.match(line)
        if m:
            t = rfc3164_seconds(m["stamp"], int(reference_time // 3600), tz)
            if t is None:
                return None
            if m["frac"]:
                t += float(m["frac"])
            return _after_stamp(m["rest"], t)
        return _tagged(line, reference_time)
    if c.isdigit():
        if len(line) > 10 and line[10] == "T":
            m = _RFC3339.match(line)
            if not m:
                return None
            t = _iso_seconds(m["stamp"], m["zone"] or "", tz)
            if t is None:
                return None
            if m["frac"]:
                t += float(m["frac"])
            return _after_stamp(m["rest"], t)
        if line.startswith("1 ") and len(line) > 2 and (line[2].isdigit() or line[2] == "-"):
            return _rfc5424(line, reference_time, tz)
        m = _EXIM.match(line)
        if m:
            return _exim(m, tz)
    return _tagged(line, reference_time)


def _after_stamp(rest: str, t: float) -> Header | None:
    """What follows a syslog stamp: [<fac.pri>] host [fac.level] tag, or a Dovecot file line."""
    if rest.startswith("<"):
        v = _BSD_V.match(rest)
        if v:
            rest = rest[v.end():]
    host, sep, after = rest.partition(" ")
    if not sep:
        return None
    if host.endswith(":"):  # no host at all ("prog: msg" straight after the stamp)
        d = _DOVECOT_FILE.match(rest)
        if d:
            return Header(t, "dovecot", None, f"{d['tag']}: {d['msg']}")
        after = rest
    else:
        b = _BUSYBOX.match(after)
        if b:
            after = after[b.end():]
    return _tagged(after, t)


def _tagged(rest: str, t: float) -> Header | None:
    """"prog[pid]: msg" or "prog: msg" (string scanning: this runs for every syslog line)."""
    i = rest.find(": ")
    if i <= 0 or i > 141:
        return None
    prog, msg, pid = rest[:i], rest[i + 2:], None
    if prog[-1] == "]":
        j = prog.rfind("[")
        digits = prog[j + 1:-1]
        if j <= 0 or not digits.isdigit() or len(digits) > 10:
            return None
        prog, pid = prog[:j], int(digits)
    if not _PROG.fullmatch(prog):
        return None
    if msg[:1].isdigit() and prog.startswith("exim"):
        inner = _EXIM.match(msg)  # Exim to syslog keeps its own stamp (syslog_timestamp)
        if inner:
            msg = inner["msg"]
            if inner["pid"]:
                pid = int(inner["pid"])
    else:
        lvl = DOVECOT_LEVEL.match(msg)
        if lvl:
            msg = msg[lvl.end():]
    return Header(t, prog, pid, msg)


def _rfc5424(line: str, reference_time: float, tz: tzinfo) -> Header | None:
    m = _RFC5424.match(line)
    if not m:
        return None
    ts = m["ts"]
    if ts == "-":
        t: float | None = reference_time
    else:
        s = _RFC3339_TS.match(ts)
        if not s:
            return None
        t = _iso_seconds(s["stamp"], s["zone"] or "", tz)
        if t is not None and s["frac"]:
            t += float(s["frac"])
    if t is None:
        return None
    msg = _skip_structured_data(m["rest"])
    if msg is None:
        return None
    if msg.startswith("\ufeff"):
        msg = msg[1:]
    app, procid = m["app"], m["procid"]
    if app == "-":
        return _tagged(msg, t)  # some senders leave APP-NAME out and keep a tag in MSG
    pid = int(procid) if procid.isdigit() and len(procid) <= 10 else None
    if app.startswith("exim") and msg[:1].isdigit():
        inner = _EXIM.match(msg)
        if inner:
            msg = inner["msg"]
    return Header(t, app, pid, msg)


_RFC3339_TS = re.compile(
    r"(?P<stamp>\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?P<frac>\.\d{1,9})?(?P<zone>Z|[+-]\d\d:\d\d)$"
)


def _skip_structured_data(rest: str) -> str | None:
    """MSG after RFC 5424 STRUCTURED-DATA ("-" or [id k="v" ...]..., values may hold \\" \\]).
    None when the structured data is not closed."""
    if rest.startswith("-"):
        return rest[2:] if rest.startswith("- ") else rest[1:]
    i, n = 0, len(rest)
    while i < n and rest[i] == "[":
        i += 1
        quoted = False
        while i < n:
            ch = rest[i]
            if quoted:
                if ch == "\\":
                    i += 1
                elif ch == '"':
                    quoted = False
            elif ch == '"':
                quoted = True
            elif ch == "]":
                break
            i += 1
        if i >= n:
            return None
        i += 1  # past "]"
    return rest[i + 1:] if rest[i:i + 1] == " " else rest[i:]


@lru_cache(maxsize=512)
def rfc3164_seconds(stamp: str, ref_hour: int, tz: tzinfo) -> float | None:
    """Epoch seconds of "Nov 29 10:15:02" in zone tz, in the year closest to the reference."""
    mon = _MONTHS.get(stamp[:3])
    if mon is None:
        return None
    reference_time = ref_hour * 3600.0
    ref_year = datetime.fromtimestamp(reference_time, tz).year
    day, h, mi, s = int(stamp[4:6]), int(stamp[7:9]), int(stamp[10:12]), int(stamp[13:15])
    best: float | None = None
    for year in (ref_year - 1, ref_year, ref_year + 1):
        try:
            t = datetime(year, mon, day, h, mi, s, tzinfo=tz).timestamp()
        except ValueError:  # Feb 29 in a non-leap year, day 31 in a short month, 25:00 ...
            continue
        if best is None or abs(t - reference_time) < abs(best - reference_time):
            best = t
    return best


@lru_cache(maxsize=512)
def _iso_seconds(stamp: str, zone: str, tz: tzinfo) -> float | None:
    """Epoch seconds of "2026-11-29T10:15:02" (or with a space) plus "Z"/"+01:00"/"+0100"/""."""
    try:
        dt = datetime.fromisoformat(stamp)
    except ValueError:
        return None
    if not zone:
        dt = dt.replace(tzinfo=tz)
    elif zone == "Z":
        dt = dt.replace(tzinfo=UTC)
    else:
        sign = 1 if zone[0] == "+" else -1
        digits = zone[1:].replace(":", "")
        off = timedelta(hours=int(digits[:2]), minutes=int(digits[2:4]))
        if off >= timedelta(hours=24):
            return None
        dt = dt.replace(tzinfo=timezone(sign * off))
    return dt.timestamp()


def _exim(m: re.Match[str], tz: tzinfo) -> Header | None:
    d = _DOVECOT_FILE.match(m["msg"])  # Dovecot log file with log_timestamp "%Y-%m-%d %H:%M:%S "
    t = _iso_seconds(m["stamp"], m["zone"] or "", tz)
    if t is None:
        return None
    if m["frac"]:
        t += float(m["frac"])
    if d and not m["zone"] and not m["pid"]:
        return Header(t, "dovecot", None, f"{d['tag']}: {d['msg']}")
    return Header(t, "exim", int(m["pid"]) if m["pid"] else None, m["msg"])
