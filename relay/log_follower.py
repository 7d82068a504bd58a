"""Follow mail logs, turn their lines into login events, hand them to the producer.

One LogParser serves all followed files, so a Dovecot log followed beside the Postfix log can name
the user of old Postfix failure lines; the lines that several files gained in one poll are fed in
time order (relay.log_order), whatever order the files were named in. Each file is polled
(default every 200 ms); after every batch of lines whose events were handed over, the files'
checkpoints are saved (relay.checkpoint), so a restart resumes exactly after the last
handed-over line. Event ids come from relay id + file identity + byte offset, so the lines
replayed after a crash between hand-off and save give the same ids and consumers drop them.

With a parser made with deliveries=True (what `hook tail` uses), Postfix delivery outcomes become
`delivery` events too (relay.log_delivery); they are handed to the publisher's publish_raw()
(EventProducer has it) with the same retry and checkpoint rules.

Back-pressure: if the publisher refuses an event (returns False: its spool is full), the follower
retries that event until it is taken and reads nothing more meanwhile; no line is skipped.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

from relayguard.relay.checkpoint import CheckpointStore, FilePosition
from relayguard.relay.file_tail import FileTail, Line
from relayguard.relay.log_delivery import delivery_key, encode_delivery
from relayguard.relay.log_order import merge_by_time
from relayguard.relay.log_parser import LogParser
from relayguard.stream.records import DeliveryEvent, Event

log = logging.getLogger(__name__)


class Publisher(Protocol):
    """relay.producer.EventProducer fits: publish() returns False when it cannot take the event."""

    async def publish(self, event: Event) -> bool | None: ...


@runtime_checkable
class RawPublisher(Protocol):
    """What delivery events need (the core's codec does not know them yet): a keyed record."""

    def publish_raw(self, key: bytes, value: bytes) -> bool: ...


async def publish_any(publisher: Publisher, event: Event | DeliveryEvent) -> bool | None:
    """Hand one event over: login/send events through publish(), delivery events as raw
    records (checked at start-up by check_publisher)."""
    if isinstance(event, DeliveryEvent):
        assert isinstance(publisher, RawPublisher)
        return publisher.publish_raw(delivery_key(event), encode_delivery(event))
    return await publisher.publish(event)


def check_publisher(parser: LogParser, publisher: Publisher) -> None:
    if parser.deliveries and not isinstance(publisher, RawPublisher):
        raise TypeError("a parser with deliveries=True needs a publisher with publish_raw() "
                        "(relay.producer.EventProducer)")


@dataclass(slots=True)
class FollowerStats:
    lines: int = 0
    events: int = 0  # all handed over, delivery events included
    deliveries: int = 0
    refusals: int = 0  # publish() said no; the event was retried
    checkpoints: int = 0


class LogFollower:
    def __init__(
        self,
        paths: Sequence[str | Path],
        parser: LogParser,
        publisher: Publisher,
        checkpoints: CheckpointStore,
        *,
        from_end: bool = True,
        poll_interval: float = 0.2,
        retry_interval: float = 1.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        check_publisher(parser, publisher)
        self.parser = parser
        self.publisher = publisher
        self.checkpoints = checkpoints
        self.from_end = from_end
        self.poll_interval = poll_interval
        self.retry_interval = retry_interval
        self.clock = clock
        self.stats = FollowerStats()
        self._tails = [FileTail(str(p)) for p in paths]
        self._saved: dict[str, FilePosition | None] = {}
        self._stop = asyncio.Event()
        self._restored = False

    def restore(self) -> None:
        """Position every file from its checkpoint (or start/end when it has none)."""
        for tail in self._tails:
            pos = self.checkpoints.load(tail.path)
            tail.restore(pos, self.from_end)
            self._saved[tail.path] = pos
            if pos is None:  # remember where a fresh --from-end start began
                self._save(tail, tail.position())
        self._restored = True

    async def poll_once(self) -> int:
        """Read, parse, publish and checkpoint whatever is new in every file; events handed."""
        if not self._restored:
            self.restore()
        handed = 0
        batches = [tail.read() for tail in self._tails]
        now = self.clock()
        if sum(1 for b in batches if b) > 1:  # several files moved: feed them in time order
            lines: Iterable[Line] = merge_by_time([[(ln.text, ln) for ln in b] for b in batches],
                                                  now, self.parser.tz)
        else:
            lines = (ln for b in batches for ln in b)
        for line in lines:
            self.stats.lines += 1
            for event in self.parser.feed(line.text, self.clock(), line.line_id):
                await self._hand_over(event)
                handed += 1
            if self.parser.deliveries:
                for delivery in self.parser.pop_deliveries():
                    await self._hand_over(delivery)
                    self.stats.deliveries += 1
                    handed += 1
        for tail in self._tails:
            self._save(tail, tail.position())
        return handed

    async def run(self) -> None:
        """Poll until stop() is called."""
        while not self._stop.is_set():
            try:
                await self.poll_once()
            except OSError as exc:  # e.g. permission lost on a rotated file: log, retry next poll
                log.warning("log follower: %s", exc)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), self.poll_interval)

    def stop(self) -> None:
        self._stop.set()

    def close(self) -> None:
        for tail in self._tails:
            tail.close()

    async def _hand_over(self, event: Event | DeliveryEvent) -> None:
        while True:
            ok = await publish_any(self.publisher, event)
            if ok is None or ok:
                self.stats.events += 1
                return
            self.stats.refusals += 1
            log.warning("log follower: producer refused event %s; retrying", event.event_id)
            await asyncio.sleep(self.retry_interval)

    def _save(self, tail: FileTail, pos: FilePosition | None) -> None:
        if pos is None or pos == self._saved.get(tail.path):
            return
        self.checkpoints.save(pos)
        self._saved[tail.path] = pos
        self.stats.checkpoints += 1
