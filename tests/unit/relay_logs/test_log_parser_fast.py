# ruff: noqa: E501  (log fixture lines are as long as real ones)
"""LogParser.feed's one-regex fast path against the general path (prefilter, parse_header,
_dispatch) on a mutated corpus: the same events, delivery events and parser state, line by line,
under several configurations and reference times."""

from __future__ import annotations

import random
import re
from datetime import UTC, datetime
from pathlib import Path

import pytest

from relayguard.relay import log_parser as LP
from relayguard.relay import log_patterns as P
from relayguard.relay.log_header import FAST_HEADER, parse_general, parse_header, rfc3164_seconds
from relayguard.relay.log_parser import LogParser
from relayguard.stream.records import LoginEvent

REF = datetime(2026, 11, 29, 12, tzinfo=UTC).timestamp()
EDITS = ["", " ", ":", "<2.6> ", "mail.info ", "exim", "[1]", "[x]", "Info: ", ".123", "\t",
         "auth: ", "Error: ", "[12345678901]", "\r", "\n", "[0]", "[007]", "Debug: ", "smtpd",
         "/smtpd", "disconnect from ", "connect from ", "warning: ", ", sasl_username=",
         "status=sent", "status=bounced", "status=deferred", " A=", "PASSWORD MISMATCH",
         "Feb 30", "Nov 31", "25:", "-login: ", "submission-login: ", ",", "dovecot: "]
# Lines made for the fast path's own decisions (each next to what the general path does).
EDGES = """\
Nov 29 10:15:02 mx1 dovecot-login: auth: passwd-file(u1,192.0.2.7): Password mismatch
Nov 29 10:15:03 mx1 postfix/smtpd[5]: warning: unknown[192.0.2.7]: SASL PLAIN authentication failed: x
Nov 29 10:15:02 mx1 postfix/smtpd[007]: connect from a[192.0.2.1]
Nov 29 10:15:02 mx1 postfix/smtpd[007]: ABCDE1: client=a[192.0.2.1], sasl_method=PLAIN, sasl_username=u7
Nov 29 10:15:02 mx1 postfix/smtpd: ABCDE2: client=a[192.0.2.1], sasl_method=PLAIN, sasl_username=u8
Nov 29 10:15:02 mx1 postfix/smtpd[0]: ABCDE3: client=a[192.0.2.1], sasl_method=PLAIN, sasl_username=u8
Nov 29 10:15:02 mx1 postfix/smtpd[9]: Debug: ABCDE4: client=a[192.0.2.1], sasl_method=PLAIN, sasl_username=u9
Nov 29 10:15:02 mx1 postfix/smtpd[9]: Debug: client=a[192.0.2.1], sasl_method=PLAIN, sasl_username=u9
Nov 29 10:15:02 mx1 postfix/smtpd[9]: warning: client=a[192.0.2.1], sasl_method=PLAIN, sasl_username=u9
Nov 29 10:15:02 mx1 postfix/smtpd[9]: Info: connect from a[192.0.2.1]
Nov 29 10:15:02 mx1 exim/smtpd[9]: ABCDE5: client=a[192.0.2.1], sasl_method=PLAIN, sasl_username=u9
Nov 29 10:15:02 mx1 xsmtpd[9]: ABCDE6: client=a[192.0.2.1], sasl_method=PLAIN, sasl_username=u9
Feb 30 10:15:02 mx1 postfix/smtpd[9]: ABCDE7: client=a[192.0.2.1], sasl_method=PLAIN, sasl_username=u9
Nov 29 10:15:02 mx1 postfix/smtpd[9]: ABCDE8: client=a[192.0.2.1], sasl_method=PLAIN, sasl_username=u9, orig_client=x
Nov 29 10:15:02 mx1 postfix/smtpd[9]: ABCDE9: client=a[192.0.2.1], sasl_method=PLAIN, sasl_username=u9, Bad
Nov 29 10:15:02 mx1 dovecot: auth: passwd-file(u2,192.0.2.8): PASSWORD MISMATCH
Nov 29 10:15:02 mx1 dovecot: connect from x auth: passwd-file(u2,192.0.2.8): PASSWORD MISMATCH
Nov 29 10:15:02 mx1 dovecot: imap-login: Login: user=<u3>, method=PLAIN, rip=192.0.2.9, lip=192.0.2.1, TLS, submission-login
Nov 29 10:15:02 mx1 dovecot: submission-login: Login: user=<u3>, method=PLAIN, rip=192.0.2.9, lip=192.0.2.1, TLS
Nov 29 10:15:02 mx1 postfix/qmgr[1]: ABCDE1: from=<a@b>, status=expired, returned to sender
Nov 29 10:15:02 mx1 postfix/cleanup[1]: ABCDE1: to=<x@dead.example>, relay=r[1.2.3.4]:25, delay=1, delays=1/0/0/0, dsn=5.1.1, status=bounced (x)
Nov 29 10:15:02 mx1 postfix/smtp[1]: ABCDE1: to=<x@dead.example>, relay=r[1.2.3.4]:25, delay=1, delays=1/0/0/0, dsn=5.1.1, status=bounced (x)
Nov 29 10:15:02 mx1 postfix/smtp[1]: ABCDE1: to=<status=bounced@x>, relay=r[1.2.3.4]:25, delay=1, delays=1/0/0/0, dsn=2.0.0, status=sent (x)
Nov 29 10:15:02 mx1 postfix/submission/smtpd[3]: Anonymous TLS connection established from a[192.0.2.1]: TLSv1.3 with cipher X\r
Nov 29 10:15:02 mx1 postfix/submission/smtpd[3]: ABCDF1: client=a[192.0.2.1], sasl_method=PLAIN, sasl_username=u4\r
Nov 29 10:15:02 mx1 postfix/submission/smtpd[4]: warning: a[192.0.2.2]: SASL LOGIN authentication failed: x\nnext
Nov 29 10:15:02 mx1 postfix/submission/smtpd[4]: disconnect from a[192.0.2.2]\nnext
"""


def corpus() -> list[str]:
    import sys

    root = Path(__file__).resolve().parents[3]
    sys.path.insert(0, str(root / "bench"))
    try:
        from log_parser_bench import generate
    finally:
        sys.path.pop(0)
    lines = generate(4000, 12)
    for f in sorted((Path(__file__).parent / "samples").glob("*.log")):
        lines += f.read_text().splitlines()
    lines += EDGES.replace("\\r", "\r").replace("\\n", "\n").splitlines()
    rnd = random.Random(4)
    out = []
    for line in lines:
        out.append(line)
        for _ in range(3):
            i = rnd.randrange(len(line) + 1)
            out.append(line[:i] + rnd.choice(EDITS) + line[i + rnd.randrange(3):])
    return out


CORPUS = corpus()


def general(p: LogParser, line: str, ref: float, line_id: str | None) -> list[LoginEvent]:
    """What feed did before the fast path: prefilter, parse_header, the rules by program."""
    if not (P.may_matter(line) or (p.sent_deliveries and "status=sent" in line)):
        return []
    h = parse_header(line, ref, p.tz)
    if h is None:
        return []
    return p._dispatch(h, line_id if line_id is not None else LP._hash(line))


def state(p: LogParser) -> tuple[object, ...]:
    q = p.queue
    return (list(p._sessions.items()), list(p._verdicts.items()), list(p._exim_seen.items()),
            list(q._ids.items()), q.stats, p._pending)


@pytest.mark.parametrize("config", [
    {"deliveries": True},
    {"deliveries": True, "sent_deliveries": True},
    {},
    {"deliveries": True, "max_sessions": 3, "max_verdicts": 2},
])
def test_fast_path_gives_what_the_general_path_gives(config: dict[str, object]) -> None:
    fast, slow = LogParser("r", **config), LogParser("r", **config)  # type: ignore[arg-type]
    forms: dict[str | None, int] = {}
    events = 0
    for i, line in enumerate(CORPUS):
        # the follower's clock moves; every 500 lines jump an hour (a new stamp table)
        ref = REF + (i // 500) * 3600.0 + (i % 7)
        line_id = str(i) if i % 5 else None
        got = fast.feed(line, ref, line_id)
        want = general(slow, line, ref, line_id)
        assert got == want, line
        assert [type(e) for e in got] == [type(e) for e in want]
        assert fast.pop_deliveries() == slow.pop_deliveries(), line
        assert state(fast) == state(slow), line
        m = LP._LINE.match(line)
        forms[m.lastgroup if m else "no match"] = forms.get(m.lastgroup if m else "no match", 0) + 1
        events += len(got)
    # the corpus exercised every form and the general path
    assert all(forms.get(k, 0) > 50 for k in ("reset", "tls", "fail", "client", None, "no match"))
    assert forms.get("nopid", 0) > 0
    assert events > 500


def test_fast_header_groups_are_the_general_header() -> None:
    """The header _LINE takes (stamp, prog, pid, message start) is parse_general's."""
    checked = 0
    for line in CORPUS:
        m = LP._LINE.match(line)
        if m is None or "\n" in line or line.endswith("\r"):
            continue
        want = parse_general(line, REF)
        t = rfc3164_seconds(m["stamp"], int(REF // 3600), UTC)
        if t is None:
            continue
        pid = m["pid"]
        assert want == (t, m["prog"], int(pid) if pid else None, line[m.end(LP._MSG):]), line
        assert m["key"] == LP._session_key(m["prog"], int(pid) if pid else None) or not pid
        f = FAST_HEADER.match(line)
        assert f is not None and f[2] == m["prog"]
        checked += 1
    assert checked > 10000


def test_client_rule_is_the_lazy_one_on_messages_without_a_final_newline() -> None:
    host = r"(?P<host>[^\s\[\]]*)\[(?P<ip>[^\]\s]{2,80})\](?::\d{1,5})?"
    lazy = re.compile(r"(?P<qid>[0-9A-Za-z]{5,20}): client=" + host
                      + r", sasl_method=(?P<mech>[A-Za-z0-9_-]{1,40}), "
                      r"sasl_username=(?P<user>[^,\s][^,]*?)(?:, [a-z_]+=.*)?$")
    tls = re.compile(r"(?:Anonymous|Trusted|Verified|Untrusted) TLS connection established from "
                     + host + r": (?P<proto>[A-Za-z0-9.]{2,32}) with cipher ")
    n = 0
    for line in CORPUS:
        at = line.find(": ", line.find("]: ") + 1) if "client=" in line else line.find("]: ")
        for msg in (line[line.find("]: ") + 3:], line[at + 2:] if at != -1 else line):
            msg = msg.rstrip("\r\n")
            old, new = lazy.match(msg), P.PF_CLIENT.match(msg)
            assert (old is None) == (new is None), msg
            if old and new:
                n += 1
                assert old.group("qid", "ip", "mech", "user") == new.group("qid", "ip", "mech", "user")
            o, w = tls.match(msg), P.PF_TLS.match(msg)
            assert (o is None) == (w is None), msg
            if o and w:
                assert (o["ip"], o["proto"]) == (w["ip"], w["proto"]), msg
    assert n > 1000


def test_login_event_maker_is_the_dataclass() -> None:
    assert LP._login_event is not LoginEvent  # the fast maker is in use
    args = ("x", 1.5, "r", "u", "192.0.2.1", False, "TLSv1.3", "PLAIN", "bad_credentials",
            "postfix-log", "sha1:ab")
    made, want = LP._login_event(*args), LoginEvent(*args)
    assert made == want and type(made) is LoginEvent and hash(made) == hash(want)
    assert [getattr(made, f) for f in LP._LOGIN_FIELDS] == [getattr(want, f) for f in LP._LOGIN_FIELDS]
