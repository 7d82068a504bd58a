"""What the agents do with one record, written against plain interfaces so it can be tested
without Faust: decode -> (DLQ | re-key | enrich -> core step -> table -> outputs).

A record is one event or a batch of events of one partition (stream/batch_codec.py). A batch's
events are stepped in record order, each key's state kept in memory meanwhile and written to
its table once, after its outputs, at the end of the batch. That write is what makes
exactly-once by source position hold for batches: a key's state records the batch's offset
only together with the effect of ALL that key's events in it, so "offset already applied"
still means "every event of this key in that record applied", and the position
(offset, index in record) needs no index in the state: within a record, index order is the
processing order, and a redelivered record is either wholly applied to a key or not at all.
"""

from __future__ import annotations

import logging
import struct
import time
from collections.abc import MutableMapping
from dataclasses import dataclass
from typing import Protocol

from relayguard.agents import state_codec
from relayguard.agents.dead_letter import dead_letter_record
from relayguard.agents.metrics import Metrics
from relayguard.foundation.geoip import GeoLocator, enrich
from relayguard.stream import batch_codec, codec, engine
from relayguard.stream.detectors.registry import needs_ip_state
from relayguard.stream.records import Alert, Event, LockCommand, SubjectKind
from relayguard.stream.user_names import canonical_event

log = logging.getLogger("relayguard.worker")


class Outputs(Protocol):
    async def dead_letter(self, record: dict[str, object]) -> None: ...
    async def lock_command(self, command: LockCommand) -> None: ...
    async def alert(self, alert: Alert) -> None: ...
    async def reroute(self, key: str, raw: bytes) -> None: ...
    async def by_ip(self, key: str, raw: bytes) -> None: ...


@dataclass(frozen=True)
class Origin:
    topic: str
    partition: int
    offset: int
    key: bytes | None


# By-IP records carry the events-topic position they came from, so per-IP state can drop an
# at-least-once re-forward by position exactly as per-user state does: magic, partition, offset.
_SOURCE_MAGIC = b"rg-src1:"
_SOURCE = struct.Struct(">iq")


def wrap_source(source: engine.Source, raw: bytes) -> bytes:
    return _SOURCE_MAGIC + _SOURCE.pack(*source) + raw


def unwrap_source(value: bytes) -> tuple[engine.Source | None, bytes]:
    """(source position, event bytes); records without one (older workers) give None."""
    if value.startswith(_SOURCE_MAGIC) and len(value) >= len(_SOURCE_MAGIC) + _SOURCE.size:
        partition, offset = _SOURCE.unpack_from(value, len(_SOURCE_MAGIC))
        return (partition, offset), value[len(_SOURCE_MAGIC) + _SOURCE.size:]
    return None, value


def user_key(event: Event) -> str:
    """The events topic key: the user, or the client IP when the relay did not know the user."""
    return event.user or event.client_ip


class Pipeline:
    def __init__(
        self,
        params: engine.CoreParams,
        locator: GeoLocator | None,
        outputs: Outputs,
        metrics: Metrics,
        partitions: int | None = None,
    ) -> None:
        self.params = params
        # Partitions of the events topic: an event inside a batch record must hash to the
        # record's partition (its state is co-partitioned with it), else it is re-keyed.
        # None: batch records are refused whole (no way to check them).
        self.partitions = partitions
        self._partition_of: dict[str, int] = {}
        self.locator = locator
        self.outputs = outputs
        self.metrics = metrics
        self.has_ip_detectors = bool(params.for_kind("ip"))
        # (kind, key) -> expiry of the throttles this worker knows, so the expiry timer need
        # not unpickle every state; filled as states are stored (and by one scan at start).
        self.expiring: dict[tuple[SubjectKind, str], float] = {}
        self.decoded = state_codec.DecodedCache()
        # With `trust_cache`, a state in `decoded` is used without reading the table (a RocksDB
        # lookup per event, ~15% of the batch path). Safe only while every table write goes
        # through `store` and nothing else changes the tables: the shell calls
        # `new_generation` at every consumer generation (recovery and standby promotion happen
        # only in a rebalance), which forgets the cache.
        self.trust_cache = False
        self._generation: int | None = None

    async def ingest(
        self, raw: bytes, origin: Origin, users: MutableMapping[str, bytes]
    ) -> None:
        """One record from the events topic. Never raises on bad input."""
        now = time.time()  # the shell owns the clock; the codec and core get `now` passed in
        try:
            items = batch_codec.decode_batch(raw)
            if items is not None and self.partitions is None:
                raise codec.Rejected("unknown_type", "batch records need the partition count")
        except codec.Rejected as exc:
            await self._reject(raw, exc, origin, now)
            return
        if items is not None:
            await self._ingest_batch(items, origin, users, now)
            return
        try:
            event = canonical_event(codec.decode_event(raw, now, self.params.time_bounds),
                                    self.params.user_names)
        except codec.Rejected as exc:
            await self._reject(raw, exc, origin, now)
            return
        key = user_key(event)
        if origin.key != key.encode():
            # State is co-partitioned with the key; a wrongly keyed record would split it.
            self.metrics.inc("rerouted_total")
            await self.outputs.reroute(key, raw)
            return
        source = (origin.partition, origin.offset)
        if self.has_ip_detectors and needs_ip_state(event):
            await self.outputs.by_ip(event.client_ip, wrap_source(source, raw))
        if event.user is None:
            self.metrics.inc("events_total", outcome="no_user")
            return
        await self._step("user", event.user, enrich(event, self.locator), users, source)

    async def _reject(self, raw: bytes, exc: codec.Rejected, origin: Origin, now: float,
                      index: int | None = None) -> None:
        self.metrics.inc("dead_letters_total", reason=exc.reason)
        if exc.reason == "time_out_of_range":
            self.metrics.inc("time_rejected_total",
                             direction="future" if " ahead " in exc.detail else "past")
        where = "" if index is None else f" event {index} of the batch"
        log.warning("dead-lettered %s[%d]@%d%s: %s (%s)", origin.topic, origin.partition,
                    origin.offset, where, exc.reason, exc.detail)
        detail = exc.detail if index is None else f"event {index} of a batch record: {exc.detail}"
        await self.outputs.dead_letter(dead_letter_record(
            raw, exc.reason, detail, origin.topic, origin.partition, origin.offset, now))

    def new_generation(self, generation: int) -> None:
        """Called before each record with the consumer generation: a rebalance may have
        replaced table contents (recovery, another worker's writes), so trust nothing cached."""
        if generation != self._generation:
            self._generation = generation
            self.decoded.clear()

    def load(self, kind: SubjectKind, key: str,
             table: MutableMapping[str, bytes]) -> engine.KeyState | None:
        if self.trust_cache:
            state = self.decoded.peek(kind, key)
            if state is not None:
                return state
        return self.decoded.load(kind, key, table.get(key))

    def partition_of(self, key: str) -> int:
        part = self._partition_of.get(key)
        if part is None:
            assert self.partitions is not None
            part = batch_codec.partition_for(key.encode(), self.partitions)
            if len(self._partition_of) >= 65536:  # a bounded memo, not a second state store
                self._partition_of.clear()
            self._partition_of[key] = part
        return part

    async def _ingest_batch(self, items: list[bytes], origin: Origin,
                            users: MutableMapping[str, bytes], now: float) -> None:
        """The events of one batch record: bad ones dead-lettered alone, wrongly partitioned
        ones re-keyed, the rest stepped in order; each key's state written once at the end."""
        self.metrics.inc("event_batches_total")
        by_ip: dict[str, list[bytes]] = {}
        order: list[tuple[str, Event]] = []
        for index, raw in enumerate(items):
            try:
                event = canonical_event(codec.decode_event(raw, now, self.params.time_bounds),
                                        self.params.user_names)
            except codec.Rejected as exc:
                await self._reject(raw, exc, origin, now, index)
                continue
            key = user_key(event)
            if self.partition_of(key) != origin.partition:
                self.metrics.inc("rerouted_total")
                await self.outputs.reroute(key, raw)
                continue
            if self.has_ip_detectors and needs_ip_state(event):
                by_ip.setdefault(event.client_ip, []).append(raw)
            if event.user is None:
                self.metrics.inc("events_total", outcome="no_user")
                continue
            order.append((event.user, enrich(event, self.locator)))
        source = (origin.partition, origin.offset)
        # One by-IP record per IP and batch: its events share the batch's source position, and
        # per-IP state applies them together exactly as per-user state does.
        for ip, raws in by_ip.items():
            value = raws[0] if len(raws) == 1 else batch_codec.encode_batch(raws)
            await self.outputs.by_ip(ip, wrap_source(source, value))
        await self._step_batch("user", order, users, source)

    async def _step_batch(self, kind: SubjectKind, order: list[tuple[str, Event]],
                          table: MutableMapping[str, bytes], source: engine.Source) -> None:
        """Step (key, event) pairs in order; per key the first step carries the record's
        source position (a key that already applied it skips all its events), the others none
        (they are the same record). States are stored once per key, after all outputs."""
        states: dict[str, engine.KeyState | None] = {}
        loaded: dict[str, engine.KeyState | None] = {}
        redelivered: set[str] = set()
        for key, event in order:
            if key in redelivered:
                self.metrics.inc("events_total", outcome="redelivered")
                self.metrics.inc("redeliveries_total", kind=kind)
                continue
            first = key not in states
            if first:
                loaded[key] = states[key] = self.load(kind, key, table)
            state = states[key]
            result = engine.step(self.params, kind, key, state, event,
                                 source if first else None)
            self.metrics.inc("events_total", outcome=result.outcome)
            if result.outcome == "redelivered":
                self.metrics.inc("redeliveries_total", kind=kind)
                redelivered.add(key)
                continue
            if result.outcome != "duplicate":
                await self.emit(result)
            states[key] = result.state
        for key, state in states.items():
            if state is not None and state is not loaded[key]:
                self.store(kind, key, state, table)

    async def ingest_by_ip(
        self, value: bytes, ips: MutableMapping[str, bytes]
    ) -> None:
        """One record from the by-IP repartition (already validated by ingest): one event, or
        the events of one IP from one batch record."""
        source, raw = unwrap_source(value)
        try:
            items = batch_codec.decode_batch(raw)
        except codec.Rejected:
            return  # cannot happen for records we forwarded ourselves
        if items is not None:
            order: list[tuple[str, Event]] = []
            for item in items:
                try:
                    event = canonical_event(codec.decode_event(item), self.params.user_names)
                except codec.Rejected:
                    continue  # as above
                order.append((event.client_ip, event))
            if source is None:  # an older worker's record: no position to dedupe by
                for key, event in order:
                    await self._step("ip", key, event, ips, None)
            else:
                await self._step_batch("ip", order, ips, source)
            return
        try:
            # not time-bounded again: ingest did, at its `now`
            event = canonical_event(codec.decode_event(raw), self.params.user_names)
        except codec.Rejected:
            return  # cannot happen for records we forwarded ourselves
        await self._step("ip", event.client_ip, event, ips, source)

    async def _step(self, kind: SubjectKind, key: str, event: Event,
                    table: MutableMapping[str, bytes],
                    source: engine.Source | None = None) -> None:
        state = self.load(kind, key, table)
        result = engine.step(self.params, kind, key, state, event, source)
        self.metrics.inc("events_total", outcome=result.outcome)
        if result.outcome == "redelivered":
            self.metrics.inc("redeliveries_total", kind=kind)
            return
        if result.outcome == "duplicate":
            if result.state is not state and state is not None:
                self.store(kind, key, result.state, table)  # remembers the position only
            return
        # Outputs first, then the state that records them as done: a crash in between redoes
        # the event (same deterministic command ids), never loses its commands.
        await self.emit(result)
        self.store(kind, key, result.state, table)

    def store(self, kind: SubjectKind, key: str, state: engine.KeyState,
              table: MutableMapping[str, bytes]) -> None:
        stored = self.decoded.dumps(kind, key, state)
        table[key] = stored
        self.decoded.remember(kind, key, stored, state)
        expires = state.lock.expires_at if state.lock.locked else None
        if expires is None:
            self.expiring.pop((kind, key), None)
        else:
            self.expiring[(kind, key)] = expires

    async def emit(self, result: engine.StepResult) -> None:
        for finding in result.findings:
            self.metrics.inc("findings_total", detector=finding.detector)
        for command in result.commands:
            if command.dry_run:
                log.info("dry-run: would %s %s %s (%s)", command.action, command.subject_kind,
                         command.subject, command.reason)
                continue
            self.metrics.inc("lock_commands_total", action=command.action)
            log.warning("%s %s %s v%d: %s", command.action.upper(), command.subject_kind,
                        command.subject, command.version, command.reason)
            await self.outputs.lock_command(command)
            self.metrics.elapsed("event_to_lock_seconds", command.issued_at, action=command.action)
        for alert in result.alerts:
            self.metrics.inc("alerts_total", detector=alert.detector)
            await self.outputs.alert(alert)
