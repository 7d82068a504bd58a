# ruff: noqa: E501  (log fixture lines are as long as real ones)
"""Postfix delivery lines -> delivery events of the submitting user (relay.log_delivery), with the
queue-id memory bounded, and Dovecot's auth_verbose_passwords hash on failed logins."""

from __future__ import annotations

import random
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest

from relayguard.relay import log_patterns as P
from relayguard.relay.log_delivery import (
    QueueUsers,
    delivery_key,
    encode_delivery,
    recipient_domain,
)
from relayguard.relay.log_parser import LogParser
from relayguard.stream.records import DeliveryEvent, LoginEvent

REF = datetime(2026, 11, 29, 12, 0, 0, tzinfo=UTC).timestamp()
SAMPLES = Path(__file__).parent / "samples"


def feed(text: str, p: LogParser) -> tuple[list[LoginEvent], list[DeliveryEvent]]:
    logins: list[LoginEvent] = []
    deliveries: list[DeliveryEvent] = []
    for i, line in enumerate(text.strip("\n").splitlines()):
        logins += p.feed(line, REF, f"9:{i * 100}")
        deliveries += p.pop_deliveries()
    return logins, deliveries


def parser(**kw: object) -> LogParser:
    return LogParser("relay-d1", deliveries=True, **kw)  # type: ignore[arg-type]


SUBMIT = """\
Nov 29 10:15:01 mx1 postfix/submission/smtpd[2001]: connect from localhost[127.0.0.1]
Nov 29 10:15:02 mx1 postfix/submission/smtpd[2001]: 4D2F81E0A3: client=localhost[127.0.0.1], sasl_method=PLAIN, sasl_username=Alice@Example.COM
Nov 29 10:15:02 mx1 postfix/cleanup[2005]: 4D2F81E0A3: message-id=<x@relay.test>
Nov 29 10:15:02 mx1 postfix/qmgr[1900]: 4D2F81E0A3: from=<alice@example.com>, size=512, nrcpt=3 (queue active)
"""


def test_golden_sample_log() -> None:
    """samples/deliveries.log (lines in the shape Postfix 3.7.11 writes them) -> the encoded
    delivery events in samples/deliveries.expected.jsonl, byte for byte."""
    text = (SAMPLES / "deliveries.log").read_text()
    _, got = feed(text, parser())
    want = (SAMPLES / "deliveries.expected.jsonl").read_text().splitlines()
    assert [encode_delivery(e).decode() for e in got] == want


def test_bounces_are_attributed_through_the_queue_id() -> None:
    lines = SUBMIT + """\
Nov 29 10:15:03 mx1 postfix/smtp[2010]: 4D2F81E0A3: to=<a@Dead.Example.ORG>, relay=mx.dead.example.org[192.0.2.9]:25, delay=0.9, delays=0.1/0/0.5/0.3, dsn=5.1.1, status=bounced (host mx.dead.example.org[192.0.2.9] said: 550 5.1.1 <a@dead.example.org>: Recipient address rejected: User unknown (in reply to RCPT TO command))
Nov 29 10:15:03 mx1 postfix/smtp[2010]: 4D2F81E0A3: to=<b@dead.example.org>, orig_to=<b@alias.example>, relay=mx.dead.example.org[192.0.2.9]:25, conn_use=2, delay=0.9, delays=0.1/0/0.5/0.3, dsn=5.1.1, status=bounced (host said: 550 5.1.1 no)
Nov 29 10:15:03 mx1 postfix/smtp[2010]: 4D2F81E0A3: to=<c@ok.example>, relay=mx.ok.example[192.0.2.10]:25, delay=0.9, delays=0.1/0/0.5/0.3, dsn=2.0.0, status=sent (250 2.0.0 Ok: queued as 1234)
Nov 29 10:15:04 mx1 postfix/bounce[2011]: 4D2F81E0A3: sender non-delivery notification: 5E6F7A8B9C
Nov 29 10:15:04 mx1 postfix/local[2012]: 5E6F7A8B9C: to=<alice@example.com>, relay=local, delay=0, delays=0/0/0/0, dsn=5.1.1, status=bounced (unknown user: "alice")
"""
    logins, got = feed(lines, parser(user_names="lower"))
    assert [e.user for e in logins] == ["alice@example.com"]
    assert [(e.user, e.queue_id, e.status, e.recipient_domain, e.dsn) for e in got] == [
        ("alice@example.com", "4D2F81E0A3", "bounced", "dead.example.org", "5.1.1")] * 2
    assert got[0].event_id == "postfix-delivery:relay-d1:9:400"
    assert got[0].event_time == datetime(2026, 11, 29, 10, 15, 3, tzinfo=UTC).timestamp()
    assert delivery_key(got[0]) == b"alice@example.com"  # same key as the user's logins
    # the bounce notice's own queue id was never submitted by a user: no event
    p = parser()
    feed(lines, p)
    assert p.queue.stats.unattributed == 1


def test_wire_form() -> None:
    e = DeliveryEvent("id-1", 1764411303.5, "r1", "bob", "ABCDE12345", "expired",
                      source="postfix-log")
    assert orjson.loads(encode_delivery(e)) == {
        "type": "delivery", "event_id": "id-1", "event_time": "2025-11-29T10:15:03.500Z",
        "relay_id": "r1", "user": "bob", "queue_id": "ABCDE12345", "status": "expired",
        "source": "postfix-log"}  # absent optional fields are left out, not null


def test_deferred_once_per_message_expired_and_sent_only_when_asked() -> None:
    lines = SUBMIT + """\
Nov 29 10:15:05 mx1 postfix/smtp[2010]: 4D2F81E0A3: to=<a@slow.example>, relay=none, delay=3, delays=0.1/0/3/0, dsn=4.4.1, status=deferred (connect to mx.slow.example[192.0.2.7]:25: Connection timed out)
Nov 29 10:25:05 mx1 postfix/smtp[2013]: 4D2F81E0A3: to=<a@slow.example>, relay=none, delay=603, delays=600/0/3/0, dsn=4.4.1, status=deferred (connect to mx.slow.example[192.0.2.7]:25: Connection timed out)
Nov 29 10:26:00 mx1 postfix/relay/smtp[2014]: 4D2F81E0A3: to=<c@ok.example>, relay=mx.ok.example[192.0.2.10]:25, delay=0.9, delays=0.1/0/0.5/0.3, dsn=2.0.0, status=sent (250 2.0.0 Ok)
Nov 29 11:15:05 mx1 postfix/qmgr[1900]: 4D2F81E0A3: from=<alice@example.com>, status=expired, returned to sender
"""
    _, got = feed(lines, parser())
    assert [(e.status, e.dsn, e.recipient_domain) for e in got] == [
        ("deferred", "4.4.1", "slow.example"), ("expired", None, None)]
    p = parser(sent_deliveries=True)
    _, got = feed(lines, p)
    assert [e.status for e in got] == ["deferred", "sent", "expired"]
    assert p.queue.stats.suppressed == 1  # the second deferral


def test_off_by_default_and_logins_unchanged() -> None:
    lines = SUBMIT + "Nov 29 10:15:03 mx1 postfix/smtp[2010]: 4D2F81E0A3: to=<a@d.example>, relay=x[192.0.2.9]:25, delay=1, delays=0/0/0/1, dsn=5.1.1, status=bounced (no)\n"
    off = LogParser("relay-d1")
    logins_off, got = feed(lines, off)
    assert got == [] and len(off.queue) == 0
    logins_on, _ = feed(lines, parser())
    assert logins_on == logins_off


def test_instances_have_their_own_queue_ids() -> None:
    lines = SUBMIT + "Nov 29 10:15:03 mx1 postfix-out/smtp[2010]: 4D2F81E0A3: to=<a@d.example>, relay=x[192.0.2.9]:25, delay=1, delays=0/0/0/1, dsn=5.1.1, status=bounced (no)\n"
    _, got = feed(lines, parser())
    assert got == []


def test_every_message_of_a_session_is_remembered() -> None:
    """Only the first client= line of a session is a login; every one names a queue id."""
    lines = SUBMIT + """\
Nov 29 10:15:06 mx1 postfix/submission/smtpd[2001]: 7A7A7A7A7A: client=localhost[127.0.0.1], sasl_method=PLAIN, sasl_username=Alice@Example.COM
Nov 29 10:15:07 mx1 postfix/smtp[2010]: 7A7A7A7A7A: to=<z@d.example>, relay=x[192.0.2.9]:25, delay=1, delays=0/0/0/1, dsn=5.7.1, status=bounced (spam)
"""
    logins, got = feed(lines, parser())
    assert len(logins) == 1 and [e.queue_id for e in got] == ["7A7A7A7A7A"]


def test_queue_ids_are_bounded_by_count_and_age() -> None:
    q = QueueUsers(max_entries=3, max_age_s=100)
    for i in range(5):
        q.add(("p", f"Q{i}"), "u", 1000.0 + i)
    assert len(q) == 3 and q.stats.evicted_full == 2
    assert q.touch(("p", "Q0"), 1005) is None and q.touch(("p", "Q2"), 1005) is not None
    q.add(("p", "Q9"), "u", 1006)  # Q3 is now the least recently touched
    assert q.touch(("p", "Q3"), 1006) is None and q.stats.evicted_full == 3
    for _ in range(64):  # the age sweep runs every 64 calls
        q.touch(("p", "none"), 1200)
    assert q.touch(("p", "Q2"), 1200) is None  # untouched for 195 s > 100 s
    assert len(q) == 0 and q.stats.evicted_age == 3


def test_per_message_cap() -> None:
    rcpts = "\n".join(
        f"Nov 29 10:15:03 mx1 postfix/smtp[2010]: 4D2F81E0A3: to=<u{i}@d.example>, relay=x[192.0.2.9]:25, delay=1, delays=0/0/0/1, dsn=5.1.1, status=bounced (no)"
        for i in range(150))
    p = parser()
    _, got = feed(SUBMIT + rcpts, p)
    assert len(got) == 100 and p.queue.stats.suppressed == 50


@pytest.mark.parametrize("rcpt, want", [
    ("a@Example.ORG", "example.org"), ("a@example.org.", "example.org"), ("nodomain", None),
    ('"x@y"@d.example', "d.example"), ("a@[192.0.2.1]", "[192.0.2.1]"), ("a@", None),
    ("a@bad domain", None), ("a@" + "x" * 300, None), ("a@-x.example", None),
])
def test_recipient_domain(rcpt: str, want: str | None) -> None:
    assert recipient_domain(rcpt) == want


def test_a_recipient_cannot_fake_the_outcome() -> None:
    """The user chooses the recipient and a remote server the reply text: neither decides the
    status, the structured part Postfix writes after to=<...> does."""
    fake = 'to=<"x, relay=none, delay=0, delays=0/0/0/0, dsn=2.0.0, status=sent (ok)"@d.example>'
    lines = SUBMIT + f"""\
Nov 29 10:15:03 mx1 postfix/smtp[2010]: 4D2F81E0A3: to=<a@d.example>, relay=x[192.0.2.9]:25, delay=1, delays=0/0/0/1, dsn=5.1.1, status=bounced (550 nope, relay=x, delay=1, delays=0/0/0/1, dsn=2.0.0, status=sent (ok))
Nov 29 10:15:03 mx1 postfix/smtp[2010]: 4D2F81E0A3: {fake}, relay=x[192.0.2.9]:25, delay=1, delays=0/0/0/1, dsn=5.1.1, status=bounced (no)
"""
    _, got = feed(lines, parser())
    assert [(e.status, e.dsn) for e in got] == [("bounced", "5.1.1")] * 2


def test_hostile_lines_never_crash() -> None:
    rnd = random.Random(5)
    pieces = ["4D2F81E0A3: ", "to=<", ">", ", relay=", "x[1.2.3.4]", ", delay=", "1.5",
              ", delays=", "0/0/0/1", ", dsn=", "5.1.1", ", status=", "bounced", "deferred",
              "expired", " (", ")", "from=<", "\x00", "é", "\udcff", ",", " ", "@", "[", "]"]
    p = parser(sent_deliveries=True)
    feed(SUBMIT, p)
    for _ in range(3000):
        prog = rnd.choice(("postfix/smtp", "postfix/qmgr", "postfix/local", "postfix/x/smtp"))
        msg = "".join(rnd.choice(pieces) for _ in range(rnd.randrange(1, 30)))
        p.feed(f"Nov 29 10:15:03 mx1 {prog}[1]: {msg}", REF, "h")
        for e in p.pop_deliveries():
            assert e.status in ("sent", "bounced", "deferred", "expired")
            assert e.user == "Alice@Example.COM" and e.queue_id == "4D2F81E0A3"
            encode_delivery(e)


# -- Dovecot auth_verbose_passwords ------------------------------------------------------------

FAIL = "Nov 29 10:15:0{s} mx1 postfix/submission/smtpd[2001]: warning: unknown[203.0.113.5]: SASL PLAIN authentication failed: {tail}"


@pytest.mark.parametrize("verdict, user, reason, pw_hash", [
    # real Dovecot 2.3.19 lines (auth_verbose_passwords = sha1:6, then plain)
    ("auth: passwd-file(alice,203.0.113.5): Password mismatch (SHA1 of given password: 911596)",
     "alice", "bad_credentials", "sha1:911596"),
    ("auth: passwd-file(nobody,203.0.113.5): unknown user (SHA1 of given password: f16ca2)",
     "nobody", "unknown_user", "sha1:f16ca2"),
    ("auth: passwd-file(alice,203.0.113.5): Password mismatch (given password: wrongpw)",
     "alice", "bad_credentials", "sha1:911596e6"),  # sha1("wrongpw"), truncated: never the text
    ("auth: passwd-file(alice,203.0.113.5): Password mismatch (given password: a (b): c))",
     "alice", "bad_credentials", "sha1:" + __import__("hashlib").sha1(b"a (b): c)").hexdigest()[:8]),
    ("auth-worker(22401): Info: pam(alice,203.0.113.5,<sess>): pam_authenticate() failed: Authentication failure (password mismatch?) (SHA1 of given password: 0a1b2c3d)",
     "alice", "bad_credentials", "sha1:0a1b2c3d"),
    ("auth: passwd-file(alice,203.0.113.5): Password mismatch", "alice", "bad_credentials", None),
])
def test_password_hash_from_dovecot_verdict(verdict: str, user: str, reason: str,
                                            pw_hash: str | None) -> None:
    lines = (f"Nov 29 10:15:01 mx1 dovecot: {verdict}\n"
             + FAIL.format(s=2, tail="UGFzc3dvcmQ6") + "\n")
    logins, _ = feed(lines, parser())
    [e] = logins
    assert (e.user, e.failure_reason, e.password_hash) == (user, reason, pw_hash)


def test_password_hash_on_postfix_lines_that_name_the_user() -> None:
    lines = ("Nov 29 10:15:01 mx1 dovecot: auth: passwd-file(alice,203.0.113.5): Password mismatch (SHA1 of given password: 911596)\n"
             + FAIL.format(s=2, tail=", sasl_username=alice") + "\n"
             + FAIL.format(s=3, tail=", sasl_username=alice") + "\n")
    logins, _ = feed(lines, parser())
    # the verdict belongs to one attempt: the second failure has none (no hash, not a repeat)
    assert [e.password_hash for e in logins] == ["sha1:911596", None]


def test_password_hash_never_holds_the_password() -> None:
    assert P.password_hash("Password mismatch (given password: hunter2)") == (
        "Password mismatch", "sha1:f3bbbd66")
    assert "hunter2" not in str(P.password_hash("x (given password: hunter2)"))
    assert P.password_hash("Password mismatch (SHA1 of given password: XYZ)")[1] is None


def test_journal_entries_give_the_same_delivery_events() -> None:
    """`hook journal` hands the parser split entries (SYSLOG_IDENTIFIER, pid, MESSAGE)."""
    p = parser()
    p.feed_entry(REF, "postfix/submission/smtpd", 2001,
                 "4D2F81E0A3: client=localhost[127.0.0.1], sasl_method=PLAIN, sasl_username=bob",
                 "s1")
    p.feed_entry(REF + 1, "postfix/smtp", 2010,
                 "4D2F81E0A3: to=<a@gone.example>, relay=x[192.0.2.9]:25, delay=1, "
                 "delays=0/0/0/1, dsn=5.1.1, status=bounced (550 no)", "s2")
    [e] = p.pop_deliveries()
    assert (e.user, e.queue_id, e.status, e.event_id, e.event_time) == (
        "bob", "4D2F81E0A3", "bounced", "postfix-delivery:relay-d1:s2", REF + 1)
