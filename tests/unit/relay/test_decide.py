"""Pure policy decisions and send events from policy requests."""

from __future__ import annotations

import pytest

from relayguard.relay.lock_book import LockBook
from relayguard.relay.policy_protocol import (
    DecisionConfig,
    PolicyParser,
    PolicyRequest,
    decide,
    send_event_from,
    send_event_id,
)
from relayguard.stream.records import LockCommand

NOW = 1_800_000_000.0
CFG = DecisionConfig(reject_text="locked", throttle_action="DEFER 4.7.1 slow down")


def _req(**attrs: str) -> PolicyRequest:
    base = {"request": "smtpd_access_policy", "client_address": "192.0.2.10"}
    return PolicyRequest({**base, **attrs})


def _cmd(subject: str, kind: str = "user", action: str = "lock", version: int = 1,
         expires_at: float | None = None, dry_run: bool = False) -> LockCommand:
    return LockCommand(command_id=f"c{version}", subject=subject, subject_kind=kind,  # type: ignore[arg-type]
                       action=action, reason="r", detector="d", evidence={},  # type: ignore[arg-type]
                       issued_at=NOW - 10, expires_at=expires_at, issuer="t", version=version,
                       dry_run=dry_run)


def test_unlocked_user_is_dunno() -> None:
    assert decide(_req(protocol_state="RCPT", sasl_username="bob"), LockBook(), NOW, CFG) == "DUNNO"


@pytest.mark.parametrize("state", ["RCPT", "DATA", "END-OF-MESSAGE", "MAIL"])
def test_locked_user_rejected(state: str) -> None:
    book = LockBook()
    book.apply(_cmd("alice"))
    assert decide(_req(protocol_state=state, sasl_username="alice"), book, NOW, CFG) == (
        "REJECT 5.7.1 locked")


@pytest.mark.parametrize("state", ["CONNECT", "EHLO", "HELO", "VRFY", "ETRN", ""])
def test_other_states_dunno(state: str) -> None:
    book = LockBook()
    book.apply(_cmd("alice"))
    assert decide(_req(protocol_state=state, sasl_username="alice"), book, NOW, CFG) == "DUNNO"


def test_throttle_is_deferred_until_it_expires() -> None:
    book = LockBook()
    book.apply(_cmd("alice", expires_at=NOW + 60))
    req = _req(protocol_state="RCPT", sasl_username="alice")
    assert decide(req, book, NOW, CFG) == "DEFER 4.7.1 slow down"
    assert decide(req, book, NOW + 61, CFG) == "DUNNO"


def test_blocked_ip_for_authenticated_session() -> None:
    book = LockBook()
    book.apply(_cmd("2001:db8::42", kind="ip"))
    req = _req(protocol_state="RCPT", sasl_username="bob", client_address="2001:DB8:0::42")
    assert decide(req, book, NOW, CFG) == "REJECT 5.7.1 locked"


def test_unauthenticated_is_not_our_business_unless_configured() -> None:
    book = LockBook()
    book.apply(_cmd("192.0.2.10", kind="ip"))
    req = _req(protocol_state="CONNECT")
    assert decide(req, book, NOW, CFG) == "DUNNO"
    strict = DecisionConfig(reject_text="locked", ip_locks_unauthenticated=True)
    assert decide(req, book, NOW, strict) == "REJECT 5.7.1 locked"


def test_unlock_and_dry_run() -> None:
    book = LockBook()
    book.apply(_cmd("alice", version=1))
    book.apply(_cmd("alice", action="unlock", version=2))
    req = _req(protocol_state="RCPT", sasl_username="alice")
    assert decide(req, book, NOW, CFG) == "DUNNO"
    assert not book.apply(_cmd("alice", version=3, dry_run=True))
    assert decide(req, book, NOW, CFG) == "DUNNO"


def test_config_rejects_multiline_text() -> None:
    with pytest.raises(ValueError):
        DecisionConfig(reject_text="a\nb")


EOM = (
    b"request=smtpd_access_policy\nprotocol_state=END-OF-MESSAGE\nsasl_username=alice\n"
    b"client_address=203.0.113.7\nsender=alice@example.com\nrecipient_count=3\nsize=18233\n"
    b"queue_id=4XkQ1z2ZbLz9vQ\ninstance=1f2a.6543abcd.12345.0\nencryption_protocol=TLSv1.3\n\n"
)


def test_send_event_at_end_of_message() -> None:
    (req,) = PolicyParser().feed(EOM)
    ev = send_event_from(req, "relay-1", NOW)
    assert ev is not None
    assert (ev.user, ev.client_ip, ev.sender) == ("alice", "203.0.113.7", "alice@example.com")
    assert (ev.recipient_count, ev.size, ev.tls_protocol) == (3, 18233, "TLSv1.3")
    assert ev.queue_id == "4XkQ1z2ZbLz9vQ" and ev.relay_id == "relay-1" and ev.event_time == NOW
    assert ev.source == "postfix-policy"
    again = send_event_from(req, "relay-1", NOW + 5)
    assert again is not None and again.event_id == ev.event_id  # a retry dedupes


def test_send_event_without_tls_or_auth_or_at_rcpt() -> None:
    (req,) = PolicyParser().feed(EOM.replace(b"TLSv1.3", b""))
    ev = send_event_from(req, "r", NOW)
    assert ev is not None and ev.tls_protocol is None
    (anon,) = PolicyParser().feed(EOM.replace(b"sasl_username=alice", b"sasl_username="))
    assert send_event_from(anon, "r", NOW) is None
    (rcpt,) = PolicyParser().feed(EOM.replace(b"END-OF-MESSAGE", b"RCPT"))
    assert send_event_from(rcpt, "r", NOW) is None


def test_event_id_is_bounded_and_distinct() -> None:
    long_id = send_event_id("r" * 300, "Q", "I")
    assert len(long_id) <= 256
    assert send_event_id("r", "Q1", "I") != send_event_id("r", "Q2", "I")


def _ip_lock(scope: str | None, version: int = 1) -> LockCommand:
    evidence = {} if scope is None else {"scope": scope}
    return LockCommand(command_id=f"ip{version}", subject="192.0.2.10", subject_kind="ip",
                       action="lock", reason="r", detector="auth_failures_ip",
                       evidence=evidence, issued_at=NOW - 10, expires_at=NOW + 600,
                       issuer="t", version=version)


@pytest.mark.parametrize("scope", [None, "all", "something-new"])
def test_an_ip_lock_of_scope_all_refuses_authenticated_users(scope: str | None) -> None:
    book = LockBook()
    book.apply(_ip_lock(scope))
    req = _req(protocol_state="RCPT", sasl_username="bob")
    assert decide(req, book, NOW, CFG) == "DEFER 4.7.1 slow down"


def test_an_unauthenticated_scope_ip_lock_spares_a_user_who_authenticated() -> None:
    """Office NAT behind one stale phone: colleagues who log in correctly still send."""
    book = LockBook()
    book.apply(_ip_lock("unauthenticated"))
    assert decide(_req(protocol_state="RCPT", sasl_username="bob"), book, NOW, CFG) == "DUNNO"
    on = DecisionConfig(reject_text="locked", throttle_action="DEFER 4.7.1 slow down",
                        ip_locks_unauthenticated=True)
    assert decide(_req(protocol_state="RCPT", sasl_username="bob"), book, NOW, on) == "DUNNO"
    # ...but the address itself stays refused to clients that did not authenticate
    assert decide(_req(protocol_state="RCPT"), book, NOW, on) == "DEFER 4.7.1 slow down"
    # and a user's own lock still applies from behind it
    book.apply(_cmd("bob"))
    assert decide(_req(protocol_state="RCPT", sasl_username="bob"), book, NOW, CFG) == (
        "REJECT 5.7.1 locked")


@pytest.mark.parametrize(("scope", "authenticated", "blocked"), [
    (None, True, True), ("all", True, True), ("unauthenticated", True, False),
    ("unauthenticated", False, True), ("all", False, True)])
def test_relay_client_honours_the_ip_lock_scope(scope: str | None, authenticated: bool,
                                                 blocked: bool) -> None:
    from types import SimpleNamespace

    from relayguard.relay.client import RelayClient

    book = LockBook()
    book.apply(_ip_lock(scope))
    fake = SimpleNamespace(follower=SimpleNamespace(book=book), clock=lambda: NOW)
    assert RelayClient.is_ip_blocked(fake, "192.0.2.10", authenticated) is blocked  # type: ignore[arg-type]
    assert RelayClient.is_ip_blocked(fake, "192.0.2.11", authenticated) is False  # type: ignore[arg-type]


def _scoped(subject: str, evidence: dict[str, object], expires_at: float | None = NOW + 3600
            ) -> LockCommand:
    return LockCommand(command_id="s1", subject=subject, subject_kind="user", action="lock",
                       reason="slow guessing", detector="auth_failures_slow", evidence=evidence,
                       issued_at=NOW - 10, expires_at=expires_at, issuer="t", version=1)


def test_a_user_lock_of_scope_unfamiliar_networks_spares_only_the_familiar_ones() -> None:
    # auth_failures_slow: the guesser's proxies are refused, the owner's office is not.
    book = LockBook()
    book.apply(_scoped("alice", {"scope": "unfamiliar_networks",
                                 "familiar_networks": ["198.51.0.0/16"]}))
    office = _req(protocol_state="RCPT", sasl_username="alice", client_address="198.51.100.20")
    proxy = _req(protocol_state="RCPT", sasl_username="alice", client_address="203.0.113.9")
    assert decide(office, book, NOW, CFG) == "DUNNO"
    assert decide(proxy, book, NOW, CFG) == "DEFER 4.7.1 slow down"


def test_a_spared_network_still_meets_an_ip_block() -> None:
    book = LockBook()
    book.apply(_scoped("alice", {"scope": "unfamiliar_networks",
                                 "familiar_networks": ["198.51.0.0/16"]}))
    book.apply(_cmd("198.51.100.20", kind="ip", version=2))
    office = _req(protocol_state="RCPT", sasl_username="alice", client_address="198.51.100.20")
    assert decide(office, book, NOW, CFG) == "REJECT 5.7.1 locked"


@pytest.mark.parametrize("evidence", [
    {"familiar_networks": ["198.51.0.0/16"]},  # no scope: everywhere
    {"scope": "unfamiliar_networks"},  # nothing to spare
    {"scope": "unfamiliar_networks", "familiar_networks": "198.51.0.0/16"},  # not a list
    {"scope": "unfamiliar_networks", "familiar_networks": [7, None]},  # hostile members
    {"scope": "all", "familiar_networks": ["198.51.0.0/16"]},
])
def test_any_other_user_lock_refuses_the_user_everywhere(evidence: dict[str, object]) -> None:
    book = LockBook()
    book.apply(_scoped("alice", evidence))
    office = _req(protocol_state="RCPT", sasl_username="alice", client_address="198.51.100.20")
    assert decide(office, book, NOW, CFG) == "DEFER 4.7.1 slow down"


def test_relay_client_honours_the_user_lock_scope() -> None:
    from types import SimpleNamespace

    from relayguard.relay.client import RelayClient

    book = LockBook()
    book.apply(_scoped("alice", {"scope": "unfamiliar_networks",
                                 "familiar_networks": ["198.51.0.0/16"]}))
    fake = SimpleNamespace(follower=SimpleNamespace(book=book), clock=lambda: NOW)
    assert not RelayClient.is_locked(fake, "alice", "198.51.100.7")  # type: ignore[arg-type]
    assert RelayClient.is_locked(fake, "alice", "203.0.113.5")  # type: ignore[arg-type]
    assert RelayClient.is_locked(fake, "alice")  # type: ignore[arg-type]  # no address: refuse
    assert not RelayClient.is_locked(fake, "bob", "203.0.113.5")  # type: ignore[arg-type]
