"""A small Python client for relays that are neither Postfix nor log-based.

    settings = load_settings()                # relayguard.foundation.settings
    client = RelayClient("kafka:9093", "relay-custom-1", settings.topics,
                         security=settings.kafka)  # SASL_SSL: RELAYGUARD_KAFKA__*
    await client.start()                      # follows the locks topic, starts the producer
    if client.is_locked("alice@example.com"):
        refuse()
    client.login("alice@example.com", "203.0.113.7", success=True, tls_protocol="TLSv1.3")
    client.login("bob@example.com", "203.0.113.9", success=False, password=attempted)
    client.sent("alice@example.com", "203.0.113.7", sender="alice@example.com",
                recipient_count=3, size=18233, queue_id="q1")
    async for cmd in client.watch(): ...      # lock/unlock commands as they are applied
    await client.stop()

Password hashes: with a secret (`RelayClient(..., password_secret=...)`), `login(...,
password=...)` sends `password_hash` = "hmac-sha256:" + the first 16 hex digits of
HMAC-SHA256(secret, password) (`password_hash()` below), never the password; or pass
`password_hash=` computed elsewhere ("<scheme>:<hex>"). The worker then counts only distinct
wrong passwords per user, so a phone retrying one stale password is not a guessing attack. Use
one secret for every relay of a fleet (the same password must give the same hash everywhere),
keep it as secret as a signing key, and note that changing it makes old and new hashes of one
password differ for a window.

Events go through relay/producer.py (never blocks, spools to disk while Kafka is down); lock
state comes from relay/lock_follower.py (the whole compacted locks topic, kept in RAM).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import time
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path

from relayguard.foundation.kafka_clients import KafkaSecurity, aiokafka_options
from relayguard.foundation.settings import Topics
from relayguard.relay.lock_book import LockBook
from relayguard.relay.lock_book_store import LockBookStore
from relayguard.relay.lock_follower import LockFollower
from relayguard.relay.producer import EventProducer, ProducerStats
from relayguard.stream.policy import refuses_authenticated, spares
from relayguard.stream.records import LockCommand, LoginEvent, SendEvent
from relayguard.stream.user_names import UserNameMode, canonical_user, canonical_user_or_none

HASH_HEX_DIGITS = 16  # 64 bits: distinct guesses stay distinct, the hash reveals little
_HASH = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]{0,31}:[0-9A-Fa-f]{4,95}")  # <scheme>:<hex>


def password_hash(password: str | bytes, secret: bytes | str) -> str:
    """`hmac-sha256:<first 16 hex digits of HMAC-SHA256(secret, password)>`, as in the login
    event schema. A str password (or secret) is taken as UTF-8, surrogate escapes as the bytes
    they stand for, so raw bytes and their surrogateescape decoding hash alike."""
    key = secret.encode("utf-8", "surrogateescape") if isinstance(secret, str) else secret
    if not key:
        raise ValueError("password_hash needs a non-empty secret: an unkeyed hash of a "
                         "password can be looked up in a dictionary")
    raw = password.encode("utf-8", "surrogateescape") if isinstance(password, str) else password
    digest = hmac.new(key, raw, hashlib.sha256)
    return f"hmac-sha256:{digest.hexdigest()[:HASH_HEX_DIGITS]}"


def check_password_hash(value: str) -> str:
    """`value` if it looks like "<scheme>:<hex>" (at most 128 characters), else ValueError."""
    if len(value) > 128 or not _HASH.fullmatch(value):
        raise ValueError(f"password_hash must be '<scheme>:<hex>' (e.g. hmac-sha256:"
                         f"6b86b273ff34fce1), at most 128 characters; got {value[:40]!r}")
    return value


_hash_password = password_hash  # login()'s parameter of that name shadows the function


class RelayClient:
    def __init__(
        self,
        bootstrap: str,
        relay_id: str,
        topics: Topics | None = None,
        *,
        spool_dir: Path | None = None,
        source: str = "client",
        clock: Callable[[], float] = time.time,
        security: KafkaSecurity | None = None,
        user_names: UserNameMode | None = None,
        lock_book: Path | None = None,
        password_secret: bytes | str | None = None,
    ) -> None:
        """`user_names` defaults to RELAYGUARD_USER_NAMES: names in events and lock look-ups are
        put in that canonical form (stream/user_names.py). With `lock_book` (a file path) the
        locks are saved there on every applied command and loaded (verified) here, so
        `is_locked` knows them at once after a restart, even while Kafka is down.
        `password_secret` keys the password hashes `login(password=...)` sends (the same on
        every relay of the fleet)."""
        if password_secret is not None and not password_secret:
            raise ValueError("password_secret must not be empty")
        self.password_secret = password_secret
        from relayguard.foundation.settings import load_settings

        settings = load_settings()
        if user_names is None:
            user_names = settings.user_names
        self.user_names: UserNameMode = user_names
        topics = topics or Topics()
        options = aiokafka_options(security or KafkaSecurity())  # SASL/TLS, checked here
        self.relay_id = relay_id
        self.source = source
        self.clock = clock
        self.producer = EventProducer(bootstrap, topics.events,
                                      spool_dir or Path(".relayguard") / f"client-spool-{relay_id}",
                                      kafka_options=options)
        book, store = LockBook(user_names), None
        if lock_book is not None:
            from relayguard.foundation.signing import keyring_from_settings

            store = LockBookStore(lock_book, keyring_from_settings(settings),
                                  settings.signing_max_skew_seconds, clock=clock)
            store.load(book)
        self.follower = LockFollower(bootstrap, topics.locks, topics.lock_acks, relay_id,
                                     book, clock=clock, kafka_options=options, store=store)

    async def start(self, ready_timeout: float | None = 30.0) -> bool:
        """Start publishing and following; True once the current locks are all known."""
        await self.producer.start()
        await self.follower.start()
        return await self.follower.ready(ready_timeout)

    async def stop(self) -> None:
        await self.follower.stop()
        await self.producer.stop()

    async def __aenter__(self) -> RelayClient:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # ---- events --------------------------------------------------------------------------------

    def login(
        self, user: str | None, client_ip: str, success: bool, *,
        tls_protocol: str | None = None, sasl_mechanism: str | None = None,
        failure_reason: str | None = None, event_id: str | None = None,
        event_time: float | None = None, password_hash: str | None = None,
        password: str | bytes | None = None,
    ) -> bool:
        """Publish one SMTP AUTH attempt. False only if the spool is full (logged).

        Optionally with the attempted password's keyed hash, so the worker counts distinct
        wrong passwords only: either `password_hash` already computed ("<scheme>:<hex>", e.g.
        "hmac-sha256:6b86b273ff34fce1", at most 128 characters), or the plain `password`,
        hashed here with the client's `password_secret` (module function `password_hash`);
        the password itself is never sent or kept. ValueError for both at once, a malformed
        hash, or a password without a secret."""
        if password is not None:
            if password_hash is not None:
                raise ValueError("pass password_hash or password, not both")
            if self.password_secret is None:
                raise ValueError("login(password=...) needs RelayClient(password_secret=...)")
            password_hash = _hash_password(password, self.password_secret)
        elif password_hash is not None:
            check_password_hash(password_hash)
        return self.producer.publish_nowait(LoginEvent(
            event_id=event_id or self._new_id(), event_time=event_time or self.clock(),
            relay_id=self.relay_id, user=canonical_user_or_none(user, self.user_names),
            client_ip=client_ip, success=success,
            tls_protocol=tls_protocol, sasl_mechanism=sasl_mechanism,
            failure_reason=None if success else (failure_reason or "bad_credentials"),
            source=self.source, password_hash=password_hash,
        ))

    def sent(
        self, user: str, client_ip: str, *, sender: str, recipient_count: int, size: int,
        tls_protocol: str | None = None, queue_id: str | None = None,
        event_id: str | None = None, event_time: float | None = None,
    ) -> bool:
        """Publish one accepted authenticated message. Pass a stable `event_id` (e.g. from the
        queue id) if you may report the same message twice: duplicates are then dropped."""
        return self.producer.publish_nowait(SendEvent(
            event_id=event_id or self._new_id(), event_time=event_time or self.clock(),
            relay_id=self.relay_id, user=canonical_user(user, self.user_names) or user,
            client_ip=client_ip, sender=sender,
            recipient_count=recipient_count, size=size, tls_protocol=tls_protocol,
            queue_id=queue_id, source=self.source,
        ))

    # ---- locks ---------------------------------------------------------------------------------

    def is_locked(self, user: str, client_ip: str | None = None) -> bool:
        """Whether to refuse this user. A lock of scope "unfamiliar_networks" (slow guessing,
        stream/policy.py) spares the networks its evidence lists: pass the session's client
        address so the owner at home or at the office is let through; without it every lock
        refuses."""
        lock = self.follower.book.active_lock("user", user, self.clock())
        if lock is None:
            return False
        return not spares(lock, client_ip)

    def is_ip_blocked(self, client_ip: str, authenticated: bool = False) -> bool:
        """Whether to refuse this client address. A block of scope "unauthenticated" (guessing
        behind a shared address, stream/policy.py) spares a client that authenticated
        correctly: pass authenticated=True after a successful AUTH."""
        lock = self.follower.book.active_lock("ip", client_ip, self.clock())
        if lock is None:
            return False
        return not authenticated or refuses_authenticated(lock)

    def lock_for(self, user: str) -> LockCommand | None:
        """The lock in force (reason, expiry), to tell the user why."""
        return self.follower.book.active_lock("user", user, self.clock())

    def watch(self) -> AsyncIterator[LockCommand]:
        return self.follower.watch()

    @property
    def stats(self) -> ProducerStats:
        return self.producer.stats

    def _new_id(self) -> str:
        return f"{self.source}:{self.relay_id}:{uuid.uuid4().hex}"
