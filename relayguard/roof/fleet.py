"""The fleet's enforcement, from what relays publish: acks on lock-acks, events on the events
topic. Reads are bounded (a time window and a maximum of records per partition): a fleet view
answers "is every relay following the lock topic now", not "everything since the beginning".

Acks are matched to the subject's current command (the compacted lock topic's latest verified
record): a relay acked it when it acked that command id or a newer version of the subject.
Every relay acks every command it applies, including the replay of the whole topic at start,
so a relay that follows the topic acks everything current; one that stopped falls behind."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from relayguard.foundation import lock_admin, topic_tail
from relayguard.foundation.errors import DownstreamError
from relayguard.foundation.kafka_clients import aiokafka_options
from relayguard.foundation.settings import Settings
from relayguard.stream import batch_codec, codec
from relayguard.stream.records import LockAck, LockCommand
from relayguard.stream.timefmt import to_rfc3339

DEFAULT_WINDOW = "24h"
DEFAULT_MAX_RECORDS = 50_000  # per partition, for acks and for events
DEFAULT_GRACE = 5.0  # seconds a relay may take to apply and ack a command before it is "behind"


@dataclass
class RelayInfo:
    relay_id: str
    last_event: float | None = None
    last_ack: float | None = None
    acked: dict[tuple[str, str], int] = field(default_factory=dict)  # subject -> newest version
    acked_ids: set[str] = field(default_factory=set)


@dataclass
class Fleet:
    now: float
    since: float
    commands: dict[tuple[str, str], LockCommand]
    refused: Counter[str]
    acks: list[LockAck]
    relays: dict[str, RelayInfo]
    invalid: Counter[str]
    truncated: list[str]  # topics whose window was cut by the record limit
    notes: list[str] = field(default_factory=list)
    grace: float = DEFAULT_GRACE

    def acks_for(self, c: LockCommand) -> list[LockAck]:
        """Acks of this command, one per relay (the first)."""
        first: dict[str, LockAck] = {}
        for a in self.acks:
            if a.command_id == c.command_id and a.relay_id not in first:
                first[a.relay_id] = a
        return sorted(first.values(), key=lambda a: a.applied_at)

    def has_acked(self, relay: RelayInfo, c: LockCommand) -> bool:
        key = (c.subject_kind, c.subject)
        return c.command_id in relay.acked_ids or relay.acked.get(key, -1) >= c.version

    def expected(self) -> list[LockCommand]:
        """Current commands every following relay should have acked: not dry runs, issued
        inside the window (older acks may be outside what was read) and more than `grace`
        seconds ago (younger ones may still be on their way)."""
        return [c for c in self.commands.values() if not c.dry_run and c.issued_at >= self.since
                and c.issued_at <= self.now - self.grace]

    def unacked(self, relay: RelayInfo) -> list[LockCommand]:
        return sorted((c for c in self.expected() if not self.has_acked(relay, c)),
                      key=lambda c: c.issued_at)


async def read_fleet(settings: Settings, since: float, max_records: int, now: float,
                     with_events: bool, grace: float = DEFAULT_GRACE) -> Fleet:
    opts = aiokafka_options(settings.kafka)
    listing = await lock_admin.read_commands(settings, now=now)
    acks_tail = await topic_tail.read_tail(settings.bootstrap_servers, settings.topics.lock_acks,
                                           since, max_records, opts)
    fleet = Fleet(now, since, listing.commands, listing.refused, [], {}, Counter(), [],
                  grace=grace)
    if acks_tail.truncated:
        fleet.truncated.append(settings.topics.lock_acks)
    for rec in acks_tail.records:
        try:
            ack = codec.lock_ack_from_dict(codec.parse_record(rec.value or b"", ("lock_ack",)))
        except (codec.Rejected, KeyError, TypeError, ValueError, OverflowError):
            fleet.invalid["lock-acks"] += 1
            continue
        fleet.acks.append(ack)
        info = fleet.relays.setdefault(ack.relay_id, RelayInfo(ack.relay_id))
        info.last_ack = max(info.last_ack or 0.0, ack.applied_at)
        info.acked_ids.add(ack.command_id)
        k = (ack.subject_kind, ack.subject)
        info.acked[k] = max(info.acked.get(k, -1), ack.version)
    if with_events:
        try:
            ev_tail = await topic_tail.read_tail(settings.bootstrap_servers,
                                                 settings.topics.events, since, max_records, opts)
        except DownstreamError as exc:
            if "refused this credential" not in str(exc):
                raise
            # The operator ACL layout does not grant the events topic: acks only, and say so.
            fleet.notes.append(f"{settings.topics.events} not readable with this credential: "
                               "last events not shown")
            return fleet
        if ev_tail.truncated:
            fleet.truncated.append(settings.topics.events)
        for rec in ev_tail.records:
            _note_events(fleet, rec.value or b"")
    return fleet


def _note_events(fleet: Fleet, raw: bytes) -> None:
    """One events-topic record: a single event or a batch record (relays with batch records
    on, the default); each bad item, or a bad batch envelope, counts once as invalid."""
    try:
        items = batch_codec.items_of(raw)
    except codec.Rejected:
        fleet.invalid["events"] += 1
        return
    for item in items:
        try:
            ev = codec.decode_event(item)
        except codec.Rejected:
            fleet.invalid["events"] += 1
            continue
        info = fleet.relays.setdefault(ev.relay_id, RelayInfo(ev.relay_id))
        info.last_event = max(info.last_event or 0.0, ev.event_time)


def lock_entry(fleet: Fleet, c: LockCommand) -> dict[str, Any]:
    acks = fleet.acks_for(c)
    slowest = max((a.applied_at - c.issued_at for a in acks), default=None)
    return {**codec.lock_command_to_dict(c), "acked_by": [a.relay_id for a in acks],
            "acks": len(acks), "slowest_ack_seconds": slowest}


def relay_entry(fleet: Fleet, r: RelayInfo) -> dict[str, Any]:
    missing = fleet.unacked(r)
    return {
        "relay_id": r.relay_id,
        "last_event": None if r.last_event is None else to_rfc3339(r.last_event),
        "last_ack": None if r.last_ack is None else to_rfc3339(r.last_ack),
        "unacked_commands": len(missing),
        "unacked_command_ids": [c.command_id for c in missing[:20]],
        "behind_seconds": None if not missing else round(fleet.now - missing[0].issued_at, 3),
        "newest_unacked_age_seconds": (None if not missing
                                       else round(fleet.now - missing[-1].issued_at, 3)),
        "following": not missing,
    }
