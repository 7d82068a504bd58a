"""Publish relay events to Kafka without ever blocking the caller and without losing events.

Write-ahead: `publish_nowait()` appends the event to the disk spool (relay/spool.py) and flushes
it to the OS before it returns True, so an accepted event survives SIGTERM and SIGKILL of this
process alike (an OS crash or power cut may lose up to `fsync_interval` of them). One sender
task reads the spool oldest first, hands up to `batch` records to aiokafka (acks=all,
idempotent, key = user or client IP) and commits the spool cursor only once Kafka has
acknowledged them. Nothing is held in RAM only, and there is no queue to lose.

If Kafka is unreachable, a send fails or is not acknowledged within `stall_timeout` (idempotent
aiokafka retries a handed-over record until the broker is back), the producer reports
`spooling` and keeps retrying; events accepted meanwhile simply wait on disk in publish order,
so per-user order is kept. A full spool refuses new events loudly (ERROR log, the
`dropped_full` counter, state `spool_full`); it never truncates what it holds.

With `batch_records=True` the sender groups the records it hands over by the partition their key
hashes to (Kafka's default murmur2 partitioner, so each user stays in one partition, in order)
and sends one batch record per partition (stream/batch_codec.py, schemas/event-batch.schema.json)
instead of one record per event: the worker pays its per-record cost once per batch. The spool
still holds single events; only the wire format changes, and the cursor moves past an event once
the batch record carrying it (and every batch before it in spool order) is acknowledged.

Delivery is at-least-once. A hook stopped or killed while a batch is handed over but not yet
acknowledged sends that batch again at its next start: at most `batch` (default 256) events are
repeated per stop, all from one contiguous stretch of the spool, which the worker's ring of the
last 256 event ids per user removes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from relayguard.relay.spool import Spool, SpoolRecord
from relayguard.stream import batch_codec
from relayguard.stream.codec import encode_event
from relayguard.stream.records import Event

log = logging.getLogger(__name__)

State = Literal["starting", "ok", "spooling", "spool_full", "stopped"]
Item = tuple[bytes, bytes]  # (key, value)
ProducerFactory = Callable[[], Any]  # returns an object with aiokafka's producer API


@dataclass(slots=True)
class ProducerStats:
    accepted: int = 0  # written ahead to the spool (every event publish_nowait took)
    sent: int = 0  # delivered without waiting for an outage to end
    spooled: int = 0  # accepted events that had to wait on disk (outage, or backlog behind one)
    replayed: int = 0  # delivered after such a wait, or left from an earlier run
    dropped_full: int = 0  # refused because the spool was full
    send_failures: int = 0
    spool_errors: int = 0  # events lost because the spool could not be written (disk, perms)
    spool_bytes: int = 0
    queue_depth: int = 0  # accepted, not yet acknowledged by Kafka
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
        spool_max_bytes: int = 1 << 30,
        fsync_interval: float = 1.0,
        retry_interval: float = 2.0,
        stall_timeout: float = 5.0,
        request_timeout_ms: int = 10_000,
        batch: int = 256,
        outage_stop_grace: float = 2.0,
        producer_factory: ProducerFactory | None = None,
        kafka_options: Mapping[str, Any] | None = None,
        batch_records: bool = False,
    ) -> None:
        if not 1 <= batch <= 256:
            # the worker dedupes re-sends with a ring of 256 ids per user: stay inside it
            raise ValueError(f"batch must be 1..256, not {batch}")
        self.bootstrap = bootstrap
        self.topic = topic
        self.retry_interval = retry_interval
        self.stall_timeout = stall_timeout
        self.request_timeout_ms = request_timeout_ms
        self.batch = batch
        self.fsync_interval = fsync_interval
        self.outage_stop_grace = outage_stop_grace
        self.batch_records = batch_records
        self._partitions: int | None = None  # of the topic, read at connect (batch_records)
        self._factory = producer_factory or self._aiokafka_producer
        self._kafka_options = dict(kafka_options or {})  # SASL/TLS (foundation.kafka_clients)
        self._spool = Spool(spool_dir, max_bytes=spool_max_bytes, fsync_interval=fsync_interval,
                            auto_sync=False)
        self._stats = ProducerStats()
        self._kafka: Any = None
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._stopping = False
        self._last_full_log = 0.0
        self._full_since_log = 0
        self._failing = False
        self._stalled = False  # sends handed to aiokafka are not confirming: broker away
        # per accepted record of this run, oldest first, run-length encoded: did it wait?
        self._waited: deque[list[Any]] = deque()
        self._pending = 0  # accepted this run, not acknowledged
        self._backlog = 0  # of those, how many waited on disk
        # records up to here are from an earlier run (count as replayed); None = none left
        self._prior_end: tuple[int, int] | None = None
        if not self._spool.is_empty():
            self._prior_end = self._spool.tail()
            log.warning("spool %s holds %d bytes from an earlier run; replaying them first",
                        spool_dir, self._spool.pending_bytes())

    # ---- public API ----------------------------------------------------------------------------

    @property
    def stats(self) -> ProducerStats:
        s = self._stats
        s.spool_bytes = self._spool.pending_bytes()
        s.queue_depth = self._pending
        return s

    @property
    def state(self) -> State:
        return self._stats.state

    @property
    def spool_max_bytes(self) -> int:
        return self._spool.max_bytes

    def publish_nowait(self, event: Event) -> bool:
        """Accept an event (written ahead to the spool) without awaiting anything. True = on
        disk (OS page cache); False = refused (spool full or unwritable), already logged and
        counted."""
        return self.publish_raw(event_key(event), encode_event(event))

    async def publish(self, event: Event) -> bool:
        return self.publish_nowait(event)

    def publish_raw(self, key: bytes, value: bytes) -> bool:
        if not self._to_spool(key, value):
            return False
        waits = (self._task is None or self._stalled or self._failing or self._backlog > 0
                 or self._prior_end is not None)
        self._stats.accepted += 1
        self._pending += 1
        if waits:
            self._backlog += 1
            self._stats.spooled += 1
            if self._stats.state in ("ok", "starting"):
                self._stats.state = "spooling"
                log.warning("Kafka unavailable or behind: events wait in the spool %s",
                            self._spool.dir)
        if self._waited and self._waited[-1][0] is waits:
            self._waited[-1][1] += 1
        else:
            self._waited.append([waits, 1])
        self._wake.set()
        return True

    async def start(self) -> None:
        """Start the sender. Never fails because Kafka is down: events then wait in the spool."""
        if self._task is None:
            self._stopping = False
            self._task = asyncio.create_task(self._run(), name="relayguard-producer")

    async def stop(self, timeout: float = 10.0) -> None:
        """Try to deliver what is pending for up to `timeout` s, or `outage_stop_grace` s once
        Kafka is seen away (a send unconfirmed for 1 s counts while stopping), then stop.
        Whatever is not acknowledged stays in the spool for the next start."""
        self._stopping = True
        self._wake.set()
        loop = asyncio.get_running_loop()
        started = loop.time()
        task = self._task
        if task is not None:
            while not task.done():
                limit = started + timeout
                if self._stalled or self._failing:
                    limit = min(limit, started + self.outage_stop_grace)
                left = limit - loop.time()
                if left <= 0:
                    task.cancel()
                    break
                await asyncio.wait({task}, timeout=min(left, 0.2))
            with contextlib.suppress(asyncio.CancelledError):
                await task
            self._task = None
        if self._kafka is not None:
            # aiokafka's stop() flushes and, with idempotence, waits for a broker forever
            away = self._stalled or self._failing
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._kafka.stop(),
                                       self.outage_stop_grace if away else 5.0)
            self._kafka = None
        self._spool.close()
        if self._pending:
            log.info("stopped with %d event(s) in the spool %s; they are sent at the next "
                     "start", self._pending, self._spool.dir)
        self._stats.state = "stopped"

    # ---- sender --------------------------------------------------------------------------------

    async def _run(self) -> None:
        while True:
            recs = self._spool.read(max_records=self.batch)
            if recs:
                done = await self._send([(r.key, r.value) for r in recs])
                if done:
                    last = recs[done - 1]
                    self._spool.commit(last.seq, last.end)
                    self._delivered(recs[:done])
                if done < len(recs):
                    self._all_wait()
                    self._set_state()
                    if self._stopping:
                        return  # stays on disk; sent at the next start
                    await self._pause()
                else:
                    self._set_state()
                continue
            if self._stopping:
                return
            await self._maybe_fsync()
            self._wake.clear()
            await _wait_set(self._wake, self.fsync_interval)

    async def _maybe_fsync(self) -> None:
        if not self._spool.sync_due():
            return
        fd = self._spool.sync_fd()
        if fd is not None:  # in a thread: a slow disk must not stall the policy answers
            await asyncio.to_thread(_fsync_close, fd)

    def _delivered(self, recs: list[SpoolRecord]) -> None:
        for r in recs:
            if self._prior_end is not None and (r.seq, r.end) <= self._prior_end:
                self._stats.replayed += 1
                if (r.seq, r.end) == self._prior_end:
                    self._prior_end = None
                continue
            self._prior_end = None
            if not self._waited:  # cannot happen: every record of this run was counted
                continue
            head = self._waited[0]
            waited = head[0]
            head[1] -= 1
            if not head[1]:
                self._waited.popleft()
            self._pending -= 1
            if waited:
                self._backlog -= 1
                self._stats.replayed += 1
            else:
                self._stats.sent += 1
        if self._backlog == 0 and self._prior_end is None and self._stats.replayed and \
                self._stats.state != "ok":
            log.info("spool drained: %d events replayed so far", self._stats.replayed)

    def _all_wait(self) -> None:
        """Kafka is away: every pending record now waits on disk (for stats and state)."""
        for run in self._waited:
            if not run[0]:
                run[0] = True
                self._backlog += run[1]
                self._stats.spooled += run[1]

    async def _send(self, items: list[Item]) -> int:
        """Send in order; return how many from the front were delivered.

        With idempotence aiokafka retries a handed-over record until the broker takes it (it
        never expires it), so a send that is not confirmed within `stall_timeout` means the
        broker is away: we flag a stall and keep waiting (re-sending would deliver twice).
        stop() cancels this wait; the records are still in the spool."""
        if self._kafka is None and not await self._connect():
            return 0
        futures: list[Any] = []
        # covers[i]: how many items from the front are delivered once futures[:i + 1] are
        covers: list[int] = []
        try:
            if self.batch_records:
                await self._send_batches(items, futures, covers)
            else:
                for key, value in items:
                    futures.append(await self._kafka.send(self.topic, value=value, key=key))
                    covers.append(len(futures))
        except Exception as exc:  # metadata timeout, broker gone: keep what was handed over
            self._note_failure(exc)
        done = 0
        try:
            for fut, covered in zip(futures, covers, strict=True):
                waited = 0.0
                while not fut.done():  # most are, by the time the batch is handed over
                    step = min(self.stall_timeout, 0.5)
                    try:
                        await asyncio.wait_for(asyncio.shield(fut), step)
                        break
                    except TimeoutError:
                        waited += step
                        if waited >= (min(self.stall_timeout, 1.0) if self._stopping
                                      else self.stall_timeout):
                            self._stall()
                fut.result()  # raises what aiokafka gave up with
                done = covered
        except Exception as exc:  # not retriable (aiokafka gave up): retried from the spool
            self._note_failure(exc)
        if self._stalled:
            log.warning("Kafka at %s accepts events again", self.bootstrap)
            self._stalled = False
        if done == len(items) and len(futures) == len(covers) and (
                not covers or covers[-1] == len(items)):
            self._failing = False
        return done

    async def _send_batches(self, items: list[Item], futures: list[Any],
                            covers: list[int]) -> None:
        """One batch record per partition, written to that partition explicitly. Batches are
        handed over in the order of their earliest item, so the prefix of items whose batches
        are all acknowledged is known from the futures in hand-over order."""
        if self._partitions is None:
            parts = await self._kafka.partitions_for(self.topic)
            if not parts:
                raise RuntimeError(f"no partitions known for {self.topic}")
            self._partitions = len(parts)
        groups = batch_codec.group_by_partition(items, self._partitions)
        runs: list[tuple[int, int, bytes]] = []  # (first item index, partition, record)
        for partition, group in groups.items():
            start = 0
            for count, record in batch_codec.pack(v for _, v in group):
                runs.append((group[start][0], partition, record))
                start += count
        runs.sort()
        # An item is delivered when every run holding an item at or before it is; with runs in
        # order of their first item, that prefix ends where the next run starts.
        for n, (_, partition, record) in enumerate(runs):
            futures.append(await self._kafka.send(self.topic, value=record, key=None,
                                                  partition=partition))
            covers.append(runs[n + 1][0] if n + 1 < len(runs) else len(items))

    def _stall(self) -> None:
        if not self._stalled:
            self._stalled = True
            self._note_failure(TimeoutError(f"no broker acknowledgement in {self.stall_timeout}s"))
            self._all_wait()
            self._set_state()

    async def _connect(self) -> bool:
        producer = self._factory()
        try:
            # Bounded: aiokafka's idempotent start retries the producer-id request forever when
            # the broker dies between bootstrap and that request; we must keep spooling.
            await asyncio.wait_for(producer.start(), self.request_timeout_ms / 1000 + 2)
        except Exception as exc:
            self._note_failure(exc)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(producer.stop(), 2.0)
            return False
        self._kafka = producer
        self._partitions = None  # read again: the topic may have grown
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

    def _to_spool(self, key: bytes, value: bytes) -> bool:
        try:
            appended = self._spool.append(key, value)
        except OSError as exc:  # disk full, permissions: as loud as a full spool
            self._stats.spool_errors += 1
            log.error("cannot write to spool %s (%s): event REFUSED and LOST", self._spool.dir,
                      exc)
            return False
        if appended:
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
        log.log(level, "Kafka at %s unavailable (%s: %s); events wait in the spool, retrying "
                "every %gs", self.bootstrap, type(exc).__name__, exc, self.retry_interval)
        self._failing = True

    def _set_state(self) -> None:
        if self._backlog == 0 and self._prior_end is None and not self._stalled \
                and not self._failing:
            if self._stats.state != "ok":
                log.info("Kafka publishing healthy")
            self._stats.state = "ok"
        elif self._stats.state in ("ok", "starting") or (
            self._stats.state == "spool_full"
            and self._spool.pending_bytes() < 0.9 * self._spool.max_bytes
        ):
            self._stats.state = "spooling"


async def _wait_set(event: asyncio.Event, timeout: float) -> None:
    """Until `event` is set, `timeout` seconds at most (then it is set here). What
    `wait_for(event.wait(), timeout)` does for the sender's loop, without a task and a timeout
    context per wake-up: at low traffic the loop wakes once per event."""
    handle = asyncio.get_running_loop().call_later(timeout, event.set)
    try:
        await event.wait()
    finally:
        handle.cancel()


def _fsync_close(fd: int) -> None:
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
