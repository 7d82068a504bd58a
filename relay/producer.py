"""Publish relay events to Kafka without ever blocking the caller and without losing events.

Path of an event: `publish_nowait()` puts it on a bounded in-RAM queue; one sender task sends it
(aiokafka, acks=all, idempotent, key = user or client IP). If Kafka is unreachable or a send
fails, the event and everything queued behind it go to the disk spool (relay/spool.py); while the
spool holds anything, new events go to the spool too, so per-user order is kept. A send already
handed to aiokafka when the broker goes away stays there (the idempotent producer retries it
until the broker is back, without duplicates); meanwhile new events go to the spool. When Kafka is
back the sender replays the spool, oldest first, then returns to the queue path. A full queue
spills to the spool instead of blocking. A full spool refuses new events loudly (ERROR log, the
`dropped_full` counter, state `spool_full`); it never truncates what it holds.

Delivery is at-least-once: a send that timed out may still have reached Kafka and is spooled
anyway; consumers drop duplicates by event_id.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from relayguard.relay.spool import Spool
from relayguard.stream.codec import encode_event
from relayguard.stream.records import Event

log = logging.getLogger(__name__)

State = Literal["starting", "ok", "spooling", "spool_full", "stopped"]
Item = tuple[bytes, bytes]  # (key, value)
ProducerFactory = Callable[[], Any]  # returns an object with aiokafka's producer API


@dataclass(slots=True)
class ProducerStats:
    sent: int = 0  # delivered straight from the queue
    spooled: int = 0  # written to the disk spool
    replayed: int = 0  # delivered from the spool
    dropped_full: int = 0  # refused because the spool was full
    send_failures: int = 0
    spool_errors: int = 0  # events lost because the spool could not be written (disk, perms)
    spool_bytes: int = 0
    queue_depth: int = 0
    state: State = "starting"


def event_key(event: Event) -> bytes:
    """Events of one user stay in one partition (in order); unknown user -> client IP."""
    return (event.user or event.client_ip).encode()


class EventProducer:
    def __init__(
        self,
        bootstrap: str,
        topic: str,
        spool_dir: Path,
        *,
        queue_size: int = 10_000,
        spool_max_bytes: int = 1 << 30,
        fsync_interval: float = 1.0,
        retry_interval: float = 2.0,
        stall_timeout: float = 5.0,
        request_timeout_ms: int = 10_000,
        batch: int = 500,
        producer_factory: ProducerFactory | None = None,
        kafka_options: Mapping[str, Any] | None = None,
    ) -> None:
        self.bootstrap = bootstrap
        self.topic = topic
        self.retry_interval = retry_interval
        self.stall_timeout = stall_timeout
        self.request_timeout_ms = request_timeout_ms
        self.batch = batch
        self._factory = producer_factory or self._aiokafka_producer
        self._kafka_options = dict(kafka_options or {})  # SASL/TLS (foundation.kafka_clients)
        self._spool = Spool(spool_dir, max_bytes=spool_max_bytes, fsync_interval=fsync_interval)
        self._queue: asyncio.Queue[Item] = asyncio.Queue(maxsize=queue_size)
        self._stats = ProducerStats()
        self._kafka: Any = None
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._stopping = False
        self._last_full_log = 0.0
        self._full_since_log = 0
        self._failing = False
        self._stalled = False  # sends handed to aiokafka are not confirming: broker away
        self._inflight: list[Item] = []  # direct sends awaiting confirmation
        if not self._spool.is_empty():
            log.warning("spool %s holds %d bytes from an earlier run; replaying them first",
                        spool_dir, self._spool.pending_bytes())

    # ---- public API ----------------------------------------------------------------------------

    @property
    def stats(self) -> ProducerStats:
        s = self._stats
        s.spool_bytes = self._spool.pending_bytes()
        s.queue_depth = self._queue.qsize()
        return s

    @property
    def state(self) -> State:
        return self._stats.state

    def publish_nowait(self, event: Event) -> bool:
        """Accept an event (queue or spool) without awaiting anything. False = refused (spool
        full); the refusal is already logged and counted."""
        return self.publish_raw(event_key(event), encode_event(event))

    async def publish(self, event: Event) -> bool:
        return self.publish_nowait(event)

    def publish_raw(self, key: bytes, value: bytes) -> bool:
        if self._stopping and self._task is None:
            return self._to_spool(key, value)
        if self._stalled or not self._spool.is_empty():
            return self._to_spool(key, value)
        try:
            self._queue.put_nowait((key, value))
        except asyncio.QueueFull:
            # spill the whole queue first so the spool keeps publish order
            self._spill_queue()
            return self._to_spool(key, value)
        return True

    async def start(self) -> None:
        """Start the sender. Never fails because Kafka is down: events then go to the spool."""
        if self._task is None:
            self._stopping = False
            self._task = asyncio.create_task(self._run(), name="relayguard-producer")

    async def stop(self, timeout: float = 10.0) -> None:
        """Flush: try to deliver what is queued for up to `timeout` s, spool the rest."""
        self._stopping = True
        self._wake.set()
        if self._task is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self._task), timeout)
            except TimeoutError:
                self._task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._task
            self._task = None
        self._spill_queue()
        if self._inflight:  # handed to aiokafka but unconfirmed: keep them (may duplicate)
            self._spool.prepend(self._inflight)
            self._stats.spooled += len(self._inflight)
            self._inflight = []
        if self._kafka is not None:
            # aiokafka's stop() flushes and, with idempotence, waits for a broker forever
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._kafka.stop(), 5.0)
            self._kafka = None
        self._spool.close()
        self._stats.state = "stopped"

    # ---- sender --------------------------------------------------------------------------------

    async def _run(self) -> None:
        while True:
            if not self._queue.empty():
                batch = [self._queue.get_nowait() for _ in range(min(self.batch,
                                                                      self._queue.qsize()))]
                if not await self._send_direct(batch) and not self._stopping:
                    await self._pause()
            elif not self._spool.is_empty():
                if not await self._replay_some():
                    if self._stopping:
                        return  # stays on disk; replayed at next start
                    await self._pause()
            elif self._stopping:
                return
            else:
                self._spool.maybe_sync()
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), 1.0)

    async def _send_direct(self, batch: list[Item]) -> bool:
        self._inflight = batch
        done = await self._send(batch)
        self._inflight = []
        self._stats.sent += done
        if done < len(batch):
            # older than anything spooled meanwhile, so it goes before it
            failed = batch[done:]
            self._spill_queue()
            self._spool.prepend(failed)
            self._stats.spooled += len(failed)
            self._set_state()
            return False
        self._set_state()
        return True

    async def _replay_some(self) -> bool:
        recs = self._spool.read(max_records=self.batch)
        if not recs:
            self._set_state()
            return True
        done = await self._send([(r.key, r.value) for r in recs])
        if done:
            last = recs[done - 1]
            self._spool.commit(last.seq, last.end)
            self._stats.replayed += done
            if self._spool.is_empty():
                log.info("spool drained: %d events replayed so far", self._stats.replayed)
        self._set_state()
        return done == len(recs)

    async def _send(self, items: list[Item]) -> int:
        """Send in order; return how many from the front were delivered.

        With idempotence aiokafka retries a handed-over record until the broker takes it (it
        never expires it), so a send that is not confirmed within `stall_timeout` means the
        broker is away: we flag a stall (new events then go to the spool) and keep waiting.
        Spooling the unconfirmed records instead would deliver them twice."""
        if self._kafka is None and not await self._connect():
            return 0
        futures = []
        try:
            for key, value in items:
                futures.append(await self._kafka.send(self.topic, value=value, key=key))
        except Exception as exc:  # metadata timeout, broker gone: keep what was handed over
            self._note_failure(exc)
        done = 0
        try:
            for fut in futures:
                while True:
                    try:
                        await asyncio.wait_for(asyncio.shield(fut), self.stall_timeout)
                        break
                    except TimeoutError:
                        self._stall()
                done += 1
        except Exception as exc:  # not retriable (aiokafka gave up): caller spools the rest
            self._note_failure(exc)
        if self._stalled:
            log.warning("Kafka at %s accepts events again", self.bootstrap)
            self._stalled = False
        if done == len(items) and done == len(futures):
            self._failing = False
        return done

    def _stall(self) -> None:
        if not self._stalled:
            self._stalled = True
            self._note_failure(TimeoutError(f"no broker acknowledgement in {self.stall_timeout}s"))
            self._spill_queue()
            self._set_state()

    async def _connect(self) -> bool:
        producer = self._factory()
        try:
            # Bounded: aiokafka's idempotent start retries the producer-id request forever when
            # the broker dies between bootstrap and that request; we must spool meanwhile.
            await asyncio.wait_for(producer.start(), self.request_timeout_ms / 1000 + 2)
        except Exception as exc:
            self._note_failure(exc)
            with contextlib.suppress(Exception):
                await producer.stop()
            return False
        self._kafka = producer
        log.info("connected to Kafka at %s, publishing to %s", self.bootstrap, self.topic)
        return True

    def _aiokafka_producer(self) -> Any:
        from aiokafka import AIOKafkaProducer

        return AIOKafkaProducer(
            bootstrap_servers=self.bootstrap, acks="all", enable_idempotence=True,
            request_timeout_ms=self.request_timeout_ms, linger_ms=5,
            client_id="relayguard-relay", **self._kafka_options,
        )

    async def _pause(self) -> None:
        self._wake.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), self.retry_interval)

    # ---- spool side ----------------------------------------------------------------------------

    def _spill_queue(self) -> None:
        while not self._queue.empty():
            key, value = self._queue.get_nowait()
            self._to_spool(key, value)

    def _to_spool(self, key: bytes, value: bytes) -> bool:
        try:
            appended = self._spool.append(key, value)
        except OSError as exc:  # disk full, permissions: as loud as a full spool
            self._stats.spool_errors += 1
            log.error("cannot write to spool %s (%s): event LOST", self._spool.dir, exc)
            return False
        if appended:
            self._stats.spooled += 1
            if self._stats.state in ("ok", "starting"):
                self._stats.state = "spooling"
                log.warning("Kafka unavailable or behind: spooling events to %s", self._spool.dir)
            return True
        self._stats.dropped_full += 1
        self._full_since_log += 1
        if self._stats.state != "spool_full":
            self._stats.state = "spool_full"
        now = time.monotonic()
        if now - self._last_full_log >= 1.0:  # one ERROR line a second, with the count
            log.error(
                "SPOOL FULL (%d bytes, cap %d): refused %d event(s) since last report, "
                "%d in total; these events are LOST. Free space or raise the cap.",
                self._spool.pending_bytes(), self._spool.max_bytes, self._full_since_log,
                self._stats.dropped_full,
            )
            self._last_full_log = now
            self._full_since_log = 0
        return False

    def _note_failure(self, exc: BaseException) -> None:
        self._stats.send_failures += 1
        # one WARNING per outage, then DEBUG, so a long outage does not flood the log
        level = logging.DEBUG if self._failing else logging.WARNING
        log.log(level, "Kafka at %s unavailable (%s: %s); events go to the spool, retrying "
                "every %gs", self.bootstrap, type(exc).__name__, exc, self.retry_interval)
        self._failing = True

    def _set_state(self) -> None:
        if self._spool.is_empty() and self._queue.empty() and not self._stalled:
            if self._stats.state != "ok":
                log.info("Kafka publishing healthy")
            self._stats.state = "ok"
        elif self._stats.state in ("ok", "starting") or (
            self._stats.state == "spool_full"
            and self._spool.pending_bytes() < 0.9 * self._spool.max_bytes
        ):
            self._stats.state = "spooling"
