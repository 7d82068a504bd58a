# ruff: noqa: E501  (log fixture lines are as long as real ones)
"""Postfix / Dovecot / Exim log lines -> LoginEvents. Every line below was written for these
tests from the documented formats (Postfix 3.7.11, Dovecot 2.3.19, Exim 4.9x)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from relayguard.relay.log_parser import LogParser
from relayguard.stream.codec import decode_event, encode_event
from relayguard.stream.records import LoginEvent

REF = datetime(2026, 11, 29, 12, 0, 0, tzinfo=UTC).timestamp()
SMTPD = "Nov 29 10:15:0{s} mx1 postfix/submission/smtpd[21837]: "


def run(lines: str, parser: LogParser | None = None) -> list[LoginEvent]:
    p = parser or LogParser("relay-t1")
    out: list[LoginEvent] = []
    for i, line in enumerate(lines.strip("\n").splitlines()):
        out.extend(p.feed(line, REF, f"801:{i * 100}"))
    for e in out:  # every event must survive the wire schema
        assert decode_event(encode_event(e)) == e
    return out


SESSION = """\
Nov 29 10:15:01 mx1 postfix/submission/smtpd[21837]: connect from localhost[127.0.0.1]
Nov 29 10:15:01 mx1 postfix/submission/smtpd[21837]: Anonymous TLS connection established from localhost[127.0.0.1]: TLSv1.3 with cipher TLS_AES_256_GCM_SHA384 (256/256 bits)
Nov 29 10:15:02 mx1 postfix/submission/smtpd[21837]: 14169212944: client=localhost[127.0.0.1], sasl_method=PLAIN, sasl_username=alice
Nov 29 10:15:02 mx1 postfix/qmgr[21784]: 14169212944: from=<alice@relay.test>, size=384, nrcpt=2 (queue active)
Nov 29 10:15:03 mx1 postfix/submission/smtpd[21837]: 2A1B3C4D5E: client=localhost[127.0.0.1], sasl_method=PLAIN, sasl_username=alice
Nov 29 10:15:04 mx1 postfix/submission/smtpd[21837]: disconnect from localhost[127.0.0.1] ehlo=2 starttls=1 auth=1 mail=2 rcpt=2 data=2 quit=1 commands=12
"""


def test_success_once_per_session_with_tls() -> None:
    [e] = run(SESSION)
    assert e == LoginEvent(
        event_id="postfix-log:relay-t1:801:200",
        event_time=datetime(2026, 11, 29, 10, 15, 2, tzinfo=UTC).timestamp(),
        relay_id="relay-t1", user="alice", client_ip="127.0.0.1", success=True,
        tls_protocol="TLSv1.3", sasl_mechanism="PLAIN", failure_reason=None,
        source="postfix-log",
    )


def test_next_session_of_same_pid_is_a_new_login_without_old_tls() -> None:
    later = """\
Nov 29 10:16:01 mx1 postfix/submission/smtpd[21837]: connect from localhost[127.0.0.1]
Nov 29 10:16:02 mx1 postfix/submission/smtpd[21837]: 99AABB1234: client=localhost[127.0.0.1], sasl_method=LOGIN, sasl_username=alice
"""
    events = run(SESSION + later)
    assert [e.success for e in events] == [True, True]
    assert events[1].tls_protocol is None and events[1].sasl_mechanism == "LOGIN"


def test_failure_with_user_suffix() -> None:
    [e] = run(SMTPD.format(s=3) + "warning: localhost[127.0.0.1]: SASL LOGIN authentication "
              "failed: (reason unavailable), sasl_username=alice")
    assert (e.success, e.user, e.client_ip) == (False, "alice", "127.0.0.1")
    assert (e.sasl_mechanism, e.failure_reason) == ("LOGIN", "bad_credentials")
    assert e.tls_protocol is None


def test_old_postfix_failure_has_no_user() -> None:
    [e] = run(SMTPD.format(s=3) + "warning: unknown[203.0.113.9]: SASL LOGIN authentication "
              "failed: UGFzc3dvcmQ6")
    assert (e.user, e.client_ip, e.failure_reason) == (None, "203.0.113.9", "bad_credentials")


def test_old_postfix_failure_takes_user_from_dovecot() -> None:
    lines = """\
Nov 29 10:15:02 mx1 dovecot: auth: passwd-file(mallory,203.0.113.9): unknown user
Nov 29 10:15:03 mx1 dovecot: auth: passwd-file(alice,198.51.100.1): Password mismatch
Nov 29 10:15:04 mx1 postfix/smtpd[77]: warning: unknown[198.51.100.1]: SASL PLAIN authentication failed: UGFzc3dvcmQ6
Nov 29 10:15:05 mx1 postfix/smtpd[78]: warning: unknown[203.0.113.9]: SASL PLAIN authentication failed: UGFzc3dvcmQ6
Nov 29 10:15:06 mx1 postfix/smtpd[78]: warning: unknown[203.0.113.9]: SASL PLAIN authentication failed: UGFzc3dvcmQ6
"""
    a, b, c = run(lines)
    assert (a.user, a.failure_reason) == ("alice", "bad_credentials")
    assert (b.user, b.failure_reason) == ("mallory", "unknown_user")
    assert (c.user, c.failure_reason) == (None, "bad_credentials")  # verdict used up


def test_dovecot_log_file_format_and_session_id() -> None:
    lines = """\
Nov 29 10:15:02 auth: Info: passwd-file(alice,192.0.2.5,<Lhc1ZfAkxtl/AAAB>): Password mismatch
Nov 29 10:15:04 mx1 postfix/smtpd[77]: warning: unknown[192.0.2.5]: SASL PLAIN authentication failed: UGFzc3dvcmQ6
"""
    [e] = run(lines)
    assert e.user == "alice"


def test_stale_dovecot_verdict_is_not_used() -> None:
    lines = """\
Nov 29 10:10:00 mx1 dovecot: auth: passwd-file(alice,192.0.2.5): Password mismatch
Nov 29 10:15:04 mx1 postfix/smtpd[77]: warning: unknown[192.0.2.5]: SASL PLAIN authentication failed: UGFzc3dvcmQ6
"""
    [e] = run(lines)
    assert e.user is None


def test_dovecot_lines_alone_make_no_events() -> None:
    assert run("Nov 29 10:15:02 mx1 dovecot: auth: passwd-file(alice,192.0.2.5): Password mismatch"
               ) == []


@pytest.mark.parametrize(
    "reason", ["Connection lost to authentication server", "Temporary authentication failure"]
)
def test_backend_outage_is_not_bad_credentials(reason: str) -> None:
    [e] = run(SMTPD.format(s=3) + f"warning: localhost[127.0.0.1]: SASL PLAIN authentication "
              f"failed: {reason}")
    assert e.failure_reason == "backend_unavailable" and not e.success


def test_backend_outage_as_postfix_3_7_logs_it() -> None:
    # seen on Postfix 3.7.11 when Dovecot's auth process died between EHLO and AUTH
    [e] = run(SMTPD.format(s=3) + "warning: localhost[127.0.0.1]: SASL PLAIN authentication failed: "
              "Connection lost to authentication server, sasl_username=(unavailable)")
    assert (e.user, e.failure_reason, e.success) == (None, "backend_unavailable", False)


@pytest.mark.parametrize(
    ("line", "ip", "user", "mech"),
    [
        ("Nov 29 10:15:03 mx1 postfix-out/smtpd[5]: warning: h.example[192.0.2.7]:51234: SASL "
         "login authentication failed: authentication failure, sasl_username=bob@example.com",
         "192.0.2.7", "bob@example.com", "LOGIN"),
        ("Nov 29 10:15:03 mx1 postfix/smtps/smtpd[5]: warning: unknown[2001:db8::1]: SASL "
         "PLAIN authentication failed: (reason unavailable), sasl_username=carol",
         "2001:db8::1", "carol", "PLAIN"),
        ("Nov 29 10:15:03 mx1 postfix/smtpd[5]: warning: unknown[ipv6:2001:DB8:0::1]:587: SASL "
         "CRAM-MD5 authentication failed: authentication failure, sasl_username=dave",
         "2001:db8::1", "dave", "CRAM-MD5"),
        ("2026-11-29T10:15:03.5+00:00 mx1 postfix/submission/smtpd[5]: warning: x[10.0.0.1]: "
         "SASL plain authentication failed: (reason unavailable), sasl_username=erin",
         "10.0.0.1", "erin", "PLAIN"),
    ],
)
def test_failure_variants(line: str, ip: str, user: str, mech: str) -> None:
    [e] = run(line)
    assert (e.client_ip, e.user, e.sasl_mechanism, e.success) == (ip, user, mech, False)


@pytest.mark.parametrize(
    ("line", "ip", "user"),
    [
        ("Nov 29 10:15:03 mx1 postfix-out/smtpd[5]: 4Q1x2Y3z4Zz5: client=unknown[2001:db8::42]:"
         "40022, sasl_method=plain, sasl_username=alice@relay.test, sasl_sender=<a@relay.test>",
         "2001:db8::42", "alice@relay.test"),
        ("2026-11-29T10:15:03+00:00 mx1 postfix/smtps/smtpd[5]: ABCDEF123: client=h.example"
         "[192.0.2.8], sasl_method=LOGIN, sasl_username=bob", "192.0.2.8", "bob"),
    ],
)
def test_success_variants(line: str, ip: str, user: str) -> None:
    [e] = run(line)
    assert (e.client_ip, e.user, e.success, e.failure_reason) == (ip, user, True, None)


def test_without_connect_lines_a_new_client_is_a_new_session() -> None:
    lines = """\
Nov 29 10:15:02 mx1 postfix/smtpd[9]: ABCDE1: client=a[192.0.2.1], sasl_method=PLAIN, sasl_username=u
Nov 29 10:15:03 mx1 postfix/smtpd[9]: ABCDE2: client=a[192.0.2.1], sasl_method=PLAIN, sasl_username=u
Nov 29 10:15:04 mx1 postfix/smtpd[9]: ABCDE3: client=b[192.0.2.2], sasl_method=PLAIN, sasl_username=v
"""
    assert [e.user for e in run(lines)] == ["u", "v"]


def test_tls_of_another_client_is_not_used() -> None:
    lines = """\
Nov 29 10:15:01 mx1 postfix/smtpd[9]: Anonymous TLS connection established from a[192.0.2.1]: TLSv1.2 with cipher X (256/256 bits)
Nov 29 10:15:02 mx1 postfix/smtpd[9]: ABCDE1: client=b[192.0.2.2], sasl_method=PLAIN, sasl_username=u
"""
    [e] = run(lines)
    assert e.tls_protocol is None


def test_session_state_is_bounded() -> None:
    p = LogParser("r", max_sessions=10)
    for pid in range(100):
        p.feed(f"Nov 29 10:15:01 mx1 postfix/smtpd[{pid}]: connect from a[192.0.2.1]", REF)
    assert len(p._sessions) == 10


EXIM = """\
2026-11-29 10:15:02 dovecot_login authenticator failed for (User) [203.0.113.5]:56789: 535 Incorrect authentication data (set_id=alice)
2026-11-29 10:15:03 plain_server authenticator failed for h.example (helo) [203.0.113.6]:587 I=[192.0.2.1]:587: 535 Incorrect authentication data
2026-11-29 10:15:04 dovecot_plain authenticator failed for (x) [203.0.113.7]:1: 435 Unable to authenticate at present (set_id=bob)
2026-11-29 10:15:05 1tAbCd-000123-AB <= alice@relay.test H=(helo) [198.51.100.4]:587 P=esmtpsa X=TLS1.3:TLS_AES_256_GCM_SHA384:256 CV=no A=dovecot_plain:alice S=384 id=x@y
2026-11-29 10:15:06 1tAbCe-000124-AB <= alice@relay.test H=(helo) [198.51.100.4]:587 P=esmtpsa X=TLS1.3:TLS_AES_256_GCM_SHA384:256 CV=no A=dovecot_plain:alice S=999
2026-11-29 10:15:07 1tAbCf-000125-AB <= root@relay.test U=root P=local S=100
2026-11-29 10:15:08 1tAbCg-000126-AB => bob@example.org R=dnslookup T=remote_smtp H=mx.example.org [192.0.2.99]
"""


def test_exim() -> None:
    a, b, c, d = run(EXIM)
    assert (a.user, a.client_ip, a.sasl_mechanism, a.failure_reason) == (
        "alice", "203.0.113.5", "LOGIN", "bad_credentials")
    assert (b.user, b.client_ip, b.sasl_mechanism) == (None, "203.0.113.6", "PLAIN")
    assert (c.user, c.failure_reason) == ("bob", "backend_unavailable")
    assert (d.success, d.user, d.client_ip, d.tls_protocol, d.source) == (
        True, "alice", "198.51.100.4", "TLSv1.3", "exim-log")


NOISE = """\
Nov 29 10:15:02 mx1 postfix/qmgr[21784]: 14169212944: removed
Nov 29 10:15:02 mx1 postfix/smtp[21840]: 14169212944: to=<bob@example.org>, relay=127.0.0.1[127.0.0.1]:2525, delay=0.1, status=sent (250 Ok)
Nov 29 10:15:02 mx1 postfix/submission/smtpd[21837]: lost connection after AUTH from unknown[192.0.2.1]
Nov 29 10:15:02 mx1 postfix/submission/smtpd[21837]: warning: unknown[192.0.2.1]: SASL PLAIN authentication aborted
Nov 29 10:15:02 mx1 postfix/submission/smtpd[21837]: warning: SASL authentication failure: Password verification failed
Nov 29 10:15:02 mx1 postfix/submission/smtpd[21837]: warning: localhost[not-an-ip]: SASL PLAIN authentication failed: x
Nov 29 10:15:02 mx1 postfix/submission/smtpd[21837]: NOQUEUE: reject: RCPT from unknown[192.0.2.1]: 554 5.7.1 <x@y>: Relay access denied
Nov 29 10:15:02 mx1 postfix/submission/smtpd[21837]: 1416921294
Nov 29 10:15:02 mx1 postfix/submission/smtpd[21837]: 14169212944: client=localhost[127.0.0.1]
Nov 29 10:15:02 mx1 postfix/submission/smtpd[21837]: 14169212944: client=localhost[127.0.0.1], sasl_met
Nov 29 10:15:02 mx1 postfix/submission/smtpd[21837]: warning: localhost[127.0.0.1]: SASL PLAIN authent
Nov 29 10:15:02 mx1 kernel: [12345.678] eth0: link up
Nov 29 10:15:02 mx1 sshd[99]: Failed password for root from 192.0.2.1 port 22 ssh2
Nov 29 10:15:02 mx1 dovecot: imap-login: Login: user=<alice>, method=PLAIN, rip=192.0.2.1
\x00\x01\x02\xff binary junk
2026-11-29 10:15:02 garbage exim line without meaning
just some text
"""


def test_unrelated_truncated_and_garbage_lines_give_nothing() -> None:
    assert run(NOISE) == []


def test_event_ids_are_replay_stable_and_distinct() -> None:
    first = run(SESSION + EXIM)
    again = run(SESSION + EXIM)
    assert [e.event_id for e in first] == [e.event_id for e in again]
    assert len({e.event_id for e in first}) == len(first)


def test_event_id_without_line_id_hashes_the_line() -> None:
    p = LogParser("r")
    line = SMTPD.format(s=3) + ("warning: a[192.0.2.1]: SASL PLAIN authentication failed: x, "
                                "sasl_username=u")
    [a] = p.feed(line, REF)
    [b] = LogParser("r").feed(line, REF)
    assert a.event_id == b.event_id and len(a.event_id) <= 256


def test_long_relay_id_keeps_event_id_within_schema() -> None:
    [e] = run(SESSION, LogParser("r" * 250))
    assert len(e.event_id) <= 256
