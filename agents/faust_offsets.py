"""Small, documented fixes to faust-streaming 0.15.3's offset bookkeeping
(faust/transport/consumer.py), installed by giving the app our own Transport.

What Faust does: `Consumer._committed_offset[tp]` holds the group's committed offset, i.e. the
NEXT offset to read (Kafka's convention: perform_seek() copies it from seek_to_committed()).
Acked offsets are collected in `_acked[tp]`; `_new_offset(tp)` commits the first run of
consecutive acked offsets, and is meant to wait while the head of that run is missing. Two
things let a commit step over an offset that was never processed:

1. The head check is off by one: `if min(acked) - committed_offset > 1: return None`. With
   committed = C (next to read) and acked = [C+1, ...], C+1 - C = 1 passes, and C+2.. is
   committed although C was never acked. Fixed here: the head of the run must be C itself.
2. Stream.__aiter__ skips a record fetched in an earlier consumer generation, or one that
   reaches the stream while flow control is suspended (a rebalance or recovery is under way),
   but still ACKS it, and `ack()` accepts any offset >= committed: an offset that was never
   processed is committed. Seen on the real broker: after a restart the records at the
   committed offset C.. reached the stream during recovery, were skipped and committed, and the
   worker processed C+3 next. Fixed here: such a record is marked done for shutdown's
   bookkeeping but never counted as acked, so the commit cannot pass it; it is processed when
   it is fetched again, or re-read by agents/offset_guard.py.
3. The stream acks the record it yielded in a `finally:` around the `yield`, so when an agent is
   cancelled in the middle of handling a record (a graceful stop does this), the record is acked
   and the final commit passes it although its state was never written. Fixed here: the agent
   marks each record in flight (`begin` / `finish`); an ack of a record whose handling did not
   finish is not counted, so the commit stops in front of it and the next worker redoes it.

4. Before committing, `Consumer._commit_offsets` flushes the producer, but Faust's send buffer
   (`ProducerBuffer.flush`) gives up after 100 ms without a message sent, and a message the
   buffer has taken but not yet handed to aiokafka is in neither. On a loaded machine the commit
   then passes records whose changelog writes were still unsent, and a SIGKILL right after loses
   that state for good (the records are never read again). Fixed here: every changelog write of
   our state tables is tracked (`track_write`) and a commit waits until every write issued
   before it is confirmed by the broker; if one failed the worker crashes (a restart redoes the
   records), and if they are not confirmed in time the commit is skipped (done later, or redone
   by the next worker: a redelivery has no effect).

All are belts; the braces are agents/offset_guard.py (every skipped offset is noticed and
re-read) and the per-key source positions in the core (a redelivery has no effect).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any

from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP, Message
from faust.types.tuples import ack_lock

log = logging.getLogger(__name__)

# How long a commit waits for the changelog writes before it; a broker that takes longer is in
# trouble, and skipping one commit costs only redelivery.
WRITE_CONFIRM_TIMEOUT_S = 15.0


class GuardedConsumer(faust_aiokafka.Consumer):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # (topic, partition, offset) of records an agent has started and not finished handling.
        self.in_flight: set[tuple[str, int, int]] = set()
        # Changelog writes not yet confirmed by the broker (fix 4).
        self.unconfirmed: set[asyncio.Future[Any]] = set()

    def track_write(self, fut: asyncio.Future[Any]) -> None:
        if not fut.done():
            self.unconfirmed.add(fut)
            fut.add_done_callback(self.unconfirmed.discard)

    async def writes_confirmed(self, timeout: float | None = None) -> bool:
        """True once every changelog write issued so far is on the broker."""
        timeout = WRITE_CONFIRM_TIMEOUT_S if timeout is None else timeout
        pending = list(self.unconfirmed)
        if not pending:
            return True
        done, waiting = await asyncio.wait(pending, timeout=timeout)
        failed = [e for f in done if not f.cancelled() and (e := f.exception()) is not None]
        if failed:
            log.error("a state changelog write failed (%r): stopping the worker so that a "
                      "restart redoes the records instead of committing past them", failed[0])
            await self.crash(failed[0])
            return False
        if waiting:
            log.warning("%d state changelog writes not confirmed in %.0f s; commit skipped "
                        "(the records are redone if this worker stops)", len(waiting), timeout)
            return False
        return True

    async def _commit_offsets(self, offsets: Mapping[TP, int],
                              start_new_transaction: bool = True) -> bool:
        if not await self.writes_confirmed():
            return False
        return bool(await super()._commit_offsets(
            offsets, start_new_transaction=start_new_transaction))

    def begin(self, topic: str, partition: int, offset: int) -> None:
        self.in_flight.add((topic, partition, offset))

    def finish(self, topic: str, partition: int, offset: int) -> None:
        self.in_flight.discard((topic, partition, offset))

    def ack(self, message: Message) -> bool:
        stale = getattr(message, "generation_id", None) not in (
            None, self.app.consumer_generation_id)
        unfinished = (message.topic, message.partition, message.offset) in self.in_flight
        if stale or unfinished or not self.app.flow_control.is_active():
            with ack_lock:
                message.acked = True  # nothing waits for it; it will be fetched again
                self._unacked_messages.discard(message)
            return False
        return super().ack(message)

    def _new_offset(self, tp: TP) -> int | None:
        acked = self._acked[tp]
        committed = self._committed_offset[tp]
        # The next offset to commit (== committed) has not been acked yet: wait for it.
        if acked and committed is not None and not self._gap[tp] and min(acked) > committed:
            return None
        return super()._new_offset(tp)


class GuardedTransport(faust_aiokafka.Transport):
    Consumer = GuardedConsumer


def install(app: Any) -> None:
    """Use the guarded consumer (must run before anything touches `app.topics`)."""
    app.transport = GuardedTransport(app.conf.broker_consumer, app)


def mark_processed(app: Any, topic: str, partition: int, offsets: list[int]) -> None:
    """Offsets processed outside Faust's stream (healed gaps): let the commit move past them."""
    consumer = app.consumer
    tp = TP(topic, partition)
    with ack_lock:
        committed = consumer._committed_offset[tp]
        index = consumer._acked_index[tp]
        for offset in offsets:
            if (committed is None or offset >= committed) and offset not in index:
                index.add(offset)
                consumer._acked[tp].append(offset)
                consumer._n_acked += 1


def begin(app: Any, topic: str, partition: int, offset: int) -> None:
    """The agent starts handling this record (see fix 3 above)."""
    consumer = app.consumer
    if isinstance(consumer, GuardedConsumer):
        consumer.begin(topic, partition, offset)


def finish(app: Any, topic: str, partition: int, offset: int) -> None:
    """The agent has handled this record: its ack may count."""
    consumer = app.consumer
    if isinstance(consumer, GuardedConsumer):
        consumer.finish(topic, partition, offset)


def track_write(app: Any, fut: asyncio.Future[Any]) -> None:
    """A state changelog write: commits wait for the broker to confirm it (fix 4)."""
    consumer = app.consumer
    if isinstance(consumer, GuardedConsumer):
        consumer.track_write(fut)
