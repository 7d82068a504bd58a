"""How long the fleet takes to enforce a lock command: publication -> first and last relay ack.

Two small agents feed an AckTracker: one reads the lock topic (command id -> when it was
published: the record's Kafka timestamp), one reads the lock-acks topic (relay, command id,
applied_at). Both topics have one partition, and Faust's assignor gives same-sized co-subscribed
topics' partitions to the same worker, so one worker of the group sees a command and its acks.

"Last" needs the fleet: it is taken as the relays that acked anything within RELAY_MEMORY
seconds. A command is complete once each of them has acked it; ack=last is observed then. A
relay that has not acked within ACK_WAIT is counted in lock_acks_missing_total{relay} (what the
"relay not acking locks" alert watches), and that command gets no "last" observation.
Times are the publisher's clock against the relay's: skew shows up in the figures (clamped at 0).
Acks are not signed: a forged ack can only distort these figures, never enforcement.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import faust

from relayguard.agents.metrics import Metrics
from relayguard.foundation.settings import Settings
from relayguard.stream import codec
from relayguard.stream.records import LockAck
from relayguard.stream.signed import Verifier

log = logging.getLogger("relayguard.worker")
ACK_WAIT = 120.0  # seconds a relay has to ack a command before it counts as missing
RELAY_MEMORY = 3600.0  # a relay with no ack for this long is no longer expected to ack
SWEEP_INTERVAL = 5.0
MAX_PENDING = 10_000  # commands being timed at once (oldest dropped beyond it)
MAX_EARLY = 10_000  # acks read before their command (other topic, other fetch)
MAX_RELAYS = 1_000


@dataclass
class _Pending:
    action: str
    published_at: float
    acked: set[str] = field(default_factory=set)
    slowest: float = 0.0


class AckTracker:
    """Pure bookkeeping: callers pass `now`; results go to `metrics`."""

    def __init__(self, metrics: Metrics, *, wait: float = ACK_WAIT,
                 relay_memory: float = RELAY_MEMORY, max_pending: int = MAX_PENDING) -> None:
        self.metrics = metrics
        self.wait = wait
        self.relay_memory = relay_memory
        self.max_pending = max_pending
        self.pending: OrderedDict[str, _Pending] = OrderedDict()
        self.early: OrderedDict[str, list[LockAck]] = OrderedDict()
        self.relays: dict[str, float] = {}  # relay id -> newest applied_at seen

    def command(self, command_id: str, action: str, published_at: float, now: float) -> None:
        """A command read from the lock topic (not dry-run, signature checked)."""
        if now - published_at > self.wait or command_id in self.pending:
            return  # history read on catch-up, or a repeat
        self.pending[command_id] = _Pending(action, published_at)
        while len(self.pending) > self.max_pending:
            self.pending.popitem(last=False)
        for ack in self.early.pop(command_id, []):
            self._apply(command_id, ack, now)

    def ack(self, ack: LockAck, now: float) -> None:
        if ack.relay_id in self.relays or len(self.relays) < MAX_RELAYS:
            self.relays[ack.relay_id] = max(self.relays.get(ack.relay_id, 0.0), ack.applied_at)
        if ack.command_id in self.pending:
            self._apply(ack.command_id, ack, now)
        elif now - ack.applied_at <= self.wait:
            self.early.setdefault(ack.command_id, []).append(ack)
            while len(self.early) > MAX_EARLY:
                self.early.popitem(last=False)

    def fleet(self, now: float) -> set[str]:
        return {r for r, at in self.relays.items() if now - at <= self.relay_memory}

    def sweep(self, now: float) -> None:
        """Close the commands whose ack wait is over; forget old acks and relays."""
        fleet = self.fleet(now)
        for command_id, p in list(self.pending.items()):
            if now - p.published_at <= self.wait:
                continue
            for relay in sorted(fleet - p.acked):
                self.metrics.inc("lock_acks_missing_total", relay=relay)
                log.warning("relay %s did not ack %s command %s within %.0fs", relay, p.action,
                            command_id, self.wait)
            del self.pending[command_id]
        for command_id, acks in list(self.early.items()):
            if all(now - a.applied_at > self.wait for a in acks):
                del self.early[command_id]
        for relay in [r for r in self.relays if r not in fleet]:
            del self.relays[relay]
        self.metrics.set("lock_commands_awaiting_acks", len(self.pending))
        self.metrics.set("relays_seen", len(fleet))

    def _apply(self, command_id: str, ack: LockAck, now: float) -> None:
        p = self.pending[command_id]
        if ack.relay_id in p.acked:
            return
        took = max(0.0, ack.applied_at - p.published_at)
        if not p.acked:
            self.metrics.observe("lock_to_ack_seconds", took, action=p.action, ack="first")
        p.acked.add(ack.relay_id)
        p.slowest = max(p.slowest, took)
        if self.fleet(now) <= p.acked:
            self.metrics.observe("lock_to_ack_seconds", p.slowest, action=p.action, ack="last")
            del self.pending[command_id]


def register(app: faust.App, settings: Settings, locks: Any, keyring: Verifier,
             metrics: Metrics) -> AckTracker:
    """Add the two timing agents and the sweep timer to `app`; `locks` is the lock topic."""
    tracker = AckTracker(metrics)
    acks = app.topic(settings.topics.lock_acks, key_type=bytes, value_type=bytes,
                     key_serializer="raw", value_serializer="raw")
    skew = settings.signing_max_skew_seconds

    @app.agent(locks, concurrency=1)
    async def time_lock_commands(stream: Any) -> None:
        async for ev in stream.events():
            if ev.value is None:
                continue
            try:
                cmd = codec.decode_signed_lock_command(ev.value, keyring, time.time(), skew)
            except codec.Rejected:
                continue  # refused and counted by the follow_locks agent
            if cmd.dry_run:
                continue  # relays do not apply (nor ack) dry-run commands
            stamp = ev.message.timestamp
            published = stamp if isinstance(stamp, int | float) and stamp > 0 else cmd.issued_at
            tracker.command(cmd.command_id, cmd.action, float(published), time.time())

    @app.agent(acks, concurrency=1)
    async def time_lock_acks(stream: Any) -> None:
        async for ev in stream.events():
            try:
                ack = codec.lock_ack_from_dict(codec.parse_record(ev.value or b"",
                                                                  ("lock_ack",)))
            except (codec.Rejected, KeyError, TypeError, ValueError) as exc:
                metrics.inc("lock_acks_total", outcome="unreadable")
                log.debug("unreadable lock ack skipped: %s", exc)
                continue
            metrics.inc("lock_acks_total", outcome="read")
            tracker.ack(ack, time.time())

    @app.timer(interval=SWEEP_INTERVAL)  # type: ignore[untyped-decorator]
    async def sweep_lock_acks() -> None:
        tracker.sweep(time.time())

    return tracker
