"""relay/client.py's optional password hash: the keyed hash itself, and what login() sends."""

from __future__ import annotations

from pathlib import Path

import pytest

from relayguard.relay.client import RelayClient, check_password_hash, password_hash
from relayguard.stream.records import Event, LoginEvent


def test_hmac_sha256_known_vector() -> None:
    # RFC 4231 test case 2: HMAC-SHA256(key "Jefe", "what do ya want for nothing?")
    assert password_hash("what do ya want for nothing?", "Jefe") == "hmac-sha256:5bdcc146bf60754e"
    assert password_hash(b"what do ya want for nothing?", b"Jefe") == "hmac-sha256:5bdcc146bf60754e"


def test_hash_depends_on_password_and_secret_and_bytes_match_their_escapes() -> None:
    a = password_hash("hunter2", "k1")
    assert a != password_hash("hunter3", "k1") and a != password_hash("hunter2", "k2")
    raw = b"p\xe4ss"  # Latin-1 bytes, not UTF-8
    assert password_hash(raw, "k") == password_hash(raw.decode("utf-8", "surrogateescape"), "k")
    with pytest.raises(ValueError, match="non-empty secret"):
        password_hash("x", b"")


@pytest.mark.parametrize("value", ["hmac-sha256:6b86b273ff34fce1", "sha1:6b86b2",
                                   "ssha256:" + "ab" * 40])
def test_accepted_hash_forms(value: str) -> None:
    assert check_password_hash(value) == value


@pytest.mark.parametrize("value", ["hunter2", "hmac-sha256:", ":abcd", "hmac sha:abcd",
                                   "md5:xyz123", "x:" + "a" * 127])
def test_refused_hash_forms(value: str) -> None:
    with pytest.raises(ValueError, match="<scheme>:<hex>"):
        check_password_hash(value)


def _client(tmp_path: Path, secret: str | None) -> tuple[RelayClient, list[Event]]:
    client = RelayClient("127.0.0.1:9", "relay-h", spool_dir=tmp_path / "spool",
                         password_secret=secret)
    sent: list[Event] = []

    def capture(event: Event) -> bool:  # stands in for the producer: nothing is started
        sent.append(event)
        return True

    client.producer.publish_nowait = capture  # type: ignore[method-assign]
    return client, sent


def test_login_sends_the_hash_never_the_password(tmp_path: Path) -> None:
    client, sent = _client(tmp_path, "fleet-secret")
    assert client.login("Bob@Example.com", "192.0.2.9", success=False, password="hunter2")
    assert client.login("bob@example.com", "192.0.2.9", success=False,
                        password_hash="sha1:6b86b2")
    assert client.login("bob@example.com", "192.0.2.9", success=True)
    hashes = [e.password_hash for e in sent if isinstance(e, LoginEvent)]
    assert hashes == [password_hash("hunter2", "fleet-secret"), "sha1:6b86b2", None]
    assert all("hunter2" not in repr(e) for e in sent)
    with pytest.raises(ValueError, match="not both"):
        client.login("bob", "192.0.2.9", success=False, password="x", password_hash="sha1:abcd")
    with pytest.raises(ValueError, match="<scheme>:<hex>"):
        client.login("bob", "192.0.2.9", success=False, password_hash="hunter2")
    assert len(sent) == 3


def test_password_without_a_secret_is_refused(tmp_path: Path) -> None:
    client, sent = _client(tmp_path, None)
    with pytest.raises(ValueError, match="password_secret"):
        client.login("bob", "192.0.2.9", success=False, password="hunter2")
    assert not sent
    with pytest.raises(ValueError, match="must not be empty"):
        RelayClient("127.0.0.1:9", "relay-h", spool_dir=tmp_path / "s2", password_secret="")
