"""What the agents do with one record, written against plain interfaces so it can be tested
without Faust: decode -> (DLQ | re-key | enrich -> core step -> table -> outputs)."""

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
from relayguard.stream import codec, engine
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
    ) -> None:
        self.params = params
        self.locator = locator
        self.outputs = outputs
        self.metrics = metrics
        self.has_ip_detectors = bool(params.for_kind("ip"))
        # (kind, key) -> expiry of the throttles this worker knows, so the expiry timer need
        # not unpickle every state; filled as states are stored (and by one scan at start).
        self.expiring: dict[tuple[SubjectKind, str], float] = {}
        self.decoded = state_codec.DecodedCache()

    async def ingest(
        self, raw: bytes, origin: Origin, users: MutableMapping[str, bytes]
    ) -> None:
        """One record from the events topic. Never raises on bad input."""
        now = time.time()  # the shell owns the clock; the codec and core get `now` passed in
        try:
            event = canonical_event(codec.decode_event(raw, now, self.params.time_bounds),
                                    self.params.user_names)
        except codec.Rejected as exc:
            self.metrics.inc("dead_letters_total", reason=exc.reason)
            if exc.reason == "time_out_of_range":
                self.metrics.inc("time_rejected_total",
                                 direction="future" if " ahead " in exc.detail else "past")
            log.warning("dead-lettered %s[%d]@%d: %s (%s)", origin.topic, origin.partition,
                        origin.offset, exc.reason, exc.detail)
            await self.outputs.dead_letter(dead_letter_record(
                raw, exc.reason, exc.detail, origin.topic, origin.partition, origin.offset,
                now))
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

    async def ingest_by_ip(
        self, value: bytes, ips: MutableMapping[str, bytes]
    ) -> None:
        """One record from the by-IP repartition (already validated by ingest)."""
        source, raw = unwrap_source(value)
        try:
            # not time-bounded again: ingest did, at its `now`
            event = canonical_event(codec.decode_event(raw), self.params.user_names)
        except codec.Rejected:
            return  # cannot happen for records we forwarded ourselves
        await self._step("ip", event.client_ip, event, ips, source)

    async def _step(self, kind: SubjectKind, key: str, event: Event,
                    table: MutableMapping[str, bytes],
                    source: engine.Source | None = None) -> None:
        state = self.decoded.load(kind, key, table.get(key))
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
