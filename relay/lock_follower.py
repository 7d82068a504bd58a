"""Follow the compacted locks topic into the relay's LockBook and acknowledge what it applies.

Every relay reads every partition from the beginning (no consumer group: group_id=None,
partitions assigned explicitly), so a new relay learns every current lock; `await ready()`
returns once it has caught up with the end offsets seen at start. Then it keeps following.
Only commands signed by a key in the relay's keyring, with a version and times in range, are
obeyed: anything else is refused, logged and counted in `refused` by reason, never fatal.
Dry-run commands and tombstones are skipped. If Kafka
is down at start, the follower keeps retrying in the background (the relay then serves with
the locks it knows: those of its saved lock book, relay/lock_book_store.py, else none).

With a `store`, the book is saved after every batch that applied a command, before that batch's
acks go out (an ack then means "enforced, also after a restart"); while catching up at start it
is saved at most every `catch_up_save_interval` s and once when caught up, since re-reading the
topic re-applies only what the saved book may lack.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

from relayguard.relay.lock_book import LockBook
from relayguard.relay.lock_book_store import LockBookStore
from relayguard.stream.codec import (
    Rejected,
    decode_signed_lock_command,
    dumps,
    lock_ack_to_dict,
    lock_key,
)
from relayguard.stream.records import LockAck, LockCommand
from relayguard.stream.signed import Verifier

log = logging.getLogger(__name__)


class LockFollower:
    def __init__(
        self,
        bootstrap: str,
        locks_topic: str,
        acks_topic: str,
        relay_id: str,
        book: LockBook | None = None,
        *,
        clock: Callable[[], float] = time.time,
        retry_interval: float = 2.0,
        kafka_options: Mapping[str, Any] | None = None,
        keyring: Verifier | None = None,
        max_skew: float | None = None,
        store: LockBookStore | None = None,
        catch_up_save_interval: float = 5.0,
    ) -> None:
        """`keyring`/`max_skew` default to RELAYGUARD_VERIFY_KEYS(_DIR) and
        RELAYGUARD_SIGNING_MAX_SKEW_SECONDS; no verify key at all is a ConfigError."""
        if keyring is None or max_skew is None:
            from relayguard.foundation.settings import load_settings
            from relayguard.foundation.signing import keyring_from_settings

            settings = load_settings()
            keyring = keyring if keyring is not None else keyring_from_settings(settings)
            max_skew = max_skew if max_skew is not None else settings.signing_max_skew_seconds
        self.keyring = keyring
        self.max_skew = max_skew
        self.bootstrap = bootstrap
        self.locks_topic = locks_topic
        self.acks_topic = acks_topic
        self.relay_id = relay_id
        self.book = book if book is not None else LockBook()
        self.clock = clock
        self.retry_interval = retry_interval
        self._kafka_options = dict(kafka_options or {})  # SASL/TLS (foundation.kafka_clients)
        self.applied = 0
        self.skipped = 0  # refused, tombstone, dry-run, or not newer
        self.refused: Counter[str] = Counter()  # reason -> records not obeyed (see codec)
        self._refusal_logged: dict[str, float] = {}
        self._ready = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._consumer: Any = None
        self._producer: Any = None
        self._targets: dict[Any, int] = {}
        self._watchers: set[asyncio.Queue[LockCommand]] = set()
        self.store = store
        self.catch_up_save_interval = catch_up_save_interval
        self._dirty = False  # applied commands not yet saved
        self._last_save = time.monotonic()
        self.save_failures = 0

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="relayguard-lock-follower")

    async def ready(self, timeout: float | None = None) -> bool:
        """Wait until caught up with the locks topic; False if `timeout` ran out first."""
        try:
            await asyncio.wait_for(self._ready.wait(), timeout)
        except TimeoutError:
            return False
        return True

    @property
    def is_ready(self) -> bool:
        return self._ready.is_set()

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self._persist(force=True)  # what catch-up applied since the last throttled save
        await self._close()

    async def watch(self) -> AsyncIterator[LockCommand]:
        """Every command applied from now on (lock and unlock), as it is applied."""
        q: asyncio.Queue[LockCommand] = asyncio.Queue()
        self._watchers.add(q)
        try:
            while True:
                yield await q.get()
        finally:
            self._watchers.discard(q)

    # ---- internals ---------------------------------------------------------------------------

    async def _run(self) -> None:
        warned = False
        while True:
            try:
                await self._connect()
                warned = False
                await self._follow()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                level = logging.DEBUG if warned else logging.WARNING
                log.log(level, "lock follower: Kafka at %s unavailable (%s: %s); retrying every "
                        "%gs, enforcing the %d locks known", self.bootstrap,
                        type(exc).__name__, exc, self.retry_interval, len(self.book))
                warned = True
                await self._close()
                await asyncio.sleep(self.retry_interval)

    async def _connect(self) -> None:
        from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

        from relayguard.foundation.kafka_read import assign_from_beginning

        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap, group_id=None, enable_auto_commit=False,
            auto_offset_reset="earliest", client_id=f"relayguard-locks-{self.relay_id}",
            **self._kafka_options,
        )
        await self._consumer.start()
        self._targets = await assign_from_beginning(self._consumer, self.locks_topic)
        if not self._targets:
            raise RuntimeError(f"topic {self.locks_topic} does not exist (yet)")
        self._producer = AIOKafkaProducer(bootstrap_servers=self.bootstrap, acks=1,
                                          client_id=f"relayguard-acks-{self.relay_id}",
                                          **self._kafka_options)
        await self._producer.start()
        log.info("lock follower: reading %s (%d partitions) from the beginning",
                 self.locks_topic, len(self._targets))

    async def _follow(self) -> None:
        while True:
            await self._check_caught_up()
            batches = await self._consumer.getmany(timeout_ms=500, max_records=1000)
            applied = [cmd for records in batches.values() for rec in records
                       if (cmd := self._handle(rec.key, rec.value, rec.offset)) is not None]
            await self._persist()
            for cmd in applied:
                for q in self._watchers:
                    q.put_nowait(cmd)
                await self._ack(cmd)

    async def _persist(self, force: bool = False) -> None:
        """Save the book if something was applied (throttled while catching up). The snapshot
        is taken here; the write and fsync run in a thread, off the policy service's loop."""
        if self.store is None or not self._dirty:
            return
        if not (force or self._ready.is_set()
                or time.monotonic() - self._last_save >= self.catch_up_save_interval):
            return
        seq, body = self.store.snapshot(self.book)
        self._dirty = False  # commands applied from now on need another save
        try:
            await asyncio.to_thread(self.store.write, seq, body)
            self.store.saves += 1
        except OSError as exc:
            self._dirty = True
            self.save_failures += 1
            log.error("lock follower: could not save the lock book to %s (%s); enforcing from "
                      "RAM, a restart during a Kafka outage would not know the newest locks",
                      self.store.path, exc)
            return
        self._last_save = time.monotonic()

    async def _check_caught_up(self) -> None:
        if self._ready.is_set():
            return
        for tp, end in self._targets.items():
            if await self._consumer.position(tp) < end:  # position = next offset to read
                return
        self._ready.set()
        await self._persist(force=True)
        log.info("lock follower caught up: %d subjects known, %d locks active, %d records "
                 "refused", len(self.book), sum(1 for _ in self.book.active(self.clock())),
                 sum(self.refused.values()))

    def _handle(self, key: bytes | None, value: bytes | None, offset: int
                ) -> LockCommand | None:
        """Apply one record; the command if it changed the book (to notify and ack)."""
        if value is None:  # tombstone: compaction clean-up, nothing to enforce
            self.skipped += 1
            return None
        try:
            cmd = decode_signed_lock_command(value, self.keyring, self.clock(), self.max_skew)
        except Rejected as exc:
            self.skipped += 1
            self.refused[exc.reason] += 1
            self._log_refusal(exc, offset, key)
            return None
        if key is not None and key != lock_key(cmd.subject_kind, cmd.subject):
            log.warning("lock follower: record key %r does not match its subject %s:%s",
                        key, cmd.subject_kind, cmd.subject)
        if cmd.dry_run or not self.book.apply(cmd):
            self.skipped += 1
            return None
        self.applied += 1
        if self.store is not None:
            self.store.remember(self.book.key(cmd.subject_kind, cmd.subject), value)
            self._dirty = True
        log.info("lock follower: applied %s %s:%s v%d (%s)", cmd.action, cmd.subject_kind,
                 cmd.subject, cmd.version, cmd.reason[:120])
        return cmd

    def _log_refusal(self, exc: Rejected, offset: int, key: bytes | None) -> None:
        """One ERROR line per reason per second at most: a flood of forgeries must not drown
        the relay's log (the counts in `refused` stay exact)."""
        now = time.monotonic()
        if now - self._refusal_logged.get(exc.reason, float("-inf")) < 1.0:
            return
        self._refusal_logged[exc.reason] = now
        log.error("lock follower: REFUSED lock record at offset %d (key %r): %s; not obeyed "
                  "(refused so far: %s)", offset, key[:200] if key else key, str(exc)[:300],
                  ", ".join(f"{r} {n}" for r, n in sorted(self.refused.items())))

    async def _ack(self, cmd: LockCommand) -> None:
        ack = LockAck(relay_id=self.relay_id, command_id=cmd.command_id, subject=cmd.subject,
                      subject_kind=cmd.subject_kind, action=cmd.action, version=cmd.version,
                      applied_at=self.clock())
        try:  # hand over and move on; an ack lost to an outage does not change enforcement
            fut = await self._producer.send(
                self.acks_topic, value=dumps(lock_ack_to_dict(ack)),
                key=lock_key(cmd.subject_kind, cmd.subject),
            )
            fut.add_done_callback(_log_ack_failure)
        except Exception as exc:
            log.warning("lock follower: could not publish ack for %s: %s", cmd.command_id, exc)

    async def _close(self) -> None:
        for client in (self._consumer, self._producer):
            if client is not None:
                with contextlib.suppress(Exception):
                    await client.stop()
        self._consumer = self._producer = None


def _log_ack_failure(fut: asyncio.Future[Any]) -> None:
    if not fut.cancelled() and fut.exception() is not None:
        log.warning("lock follower: ack not delivered: %s", fut.exception())
