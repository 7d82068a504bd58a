"""The relay's lock book on disk: atomic saves, reload into a fresh book, and every entry
verified again on load (a tampered, unsigned or foreign-key entry is refused, the rest obeyed)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import orjson
import pytest

from relayguard.foundation import signing
from relayguard.relay.lock_book import LockBook
from relayguard.relay.lock_book_store import LockBookStore
from relayguard.relay.lock_follower import LockFollower
from relayguard.stream.codec import encode_lock_command, lock_key
from relayguard.stream.records import LockCommand
from tests.fixtures.signing import session_keyring, session_signer

NOW = time.time()


def _cmd(subject: str, version: int, action: str = "lock", kind: str = "user",
         expires_at: float | None = None) -> LockCommand:
    return LockCommand(command_id=f"c-{subject}-{version}", subject=subject,
                       subject_kind=kind, action=action, reason="test",  # type: ignore[arg-type]
                       detector="operator", evidence={}, issued_at=NOW - 5,
                       expires_at=expires_at, issuer="t", version=version)


def _store(path: Path) -> LockBookStore:
    return LockBookStore(path, session_keyring(), 300.0)


def _saved(path: Path, *cmds: LockCommand) -> LockBook:
    """A book and its file as the follower leaves them after applying `cmds`."""
    book, store = LockBook(), _store(path)
    for c in cmds:
        assert book.apply(c)
        store.remember(book.key(c.subject_kind, c.subject),
                       encode_lock_command(c, session_signer()))
    store.save(book)
    return book


def test_save_and_reload(tmp_path: Path) -> None:
    path = tmp_path / "d" / "book.json"
    _saved(path, _cmd("alice", 1), _cmd("bob", 2), _cmd("bob", 3, "unlock"),
           _cmd("192.0.2.9", 4, kind="ip"), _cmd("carol", 5, expires_at=NOW + 3600))
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    assert [p.name for p in path.parent.iterdir()] == ["book.json"]  # no temp file left
    book = LockBook()
    result = _store(path).load(book)
    assert result.problem is None and not result.refused and result.subjects == 4
    assert result.saved_at is not None and abs(result.saved_at - time.time()) < 60
    assert book.is_locked("user", "ALICE", NOW)  # canonical keys on reload too
    assert not book.is_locked("user", "bob", NOW) and book.version("user", "bob") == 3
    assert book.is_locked("ip", "192.0.2.9", NOW)
    assert book.is_locked("user", "carol", NOW) and not book.is_locked("user", "carol",
                                                                        NOW + 7200)


def test_a_newer_command_replaces_the_saved_one(tmp_path: Path) -> None:
    path = tmp_path / "book.json"
    book, store = LockBook(), _store(path)
    for c in (_cmd("alice", 1), _cmd("ALICE", 2, "unlock")):
        assert book.apply(c)
        store.remember(book.key("user", c.subject), encode_lock_command(c, session_signer()))
        store.save(book)
    assert len(orjson.loads(path.read_bytes())["records"]) == 1
    fresh = LockBook()
    _store(path).load(fresh)
    assert not fresh.is_locked("user", "alice", NOW)


def test_failed_save_keeps_the_old_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "book.json"
    _saved(path, _cmd("alice", 1))
    before = path.read_bytes()
    book, store = LockBook(), _store(path)
    store.load(book)
    book.apply(_cmd("bob", 2))
    store.remember(book.key("user", "bob"), encode_lock_command(_cmd("bob", 2), session_signer()))

    def boom(src: object, dst: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError):
        store.save(book)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["book.json"]


def test_tampered_unsigned_and_foreign_entries_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "book.json"
    _saved(path, _cmd("alice", 1), _cmd("bob", 2), _cmd("carol", 3), _cmd("dave", 4))
    data = orjson.loads(path.read_bytes())
    recs = {r["subject"]: r for r in data["records"]}
    recs["bob"]["action"] = "unlock"  # edited after signing
    del recs["carol"]["signature"]
    other = signing.Signer(signing.generate())  # a key this relay does not trust
    recs["dave"] = orjson.loads(encode_lock_command(_cmd("dave", 4), other))
    recs["eve"] = {"type": "lock_command", "subject": "eve"}  # junk
    data["records"] = list(recs.values())
    path.write_bytes(orjson.dumps(data))
    book = LockBook()
    result = _store(path).load(book)
    assert result.subjects == 1 and book.is_locked("user", "alice", NOW)
    assert book.version("user", "bob") is None and book.version("user", "carol") is None
    assert book.version("user", "dave") is None and book.version("user", "eve") is None
    assert sum(result.refused.values()) == 4
    assert result.refused["unsigned"] == 1, result.refused


@pytest.mark.parametrize("content", [b"{not json", b"[]", b'{"format": "other"}',
                                     b'{"format": "relayguard-lock-book", "format_version": 9,'
                                     b' "records": []}'])
def test_unreadable_file_is_reported_not_fatal(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "book.json"
    path.write_bytes(content)
    book = LockBook()
    result = _store(path).load(book)
    assert result.problem is not None and len(book) == 0


def test_missing_file_is_a_fresh_start(tmp_path: Path) -> None:
    result = _store(tmp_path / "none.json").load(LockBook())
    assert result.problem == "no saved lock book yet" and result.subjects == 0


async def test_follower_saves_what_it_applies(tmp_path: Path) -> None:
    """The follower's record path (no Kafka): applied commands are saved; refused and older
    ones are not; during catch-up saves wait for the interval or the end of catch-up."""
    path = tmp_path / "book.json"
    store = _store(path)
    follower = LockFollower("127.0.0.1:1", "locks", "acks", "r", store=store,
                            keyring=session_keyring(), max_skew=300.0,
                            catch_up_save_interval=3600)
    raw = encode_lock_command(_cmd("alice", 7), session_signer())
    assert follower._handle(lock_key("user", "alice"), raw, 0) is not None
    await follower._persist()
    assert not path.exists()  # catching up: throttled
    follower._ready.set()
    await follower._persist()
    assert path.exists() and store.saves == 1
    forged = encode_lock_command(_cmd("bob", 8), signing.Signer(signing.generate()))
    assert follower._handle(lock_key("user", "bob"), forged, 1) is None
    assert follower._handle(lock_key("user", "alice"), raw, 2) is None  # not newer
    await follower._persist()
    assert store.saves == 1  # nothing new applied: no write
    book = LockBook()
    assert _store(path).load(book).subjects == 1 and book.is_locked("user", "alice", NOW)


def test_relay_client_knows_saved_locks_before_kafka(tmp_path: Path) -> None:
    from relayguard.relay.client import RelayClient

    path = tmp_path / "client-book.json"
    _saved(path, _cmd("alice@example.com", 1))
    client = RelayClient("127.0.0.1:1", "relay-py", spool_dir=tmp_path / "spool",
                         lock_book=path)  # never started: no Kafka at all
    assert client.is_locked("Alice@Example.COM")
    assert not client.is_locked("bob@example.com")
    assert client.follower.store is not None


def test_an_older_snapshot_never_overwrites_a_newer_one(tmp_path: Path) -> None:
    path = tmp_path / "book.json"
    book, store = LockBook(), _store(path)
    book.apply(_cmd("alice", 1))
    store.remember(book.key("user", "alice"),
                   encode_lock_command(_cmd("alice", 1), session_signer()))
    old = store.snapshot(book)
    book.apply(_cmd("bob", 2))
    store.remember(book.key("user", "bob"), encode_lock_command(_cmd("bob", 2), session_signer()))
    store.write(*store.snapshot(book))
    store.write(*old)  # a slower thread finishing late
    assert len(orjson.loads(path.read_bytes())["records"]) == 2
