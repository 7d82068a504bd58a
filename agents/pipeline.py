"""What the agents do with one record, written against plain interfaces so it can be tested
without Faust: decode -> (DLQ | re-key | enrich -> core step -> table -> outputs)."""

from __future__ import annotations

import logging
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
        try:
            event = codec.decode_event(raw)
        except codec.Rejected as exc:
            self.metrics.inc("dead_letters_total", reason=exc.reason)
            log.warning("dead-lettered %s[%d]@%d: %s (%s)", origin.topic, origin.partition,
                        origin.offset, exc.reason, exc.detail)
            await self.outputs.dead_letter(dead_letter_record(
                raw, exc.reason, exc.detail, origin.topic, origin.partition, origin.offset,
                time.time()))
            return
        key = user_key(event)
        if origin.key != key.encode():
            # State is co-partitioned with the key; a wrongly keyed record would split it.
            self.metrics.inc("rerouted_total")
            await self.outputs.reroute(key, raw)
            return
        if self.has_ip_detectors and needs_ip_state(event):
            await self.outputs.by_ip(event.client_ip, raw)
        if event.user is None:
            self.metrics.inc("events_total", outcome="no_user")
            return
        await self._step("user", event.user, enrich(event, self.locator), users)

    async def ingest_by_ip(
        self, raw: bytes, ips: MutableMapping[str, bytes]
    ) -> None:
        """One record from the by-IP repartition (already validated by ingest)."""
        try:
            event = codec.decode_event(raw)
        except codec.Rejected:
            return  # cannot happen for records we forwarded ourselves
        await self._step("ip", event.client_ip, event, ips)

    async def _step(self, kind: SubjectKind, key: str, event: Event,
                    table: MutableMapping[str, bytes]) -> None:
        state = self.decoded.load(kind, key, table.get(key))
        result = engine.step(self.params, kind, key, state, event)
        self.metrics.inc("events_total", outcome=result.outcome)
        if result.outcome == "duplicate":
            return
        self.store(kind, key, result.state, table)
        await self.emit(result)

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
