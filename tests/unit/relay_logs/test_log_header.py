# ruff: noqa: E501  (log fixture lines are as long as real ones)
"""Timestamps and program tags of mail-log lines."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from relayguard.relay.log_header import parse_header


def ts(y: int, mo: int, d: int, h: int, mi: int, s: int) -> float:
    return datetime(y, mo, d, h, mi, s, tzinfo=UTC).timestamp()


REF = ts(2026, 11, 29, 12, 0, 0)


def test_rfc3164_takes_year_from_reference() -> None:
    h = parse_header("Nov 29 10:15:02 mx1 postfix/submission/smtpd[21837]: hello", REF)
    assert h is not None
    assert h.time == ts(2026, 11, 29, 10, 15, 2)
    assert (h.prog, h.pid, h.msg) == ("postfix/submission/smtpd", 21837, "hello")


def test_rfc3164_single_digit_day_is_space_padded() -> None:
    h = parse_header("Nov  3 01:02:03 mx1 postfix/smtpd[7]: x", REF)
    assert h is not None and h.time == ts(2026, 11, 3, 1, 2, 3)


def test_december_line_read_in_january_is_last_year() -> None:
    ref = ts(2027, 1, 1, 0, 0, 30)
    h = parse_header("Dec 31 23:59:58 mx1 postfix/smtpd[7]: x", ref)
    assert h is not None and h.time == ts(2026, 12, 31, 23, 59, 58)


def test_january_line_with_reference_still_in_december_is_next_year() -> None:
    ref = ts(2026, 12, 31, 23, 59, 59)
    h = parse_header("Jan  1 00:00:02 mx1 postfix/smtpd[7]: x", ref)
    assert h is not None and h.time == ts(2027, 1, 1, 0, 0, 2)


def test_feb_29_picks_a_leap_year() -> None:
    ref = ts(2028, 3, 1, 0, 0, 0)
    h = parse_header("Feb 29 10:00:00 mx1 postfix/smtpd[7]: x", ref)
    assert h is not None and h.time == ts(2028, 2, 29, 10, 0, 0)


def test_rfc3164_uses_given_zone() -> None:
    h = parse_header("Nov 29 10:15:02 mx1 postfix/smtpd[7]: x", REF, ZoneInfo("Europe/Berlin"))
    assert h is not None and h.time == ts(2026, 11, 29, 9, 15, 2)


@pytest.mark.parametrize(
    ("stamp", "expected"),
    [
        ("2026-11-29T10:15:02.123456+00:00", ts(2026, 11, 29, 10, 15, 2) + 0.123456),
        ("2026-11-29T10:15:02Z", ts(2026, 11, 29, 10, 15, 2)),
        ("2026-11-29T11:15:02+01:00", ts(2026, 11, 29, 10, 15, 2)),
        ("2026-11-29T10:15:02+0000", ts(2026, 11, 29, 10, 15, 2)),
    ],
)
def test_rfc3339(stamp: str, expected: float) -> None:
    h = parse_header(f"{stamp} mx1 postfix-out/smtpd[9]: msg here", REF)
    assert h is not None
    assert h.time == pytest.approx(expected)
    assert (h.prog, h.pid, h.msg) == ("postfix-out/smtpd", 9, "msg here")


def test_dovecot_log_file_has_no_host_and_a_level() -> None:
    h = parse_header("Nov 29 10:15:02 auth: Info: passwd-file(alice,127.0.0.1): x", REF)
    assert h is not None
    # the same program and message as Dovecot writes to syslog ("dovecot: auth: ...")
    assert (h.prog, h.pid, h.msg) == ("dovecot", None, "auth: passwd-file(alice,127.0.0.1): x")


def test_exim_mainlog_with_zone_and_pid() -> None:
    h = parse_header("2026-11-29 11:15:02 +0100 [4242] 1tAbCd-000123-AB <= a@b", REF)
    assert h is not None
    assert (h.time, h.prog, h.pid) == (ts(2026, 11, 29, 10, 15, 2), "exim", 4242)
    assert h.msg == "1tAbCd-000123-AB <= a@b"


def test_bare_tag_uses_reference_time() -> None:
    h = parse_header("postfix/smtpd[5]: connect from x[1.2.3.4]", REF)
    assert h is not None and h.time == REF and h.pid == 5


@pytest.mark.parametrize(
    "line",
    [
        "",
        "\n",
        "garbage without any structure",
        "Nov 29 10:15",  # truncated stamp
        "Nov 29 10:15:02",  # stamp only
        "Nov 31 10:15:02 mx1 postfix/smtpd[1]: day 31 in November",
        "Foo 29 10:15:02 mx1 postfix/smtpd[1]: no such month",
        "2026-13-40T99:99:99Z mx1 postfix/smtpd[1]: bad date",
        "x" * 20000,
    ],
)
def test_unparseable_lines_give_none(line: str) -> None:
    assert parse_header(line, REF) is None


@pytest.mark.parametrize(
    ("line", "prog", "pid", "msg"),
    [
        ('<22>1 2026-11-29T10:15:02.5Z mx1 postfix/smtpd 77 - [a b="x\\]y"] hello', "postfix/smtpd", 77, "hello"),
        ("<22>1 2026-11-29T10:15:02Z mx1 postfix/smtpd - - - hello", "postfix/smtpd", None, "hello"),
        ("<22>1 2026-11-29T10:15:02Z mx1 - - - - postfix/smtpd[8]: hello", "postfix/smtpd", 8, "hello"),
        ("Nov 29 10:15:02 <2.6> mx1 postfix/smtpd[7]: hello", "postfix/smtpd", 7, "hello"),
        ("Nov 29 10:15:02 <mail.info> mx1 postfix/smtpd[7]: hello", "postfix/smtpd", 7, "hello"),
        ("Nov 29 10:15:02 mx1 mail.info postfix/smtpd[7]: hello", "postfix/smtpd", 7, "hello"),
        ("<22>Nov 29 10:15:02 mx1 postfix/smtpd[7]: hello", "postfix/smtpd", 7, "hello"),
        ("Nov 29 10:15:02 auth-worker(22401): Info: pam(a,1.2.3.4): x", "dovecot", None, "auth-worker(22401): pam(a,1.2.3.4): x"),
        ("Nov 29 10:15:02 auth(a,1.2.3.4,sasl:login)<S1>: Info: passwd-file: x", "dovecot", None, "auth(a,1.2.3.4,sasl:login)<S1>: passwd-file: x"),
        ("2026-11-29 10:15:02 submission-login: Info: Login: user=<a>", "dovecot", None, "submission-login: Login: user=<a>"),
        ("Nov 29 10:15:02 mx1 exim[12]: 2026-11-29 10:15:02 +0000 [34] 1tAb <= a@b", "exim", 34, "1tAb <= a@b"),
        ("Nov 29 10:15:02 mx1 exim4[12]: 1tAb <= a@b", "exim4", 12, "1tAb <= a@b"),
    ],
)
def test_header_forms(line: str, prog: str, pid: int | None, msg: str) -> None:
    h = parse_header(line, REF)
    assert h is not None
    assert (h.prog, h.pid, h.msg) == (prog, pid, msg)
    assert abs(h.time - ts(2026, 11, 29, 10, 15, 2)) < 1


def test_rfc5424_nil_stamp_uses_reference_time() -> None:
    h = parse_header("<22>1 - mx1 postfix/smtpd 7 - - hello", REF)
    assert h is not None and h.time == REF


@pytest.mark.parametrize(
    "line",
    [
        "<22>1 2026-11-29T10:15:02 mx1 postfix/smtpd 7 - - RFC 5424 requires a zone",
        "<22>1 2026-11-29T10:15:02Z mx1 postfix/smtpd 7 - [unclosed a=\"b\"",
        "<22>1 garbage",
        "2026-11-29T10:15:02+25:00 mx1 postfix/smtpd[1]: offset out of range",
    ],
)
def test_unparseable_new_forms_give_none(line: str) -> None:
    assert parse_header(line, REF) is None


def test_stamp_cache_keeps_zone_and_year_apart() -> None:
    berlin = ZoneInfo("Europe/Berlin")
    a = parse_header("Nov 29 10:15:02 mx1 p[1]: x", REF)
    b = parse_header("Nov 29 10:15:02 mx1 p[1]: x", REF, berlin)
    c = parse_header("Nov 29 10:15:02 mx1 p[1]: x", ts(2027, 11, 1, 0, 0, 0))
    assert a is not None and b is not None and c is not None
    assert a.time - b.time == 3600 and c.time - a.time == 365 * 86400


def _corpus() -> list[str]:
    import random
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[3]
    sys.path.insert(0, str(root / "bench"))
    try:
        from log_parser_bench import generate
    finally:
        sys.path.pop(0)
    lines = generate(3000, 11)
    samples = Path(__file__).parent / "samples"
    for f in sorted(samples.glob("*.log")):
        lines += f.read_text().splitlines()
    rnd = random.Random(3)
    edits = ["", " ", ":", "<2.6> ", "mail.info ", "exim", "[1]", "[x]", "Info: ", ".123",
             "\t", "auth: ", "Error: ", "[12345678901]", "\r", "\n"]
    out = []
    for line in lines[:4000]:
        out.append(line)
        for _ in range(3):
            i = rnd.randrange(len(line) + 1)
            out.append(line[:i] + rnd.choice(edits) + line[i + rnd.randrange(3):])
    return out


def test_fast_path_gives_what_the_general_path_gives() -> None:
    from datetime import UTC

    from relayguard.relay.log_header import FAST_HEADER, parse_general

    ref = datetime(2026, 11, 29, 12, tzinfo=UTC).timestamp()
    fast = 0
    for line in _corpus():
        got = parse_header(line, ref)
        stripped = line.rstrip("\r\n")
        want = parse_general(stripped, ref) if stripped else None
        assert got == want, line
        fast += bool(stripped) and FAST_HEADER.match(stripped) is not None
    assert fast > 5000  # the corpus did exercise the fast path


def test_parser_session_lane_changes_nothing() -> None:
    """LogParser.feed's shortcut for smtpd session lines gives the events and session state
    that parse_header + the general dispatch give, on the same mutated corpus."""
    from datetime import UTC

    from relayguard.relay import log_patterns as P
    from relayguard.relay.log_parser import LogParser

    ref = datetime(2026, 11, 29, 12, tzinfo=UTC).timestamp()
    fast, slow = LogParser("r", deliveries=True), LogParser("r", deliveries=True)
    got, want = [], []
    odd = ["Nov 29 10:15:02 sasl_method= postfix/smtpd[1]: ",  # empty message
           "Feb 30 10:15:02 mx postfix/smtpd[1]: connect from a[192.0.2.1]"]  # no such day
    for i, line in enumerate([*_corpus(), *odd]):
        got += fast.feed(line, ref, str(i)) + fast.pop_deliveries()  # type: ignore[operator]
        if P.may_matter(line):
            h = parse_header(line, ref)
            if h is not None:
                want += slow._dispatch(h, str(i)) + slow.pop_deliveries()  # type: ignore[operator]
        assert fast._sessions == slow._sessions, line
    assert got == want
    assert len(got) > 500


def test_postfix_failure_rule_splits_as_the_lazy_regex_did() -> None:
    """PF_AUTH_FAIL + failure_tail give, on the mutated corpus (and a few hand-made tails),
    exactly the groups the earlier lazy pattern gave."""
    import re

    from relayguard.relay import log_patterns as P

    host = r"(?P<host>[^\s\[\]]*)\[(?P<ip>[^\]\s]{2,80})\](?::\d{1,5})?"
    lazy_fail = re.compile(
        r"warning: " + host + r": SASL (?P<mech>[A-Za-z0-9_-]{1,40}) authentication failed:"
        r"(?P<reason>.*?)(?:, sasl_username=(?P<user>.*))?$")
    base_fail = "warning: unknown[192.0.2.1]: SASL LOGIN authentication failed:"
    extra = [base_fail + t for t in ("", " ", " x, sasl_username=u", ", sasl_username=",
                                     " a, b, sasl_username=u, sasl_username=v", " x\ny",
                                     " x, sasl_username=u\n")]
    fails = 0
    for line in [*_corpus(), *extra]:
        at = line.find("warning: ")
        msg = line[at:] if at != -1 else line
        old, new = lazy_fail.match(msg), P.PF_AUTH_FAIL.match(msg)
        assert (old is None) == (new is None), msg
        if old is not None and new is not None:
            fails += 1
            assert (old["ip"], old["mech"]) == (new["ip"], new["mech"])
            assert (old["reason"], old["user"]) == P.failure_tail(new["tail"]), msg
    assert fails > 300
