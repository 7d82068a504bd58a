"""Lock book: version ordering and local expiry."""

from __future__ import annotations

from relayguard.relay.lock_book import LockBook
from relayguard.stream.records import LockCommand

NOW = 1_800_000_000.0


def _cmd(action: str, version: int, subject: str = "alice", kind: str = "user",
         expires_at: float | None = None) -> LockCommand:
    return LockCommand(command_id=f"c{version}", subject=subject, subject_kind=kind,  # type: ignore[arg-type]
                       action=action, reason="r", detector="d", evidence={},  # type: ignore[arg-type]
                       issued_at=NOW, expires_at=expires_at, issuer="t", version=version)


def test_higher_version_wins_regardless_of_arrival_order() -> None:
    book = LockBook()
    assert book.apply(_cmd("unlock", 5))
    assert not book.apply(_cmd("lock", 3))  # older, arrived late
    assert not book.apply(_cmd("lock", 5))  # same version again (replay)
    assert not book.is_locked("user", "alice", NOW)
    assert book.apply(_cmd("lock", 6))
    assert book.is_locked("user", "alice", NOW) and book.version("user", "alice") == 6


def test_subjects_are_independent_per_kind() -> None:
    book = LockBook()
    book.apply(_cmd("lock", 1, subject="192.0.2.1", kind="ip"))
    assert book.is_locked("ip", "192.0.2.1", NOW)
    assert not book.is_locked("user", "192.0.2.1", NOW)
    assert book.apply(_cmd("lock", 1, subject="192.0.2.1", kind="user"))


def test_expiry_is_local() -> None:
    book = LockBook()
    book.apply(_cmd("lock", 1, expires_at=NOW + 10))
    assert book.is_locked("user", "alice", NOW + 9.9)
    assert not book.is_locked("user", "alice", NOW + 10)
    assert list(book.active(NOW)) and not list(book.active(NOW + 10))
    assert book.version("user", "alice") == 1  # still remembered for ordering
    assert not book.apply(_cmd("lock", 1))


def test_ipv6_forms_match() -> None:
    book = LockBook()
    book.apply(_cmd("lock", 1, subject="2001:DB8:0:0::1", kind="ip"))
    assert book.is_locked("ip", "2001:db8::1", NOW)
