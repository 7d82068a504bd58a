"""The canonical user name rule (stream/user_names.py) in every mode, and where it is applied:
lock book keys, policy send events, log parser events, the worker's decode."""

from __future__ import annotations

import pytest

from relayguard.relay.lock_book import LockBook
from relayguard.relay.log_parser import LogParser
from relayguard.relay.policy_protocol import DecisionConfig, PolicyRequest, decide, send_event_from
from relayguard.stream.records import LockCommand, LoginEvent, SendEvent
from relayguard.stream.user_names import (
    canonical_event,
    canonical_subject,
    canonical_user,
    canonical_user_or_none,
    check_mode,
    looks_like_address,
)

NOW = 1_800_000_000.0
DECOMPOSED = "Jose\u0301@Example.ORG"  # e + combining acute accent


@pytest.mark.parametrize(("raw", "want"), [
    ("ALICE", "alice"),
    ("Alice@Example.COM", "alice@example.com"),
    ("  alice@example.com \t", "alice@example.com"),
    ("Alice.Smith+Tag@Mail.Example.com", "alice.smith+tag@mail.example.com"),
    ("BOB@[192.0.2.1]", "bob@[192.0.2.1]"),
    (DECOMPOSED, "jos\u00e9@example.org"),  # NFC first: one name however it was typed
    ("JÜRGEN@Bücher.DE", "jürgen@bücher.de"),
    # not address-like: kept as written (only trimmed, NFC)
    ("EXAMPLE\\Alice", "EXAMPLE\\Alice"),
    ("Alice Smith", "Alice Smith"),
    ("uid=Alice,ou=People", "uid=Alice,ou=People"),
    ('"Alice"@Example.com', '"Alice"@Example.com'),
    ("a@b@C", "a@b@C"),
])
def test_lower_addresses_is_the_default(raw: str, want: str) -> None:
    assert canonical_user(raw) == want
    assert canonical_user(raw, "lower-addresses") == want


def test_lower_lowers_every_name() -> None:
    assert canonical_user("EXAMPLE\\Alice", "lower") == "example\\alice"
    assert canonical_user(" Alice Smith ", "lower") == "alice smith"
    assert canonical_user("ALICE", "lower") == "alice"


def test_exact_keeps_case_but_trims_and_normalises() -> None:
    assert canonical_user("ALICE", "exact") == "ALICE"
    assert canonical_user(" Alice@Example.COM\n", "exact") == "Alice@Example.COM"
    assert canonical_user(DECOMPOSED, "exact") == "Jos\u00e9@Example.ORG"


@pytest.mark.parametrize("mode", ["exact", "lower-addresses", "lower"])
def test_idempotent_and_blank(mode: str) -> None:
    for raw in ("ALICE", DECOMPOSED, "EXAMPLE\\Al", " x ", "İstanbul@X.tr"):
        once = canonical_user(raw, mode)  # type: ignore[arg-type]
        assert canonical_user(once, mode) == once  # type: ignore[arg-type]
    assert canonical_user_or_none("   ", mode) is None  # type: ignore[arg-type]
    assert canonical_user_or_none(None, mode) is None  # type: ignore[arg-type]


def test_unknown_mode_is_refused() -> None:
    with pytest.raises(ValueError, match="lower-addresses"):
        canonical_user("x", "upper")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        check_mode("Lower")
    assert check_mode("exact") == "exact"


def test_address_shape() -> None:
    assert looks_like_address("alice") and looks_like_address("a_b-c@x-y.example.")
    assert not looks_like_address("alice@-bad.example")
    assert not looks_like_address("") and not looks_like_address("al ice")


def test_subjects() -> None:
    assert canonical_subject("user", "ALICE") == "alice"
    assert canonical_subject("user", "ALICE", "exact") == "ALICE"
    assert canonical_subject("ip", "2001:DB8:0::1") == "2001:db8::1"
    assert canonical_subject("ip", "[192.0.2.1]") == "192.0.2.1"
    assert canonical_subject("ip", "not-an-ip") == "not-an-ip"


def _login(user: str | None) -> LoginEvent:
    return LoginEvent(event_id="e", event_time=NOW, relay_id="r", user=user,
                      client_ip="192.0.2.1", success=True)


def test_canonical_event() -> None:
    ev = _login("Alice@Example.com")
    assert canonical_event(ev).user == "alice@example.com"
    same = _login("alice")
    assert canonical_event(same) is same
    assert canonical_event(_login("  ")).user is None
    assert canonical_event(ev, "exact").user == "Alice@Example.com"
    send = SendEvent(event_id="s", event_time=NOW, relay_id="r", user="BOB", client_ip="x",
                     sender="", recipient_count=1, size=1)
    assert canonical_event(send).user == "bob"


def _lock(subject: str, version: int, action: str = "lock") -> LockCommand:
    return LockCommand(command_id=f"c{version}", subject=subject, subject_kind="user",
                       action=action, reason="r", detector="d", evidence={},  # type: ignore[arg-type]
                       issued_at=NOW, expires_at=None, issuer="t", version=version)


def test_lock_book_cannot_be_dodged_by_case() -> None:
    book = LockBook()
    book.apply(_lock("alice", 1))
    for spelling in ("alice", "ALICE", "Alice", " alice "):
        assert book.is_locked("user", spelling, NOW), spelling
    # one subject: the newest command for any spelling wins
    assert book.apply(_lock("ALICE", 2, "unlock"))
    assert not book.is_locked("user", "alice", NOW)
    assert not book.apply(_lock("Alice", 1))
    assert len(book) == 1


def test_lock_book_exact_mode_keeps_case_apart() -> None:
    book = LockBook("exact")
    book.apply(_lock("alice", 1))
    assert book.is_locked("user", "alice", NOW)
    assert not book.is_locked("user", "ALICE", NOW)


def test_policy_decision_and_send_event_use_the_canonical_name() -> None:
    book = LockBook()
    book.apply(_lock("alice@example.com", 1))
    req = PolicyRequest({"request": "smtpd_access_policy", "protocol_state": "RCPT",
                         "sasl_username": "Alice@EXAMPLE.com", "client_address": "192.0.2.9"})
    assert decide(req, book, NOW, DecisionConfig(reject_text="locked")) == "REJECT 5.7.1 locked"
    eom = PolicyRequest({**req.attrs, "protocol_state": "END-OF-MESSAGE", "queue_id": "Q1"})
    ev = send_event_from(eom, "r", NOW)
    assert ev is not None and ev.user == "alice@example.com"
    ev = send_event_from(eom, "r", NOW, "exact")
    assert ev is not None and ev.user == "Alice@EXAMPLE.com"
    blank = PolicyRequest({**eom.attrs, "sasl_username": "  "})
    assert send_event_from(blank, "r", NOW) is None


def test_log_parser_names_users_canonically() -> None:
    line = ("Jan 10 12:00:00 mx postfix/smtpd[42]: 3F1A2B: client=unknown[192.0.2.7], "
            "sasl_method=PLAIN, sasl_username=ALICE@Example.com")
    [ev] = LogParser("r").feed(line, NOW)
    assert ev.user == "alice@example.com"
    [ev] = LogParser("r", user_names="exact").feed(line, NOW)
    assert ev.user == "ALICE@Example.com"


async def test_worker_keys_state_by_the_canonical_name() -> None:
    from relayguard.agents.metrics import Metrics
    from relayguard.agents.pipeline import Origin, Pipeline
    from relayguard.foundation.core_params import build_core_params
    from relayguard.foundation.settings import Settings
    from relayguard.stream import codec
    from tests.unit.test_pipeline import Recorder

    def run(settings: Settings) -> tuple[Pipeline, Recorder]:
        rec = Recorder()
        return Pipeline(build_core_params(settings), None, rec, Metrics()), rec

    send = SendEvent("e1", 1796000000.0, "r", "ALICE", "192.0.2.1", "a@x", 1, 10)
    raw = codec.encode_event(send)
    pipe, rec = run(Settings())
    table: dict[str, bytes] = {}
    await pipe.ingest(raw, Origin("t", 0, 0, b"ALICE"), table)  # an old relay's key
    assert rec.rerouted == [("alice", raw)] and table == {}
    await pipe.ingest(raw, Origin("t", 0, 1, b"alice"), table)
    assert list(table) == ["alice"]
    pipe, rec = run(Settings(user_names="exact"))
    table = {}
    await pipe.ingest(raw, Origin("t", 0, 0, b"ALICE"), table)
    assert rec.rerouted == [] and list(table) == ["ALICE"]
