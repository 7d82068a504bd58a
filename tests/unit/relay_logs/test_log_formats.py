# ruff: noqa: E501  (log fixture lines are as long as real ones)
"""Parser breadth, one case per format and variant: Exim (IP-literal HELOs, Ci=, U=, I=, its own
stamp inside syslog, exim/exim4), Postfix empty reasons and client errors, Dovecot 2.3/2.4
verdicts of passwd-file, SQL, LDAP and PAM passdbs in syslog and in Dovecot's own log file,
Dovecot submission-login, and syslog headers (RFC 3164, RFC 5424, RFC 3339, BSD -v, busybox).

Every line was written for these tests from the formats' documentation (Exim spec ch. 52
"Log files" and smtp_in.c's host_and_ident, Postfix smtpd_sasl_glue.c, Dovecot's auth-request
log prefixes of 2.3 and 2.4, RFC 3164/5424/3339, FreeBSD syslogd(8), busybox syslogd)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from relayguard.relay.log_parser import LogParser
from relayguard.stream.codec import decode_event, encode_event
from relayguard.stream.detectors.common import is_guess
from relayguard.stream.records import LoginEvent

REF = datetime(2026, 11, 29, 12, 0, 0, tzinfo=UTC).timestamp()
T = datetime(2026, 11, 29, 10, 15, 2, tzinfo=UTC).timestamp()


def run(lines: str, parser: LogParser | None = None) -> list[LoginEvent]:
    p = parser or LogParser("relay-t1")
    out: list[LoginEvent] = []
    for i, line in enumerate(lines.strip("\n").splitlines()):
        out.extend(p.feed(line, REF, f"801:{i * 100}"))
    for e in out:  # every event must survive the wire schema
        assert decode_event(encode_event(e)) == e
    return out


# -- Exim ------------------------------------------------------------------------------------

EXIM_FAILURES = [
    # (line, ip, user, mechanism, failure_reason)
    ("2026-11-29 10:15:02 login authenticator failed for ([1.2.3.5]) [1.2.3.4]:55379: 535 Incorrect authentication data (set_id=admin@example.com)",
     "1.2.3.4", "admin@example.com", "LOGIN", "bad_credentials"),
    ("2026-11-29 10:15:02 dovecot_plain authenticator failed for ([192.0.2.77]) [203.0.113.20]: 535 Incorrect authentication data",
     "203.0.113.20", None, "PLAIN", "bad_credentials"),
    ("2026-11-29 10:15:02 plain_server authenticator failed for ([IPv6:2001:db8::9]) [2001:db8::5]:40100: 535 Incorrect authentication data (set_id=bob)",
     "2001:db8::5", "bob", "PLAIN", "bad_credentials"),
    ("2026-11-29 10:15:02 dovecot_login authenticator failed for mail.example.net ([198.51.100.3]) [198.51.100.3]:51515 I=[192.0.2.1]:587: 535 Incorrect authentication data (set_id=carol)",
     "198.51.100.3", "carol", "LOGIN", "bad_credentials"),
    ("2026-11-29 10:15:02 dovecot_login authenticator failed for (WIN-3KQ) [203.0.113.30]:60001 I=[192.0.2.1]:465 Ci=61234: 535 Incorrect authentication data (set_id=dave)",
     "203.0.113.30", "dave", "LOGIN", "bad_credentials"),
    ("2026-11-29 10:15:02 cram_md5 authenticator failed for h.example (helo) [203.0.113.31]:1025 U=nobody: 535 Incorrect authentication data (set_id=erin)",
     "203.0.113.31", "erin", "CRAM-MD5", "bad_credentials"),
    ("2026-11-29 10:15:02 plain authenticator failed for [203.0.113.32]:1026 Ci=4411 U=ident I=[192.0.2.1]:25: 535 Incorrect authentication data",
     "203.0.113.32", None, "PLAIN", "bad_credentials"),
    ("2026-11-29 11:15:02.123 +0100 [4242] dovecot_plain authenticator failed for (x) [203.0.113.33]:1: 435 Unable to authenticate at present (set_id=frank)",
     "203.0.113.33", "frank", "PLAIN", "backend_unavailable"),
    # Exim to syslog with its own stamp and pid in the message (syslog_timestamp = true)
    ("Nov 29 10:15:02 mx1 exim[1234]: 2026-11-29 10:15:02 [1234] login authenticator failed for ([1.2.3.5]) [1.2.3.6]:55380: 535 Incorrect authentication data (set_id=grace)",
     "1.2.3.6", "grace", "LOGIN", "bad_credentials"),
    ("Nov 29 10:15:02 mx1 exim4[99]: 2026-11-29 10:15:02 +0000 login authenticator failed for (u) [1.2.3.7]: 535 Incorrect authentication data (set_id=heidi)",
     "1.2.3.7", "heidi", "LOGIN", "bad_credentials"),
    # Exim to syslog without its own stamp (syslog_timestamp = false), RFC 3339 header
    ("2026-11-29T10:15:02+00:00 mx1 exim[798150]: fixed_login authenticator failed for ([127.0.0.1]) [198.51.100.40]: 535 Incorrect authentication data (set_id=ivan@example.org)",
     "198.51.100.40", "ivan@example.org", "LOGIN", "bad_credentials"),
    ("Nov 29 10:15:02 mx1 exim4[7]: plain_login authenticator failed for ([[1.2.3.8]]) [1.2.3.9]:2: 535 Incorrect authentication data (set_id=judy)",
     "1.2.3.9", "judy", "PLAIN", "bad_credentials"),
]


@pytest.mark.parametrize(("line", "ip", "user", "mech", "reason"), EXIM_FAILURES)
def test_exim_failures(line: str, ip: str, user: str | None, mech: str, reason: str) -> None:
    [e] = run(line)
    assert (e.client_ip, e.user, e.sasl_mechanism, e.failure_reason, e.success, e.source) == (
        ip, user, mech, reason, False, "exim-log")
    assert abs(e.event_time - T) < 1  # 10:15:02 UTC in every stamp above (.123 in one)


def test_exim_success_in_syslog_with_bracketed_helo_and_ident() -> None:
    [e] = run("Nov 29 10:15:02 mx1 exim4[55]: 2026-11-29 10:15:02 [55] 1tAbCd-000123-AB <= alice@relay.test "
              "H=([192.0.2.200]) [198.51.100.4]:587 U=ident I=[192.0.2.1]:587 P=esmtpsa X=TLS1.3:TLS_AES_256_GCM_SHA384:256 "
              "CV=no A=dovecot_plain:alice S=384 id=x@y")
    assert (e.success, e.user, e.client_ip, e.tls_protocol, e.sasl_mechanism) == (
        True, "alice", "198.51.100.4", "TLSv1.3", "PLAIN")


def test_exim_success_with_connection_id_and_ident() -> None:
    # Exim 4.97 log_selector +connection_id adds Ci= to connection and message-accept lines
    [e] = run("2026-11-29 10:15:02.250 +0000 [4711] 1tAbCd-000000-00AB <= bob@relay.test "
              "H=([203.0.113.8]) [198.51.100.5]:40200 I=[192.0.2.1]:587 Ci=4711 U=ident P=esmtpsa "
              "X=TLS1.2:ECDHE-RSA-AES256-GCM-SHA384:256 CV=no A=dovecot_login:bob S=1200 id=a@b")
    assert (e.success, e.user, e.client_ip, e.tls_protocol, e.sasl_mechanism) == (
        True, "bob", "198.51.100.5", "TLSv1.2", "LOGIN")


# -- Postfix ----------------------------------------------------------------------------------

SMTPD = "Nov 29 10:15:02 mx1 postfix/submission/smtpd[21837]: "


@pytest.mark.parametrize(
    ("tail", "user"),
    [
        ("warning: unknown[203.0.113.9]: SASL LOGIN authentication failed:", None),
        ("warning: unknown[203.0.113.9]: SASL LOGIN authentication failed: ", None),
        ("warning: unknown[203.0.113.9]:33445: SASL PLAIN authentication failed: , sasl_username=kim", "kim"),
    ],
)
def test_postfix_empty_reason_is_a_failure(tail: str, user: str | None) -> None:
    [e] = run(SMTPD + tail)
    assert (e.success, e.client_ip, e.user, e.failure_reason) == (
        False, "203.0.113.9", user, "bad_credentials")
    assert is_guess(e)


def test_postfix_invalid_mechanism_is_a_client_error_not_a_guess() -> None:
    lines = ("Nov 29 10:15:01 mx1 dovecot: auth: passwd-file(alice,203.0.113.9): Password mismatch\n"
             + SMTPD + "warning: unknown[203.0.113.9]: SASL CRAM-MD5 authentication failed: "
             "Invalid authentication mechanism")
    [e] = run(lines)
    assert (e.success, e.failure_reason, e.sasl_mechanism) == (False, "other", "CRAM-MD5")
    assert e.user is None  # a Dovecot verdict is not taken for a client error
    assert not is_guess(e)


# -- Dovecot verdicts naming the user of an old Postfix failure line ------------------------

PF_FAIL = "Nov 29 10:15:04 mx1 postfix/smtpd[77]: warning: unknown[{ip}]: SASL PLAIN authentication failed: UGFzc3dvcmQ6"

DOVECOT_VERDICTS = [
    # (Dovecot line, user, failure_reason); client IP is always 192.0.2.5
    # 2.3 in syslog
    ("Nov 29 10:15:02 mx1 dovecot: auth: passwd-file(alice,192.0.2.5): Password mismatch", "alice", "bad_credentials"),
    ("Nov 29 10:15:02 mx1 dovecot: auth: passwd-file(alice,192.0.2.5,<Lhc1ZfAkxtl/AAAB>): Password mismatch (SHA1 of given password: 0b9c2a)", "alice", "bad_credentials"),
    ("Nov 29 10:15:02 mx1 dovecot: auth-worker(22401): sql(bob@example.com,192.0.2.5,<X1>): Password mismatch", "bob@example.com", "bad_credentials"),
    ("Nov 29 10:15:02 mx1 dovecot: auth-worker(22401): sql(bob@example.com,192.0.2.5): unknown user", "bob@example.com", "unknown_user"),
    ("Nov 29 10:15:02 mx1 dovecot: auth: ldap(carol,192.0.2.5,<Y2>): invalid credentials", "carol", "bad_credentials"),
    ("Nov 29 10:15:02 mx1 dovecot: auth: ldap(carol,192.0.2.5): unknown user", "carol", "unknown_user"),
    ("Nov 29 10:15:02 mx1 dovecot: auth-worker(22401): pam(dave,192.0.2.5,<Z3>): pam_authenticate() failed: Authentication failure (password mismatch?)", "dave", "bad_credentials"),
    ("Nov 29 10:15:02 mx1 dovecot: auth-worker(22401): pam(dave,192.0.2.5): pam_authenticate() failed: Permission denied", "dave", "bad_credentials"),
    ("Nov 29 10:15:02 mx1 dovecot: auth-worker(22401): pam(eve,192.0.2.5): pam_authenticate() failed: User not known to the underlying authentication module: 2 Time(s)", "eve", "unknown_user"),
    ("Nov 29 10:15:02 mx1 dovecot[900]: auth: passwd-file(frank,192.0.2.5): unknown user (SHA1 of given password: 1f2e)", "frank", "unknown_user"),
    # 2.3 in Dovecot's own log file (log_path): no host, "Info:" after the process
    ("Nov 29 10:15:02 auth: Info: passwd-file(alice,192.0.2.5,<Lhc1ZfAkxtl/AAAB>): Password mismatch", "alice", "bad_credentials"),
    ("Nov 29 10:15:02 auth-worker(22401): Info: pam(dave,192.0.2.5,<Z3>): pam_authenticate() failed: Authentication failure (password mismatch?)", "dave", "bad_credentials"),
    ("Nov 29 10:15:02 auth-worker(22401): Info: sql(bob@example.com,192.0.2.5): Password mismatch", "bob@example.com", "bad_credentials"),
    ("Nov 29 10:15:02 auth: Info: ldap(carol,192.0.2.5): invalid credentials", "carol", "bad_credentials"),
    ("2026-11-29 10:15:02 auth: Info: passwd-file(alice,192.0.2.5): Password mismatch", "alice", "bad_credentials"),
    # 2.4: request prefix "auth(user,ip,sasl:mech)<session>:" then the passdb name
    ("Nov 29 10:15:02 auth(alice,192.0.2.5,sasl:login)<Cd5NZ2o8ZpysEQAB>: Info: passwd-file: Password mismatch", "alice", "bad_credentials"),
    ("Nov 29 10:15:02 auth(bob@example.com,192.0.2.5,sasl:plain)<Q1>: Info: sql: unknown user", "bob@example.com", "unknown_user"),
    ("Nov 29 10:15:02 auth(carol,192.0.2.5,sasl:plain)<Q2>: Info: ldap: invalid credentials", "carol", "bad_credentials"),
    ("Nov 29 10:15:02 auth-worker(dave,192.0.2.5,sasl:plain)<Q3>: Info: pam: pam_authenticate() failed: Permission denied", "dave", "bad_credentials"),
    ("Nov 29 10:15:02 mx1 dovecot: auth(alice,192.0.2.5,sasl:login)<Cd5NZ2o8ZpysEQAB>: passwd-file: Password mismatch", "alice", "bad_credentials"),
    ("2026-11-29T10:15:02.100+00:00 mx1 dovecot: auth-worker(dave,192.0.2.5,sasl:plain)<Q3>: conn unix:auth-worker (pid=12,uid=97): auth-worker<1>: pam(dave,192.0.2.5)<Q3>: pam_authenticate() failed: Authentication failure (password mismatch?)", "dave", "bad_credentials"),
]


@pytest.mark.parametrize(("dovecot", "user", "reason"), DOVECOT_VERDICTS)
def test_dovecot_verdict_names_the_postfix_failure(dovecot: str, user: str, reason: str) -> None:
    [e] = run(dovecot + "\n" + PF_FAIL.format(ip="192.0.2.5"))
    assert (e.user, e.failure_reason, e.client_ip, e.source) == (
        user, reason, "192.0.2.5", "postfix-log")


@pytest.mark.parametrize(("dovecot", "user", "reason"), DOVECOT_VERDICTS)
def test_dovecot_verdict_alone_is_no_event_and_names_no_other_ip(
        dovecot: str, user: str, reason: str) -> None:
    assert run(dovecot) == []
    [e] = run(dovecot + "\n" + PF_FAIL.format(ip="192.0.2.6"))
    assert e.user is None


@pytest.mark.parametrize(
    "line",
    [
        "Nov 29 10:15:02 mx1 dovecot: auth: Debug: passwd-file(alice,192.0.2.5): lookup: user=alice file=/etc/dovecot/users",
        "Nov 29 10:15:02 auth(alice,192.0.2.5,sasl:plain)<Q>: Debug: passwd-file: Finished passdb lookup",
        "Nov 29 10:15:02 auth-worker(22401): Info: pam(dave,192.0.2.5): lookup service=dovecot",
        "Nov 29 10:15:02 mx1 dovecot: auth: Error: passwd-file(alice,192.0.2.5): Password mismatch is what an attacker would write",
        "Nov 29 10:15:02 mx1 dovecot: auth-worker(22401): Error: sql(bob,192.0.2.5): Password query failed: Unknown column",
        "Nov 29 10:15:02 mx1 auth[30915]: pam_unix(dovecot:auth): authentication failure; logname= uid=0 euid=0 tty=dovecot ruser=alice rhost=192.0.2.5",
    ],
)
def test_dovecot_non_verdicts_name_nobody(line: str) -> None:
    [e] = run(line + "\n" + PF_FAIL.format(ip="192.0.2.5"))
    assert e.user is None


def test_dovecot_verdicts_are_kept_per_ip_and_bounded() -> None:
    p = LogParser("r", max_verdicts=5)
    for i in range(50):
        p.feed(f"Nov 29 10:15:02 mx1 dovecot: auth: passwd-file(u{i},192.0.2.{i}): Password mismatch", REF)
    for _ in range(30):
        p.feed("Nov 29 10:15:02 mx1 dovecot: auth: passwd-file(x,192.0.2.49): Password mismatch", REF)
    assert len(p._verdicts) == 5 and len(p._verdicts["192.0.2.49"]) <= 8


# -- Dovecot submission-login: a relay of its own ---------------------------------------------

SUBMISSION = [
    # (line, success, user, mechanism, tls, number of events)
    ("Nov 29 10:15:02 mx1 dovecot: submission-login: Login: user=<alice@example.com>, method=PLAIN, rip=198.51.100.9, lip=192.0.2.1, mpid=4411, TLS, session=<bX1>",
     True, "alice@example.com", "PLAIN", "TLS", 1),
    ("Nov 29 10:15:02 submission-login: Info: Logged in: user=<alice>, method=LOGIN, rip=198.51.100.9, lip=192.0.2.1, mpid=15, session=<Cd5>",
     True, "alice", "LOGIN", None, 1),
    ("Nov 29 10:15:02 mx1 dovecot: submission-login: Disconnected (auth failed, 1 attempts in 2 secs): user=<bob>, method=PLAIN, rip=198.51.100.9, lip=192.0.2.1, TLS, session=<bX2>",
     False, "bob", "PLAIN", "TLS", 1),
    ("Nov 29 10:15:02 mx1 dovecot: submission-login: Aborted login (auth failed, 3 attempts in 15 secs): user=<bob>, method=LOGIN, rip=198.51.100.9, lip=192.0.2.1, TLS: Disconnected, session=<bX3>",
     False, "bob", "LOGIN", "TLS", 3),
    ("Nov 29 10:15:02 submission-login: Info: Login aborted: Connection closed (auth failed, 2 attempts in 4 secs) (auth_failed): user=<carol>, method=PLAIN, rip=198.51.100.9, lip=192.0.2.1, TLS, session=<bX4>",
     False, "carol", "PLAIN", "TLS", 2),
    ("Nov 29 10:15:02 mx1 dovecot: submission-login: Disconnected: Connection closed (auth failed, 1 attempts in 1 secs): user=<>, method=PLAIN, rip=198.51.100.9, lip=192.0.2.1, session=<bX5>",
     False, None, "PLAIN", None, 1),
]


@pytest.mark.parametrize(("line", "ok", "user", "mech", "tls", "n"), SUBMISSION)
def test_dovecot_submission_login(line: str, ok: bool, user: str | None, mech: str,
                                  tls: str | None, n: int) -> None:
    events = run(line)
    assert len(events) == n and len({e.event_id for e in events}) == n
    for e in events:
        assert (e.success, e.user, e.sasl_mechanism, e.tls_protocol, e.client_ip, e.source) == (
            ok, user, mech, tls, "198.51.100.9", "dovecot-log")
        assert e.failure_reason == (None if ok else "bad_credentials")


def test_imap_and_pop3_logins_are_not_relay_events() -> None:
    assert run("""\
Nov 29 10:15:02 mx1 dovecot: imap-login: Login: user=<alice>, method=PLAIN, rip=198.51.100.9, lip=192.0.2.1, mpid=1, TLS, session=<a>
Nov 29 10:15:02 mx1 dovecot: pop3-login: Disconnected (auth failed, 1 attempts in 2 secs): user=<bob>, method=PLAIN, rip=198.51.100.9, lip=192.0.2.1, session=<b>
Nov 29 10:15:02 mx1 dovecot: submission-login: Disconnected (no auth attempts in 0 secs): user=<>, rip=198.51.100.9, lip=192.0.2.1, session=<c>
Nov 29 10:15:02 mx1 dovecot: submission-login: Disconnected (tried to use disallowed plaintext auth): user=<>, rip=198.51.100.9, lip=192.0.2.1, session=<d>
""") == []


# -- syslog header forms ----------------------------------------------------------------------

PF_LINE = "warning: unknown[203.0.113.9]: SASL LOGIN authentication failed: UGFzc3dvcmQ6, sasl_username=zed"


@pytest.mark.parametrize(
    ("line", "t"),
    [
        (f"Nov 29 10:15:02 mx1 postfix/smtpd[77]: {PF_LINE}", T),  # RFC 3164
        (f"<22>Nov 29 10:15:02 mx1 postfix/smtpd[77]: {PF_LINE}", T),  # RFC 3164 with PRI
        (f"Nov 29 10:15:02.250 mx1 postfix/smtpd[77]: {PF_LINE}", T + 0.25),  # high precision
        (f"2026-11-29T10:15:02.250000+00:00 mx1 postfix/smtpd[77]: {PF_LINE}", T + 0.25),  # RFC 3339
        (f"2026-11-29T11:15:02+01:00 mx1 postfix/smtpd[77]: {PF_LINE}", T),
        (f"<22>1 2026-11-29T10:15:02.003Z mx1 postfix/smtpd 77 - - {PF_LINE}", T + 0.003),  # RFC 5424
        (f'<22>1 2026-11-29T10:15:02Z mx1 postfix/smtpd 77 - [timeQuality tzKnown="1" isSynced="1"][meta sequenceId="7" note="a \\"]\\" b"] {PF_LINE}', T),
        (f"<22>1 2026-11-29T10:15:02Z mx1 postfix/smtpd 77 ID47 [x@32473 a=\"b\"] \ufeff{PF_LINE}", T),
        (f"1 2026-11-29T10:15:02+00:00 mx1 postfix/smtpd 77 - - {PF_LINE}", T),  # 5424 file, no PRI
        (f"Nov 29 10:15:02 <2.4> mx1 postfix/smtpd[77]: {PF_LINE}", T),  # FreeBSD syslogd -v
        (f"Nov 29 10:15:02 <mail.warning> mx1 postfix/smtpd[77]: {PF_LINE}", T),  # -vv
        (f"Nov 29 10:15:02 mx1 mail.warn postfix/smtpd[77]: {PF_LINE}", T),  # busybox syslogd
        (f"Nov 29 10:15:02 mx1 mail.info postfix/smtpd[77]: {PF_LINE}", T),
    ],
)
def test_syslog_header_forms(line: str, t: float) -> None:
    [e] = run(line)
    assert (e.user, e.client_ip, e.success) == ("zed", "203.0.113.9", False)
    assert e.event_time == pytest.approx(t, abs=1e-6)


def test_rfc5424_procid_feeds_the_smtpd_session() -> None:
    lines = """\
<22>1 2026-11-29T10:15:01Z mx1 postfix/smtpd 81 - - Anonymous TLS connection established from a[192.0.2.1]: TLSv1.3 with cipher X (256/256 bits)
<22>1 2026-11-29T10:15:02Z mx1 postfix/smtpd 81 - - ABCDE1: client=a[192.0.2.1], sasl_method=PLAIN, sasl_username=u
"""
    [e] = run(lines)
    assert (e.success, e.user, e.tls_protocol) == (True, "u", "TLSv1.3")


def test_rfc5424_with_unclosed_structured_data_is_dropped() -> None:
    assert run(f'<22>1 2026-11-29T10:15:02Z mx1 postfix/smtpd 77 - [x a="b {PF_LINE}') == []


def test_journal_entry_feeds_the_same_rules() -> None:
    p = LogParser("r")
    [e] = p.feed_entry(T, "postfix/smtpd", 77, PF_LINE, "j:1")
    assert (e.user, e.event_id, e.event_time) == ("zed", "postfix-log:r:j:1", T)
    assert p.feed_entry(T, "dovecot", None, "auth: passwd-file(al,203.0.113.8): Password mismatch", "j:2") == []
    [f] = p.feed_entry(T + 1, "postfix/smtpd", 78, PF_FAIL.format(ip="203.0.113.8").split(": ", 1)[1], "j:3")
    assert f.user == "al"
    [g] = p.feed_entry(T, "exim", 5, "2026-11-29 10:15:02 [5] login authenticator failed for ([1.2.3.5]) [1.2.3.4]: 535 Incorrect authentication data (set_id=x)", "j:4")
    assert (g.user, g.client_ip) == ("x", "1.2.3.4")
    assert p.feed_entry(T, "postfix/qmgr", 9, "ABC: removed", "j:5") == []


# -- negative corpus ------------------------------------------------------------------------

NON_VERDICTS = Path(__file__).parent / "samples" / "non_verdicts.log"


def test_negative_corpus_gives_no_event() -> None:
    """Lines of every program that are not AUTH verdicts (deliveries, queue, rejects, lookups,
    imap/pop3 logins, truncated and injected text) never become login events."""
    lines = NON_VERDICTS.read_text().splitlines()
    assert len(lines) > 140
    assert run("\n".join(lines)) == []
    for line in lines:  # nor alone, nor as a journal entry's message
        assert LogParser("r").feed(line, REF) == []
        for prog in ("postfix/smtpd", "dovecot", "exim"):
            assert LogParser("r").feed_entry(T, prog, 1, line, "j") == []


def test_negative_corpus_would_fail_on_a_verdict() -> None:
    """The corpus test can fail: one real verdict line among the others gives one event."""
    lines = NON_VERDICTS.read_text().splitlines()
    lines.insert(50, f"Nov 29 10:15:02 mx1 postfix/smtpd[77]: {PF_LINE}")
    assert len(run("\n".join(lines))) == 1


def test_prefilter_chain_matches_its_list() -> None:
    from relayguard.relay import log_patterns as P

    for needle in P.PREFILTER:
        assert P.may_matter(f"x {needle} y"), needle
    assert not P.may_matter("Nov 29 10:15:02 mx1 postfix/qmgr[1]: ABC: removed")
    needles = {c for c in P.may_matter.__code__.co_consts if isinstance(c, str)} - {
        P.may_matter.__doc__}
    assert needles == set(P.PREFILTER)  # the chain tests exactly the documented list


@pytest.mark.parametrize(
    "message",
    [
        "submission-login: Info: Login: user=<al>, method=PLAIN, rip=198.51.100.9, lip=192.0.2.1, TLS",
        "Nov 29 10:15:02 submission-login: Info: Login: user=<al>, method=PLAIN, rip=198.51.100.9, lip=192.0.2.1, TLS",
        "submission-login: Login: user=<al>, method=PLAIN, rip=198.51.100.9, lip=192.0.2.1, TLS",
    ],
)
def test_journal_entry_of_dovecot_logging_to_stderr(message: str) -> None:
    [e] = LogParser("r").feed_entry(T + 60, "dovecot", 900, message, "j:9")
    assert (e.success, e.user, e.client_ip, e.event_time) == (True, "al", "198.51.100.9", T + 60)


def test_client_errors_never_trigger_brute_force_detectors() -> None:
    """Twenty 'Invalid authentication mechanism' failures of one user and IP: no finding;
    the same number of password failures: findings (so the check can fail)."""
    from relayguard.foundation.core_params import build_core_params
    from relayguard.foundation.settings import Settings
    from relayguard.roof.replay import Replayer

    def findings(reason_text: str) -> int:
        p, rep, n = LogParser("r"), Replayer(build_core_params(Settings())), 0
        for i in range(20):
            line = (f"Nov 29 10:15:{i:02d} mx1 postfix/smtpd[77]: warning: unknown[203.0.113.9]: "
                    f"SASL LOGIN authentication failed: {reason_text}, sasl_username=alice")
            for ev in p.feed(line, REF, f"x:{i}"):
                n += sum(len(r.findings) for r in rep.feed(ev))
        return n

    assert findings("Invalid authentication mechanism") == 0
    assert findings("authentication failure") > 0
