"""Shared by the worker fault tests: a workload of users exactly at and just over a volume
limit, and the checks that every effect happened exactly once, read back from Kafka itself
(the worker's `user-state` changelog and the locks topic), never from the worker's word."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import time
import uuid
from dataclasses import dataclass, field

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.partitioner import murmur2

from relayguard.agents import state_codec
from relayguard.agents.kafka_ranges import KafkaRangeReader
from relayguard.stream import codec, engine
from relayguard.stream.records import SendEvent

LIMIT = 20  # messages per hour in the workload's volume config; the other limits are off
VOLUME_LIMITS = {"messages_1m": "unlimited", "messages_1h": LIMIT, "messages_24h": "unlimited",
                 "recipients_1m": "unlimited", "recipients_1h": "unlimited",
                 "recipients_24h": "unlimited"}
WORKER_ENV = {
    "RELAYGUARD_DETECTORS": json.dumps({"volume": {"limits": VOLUME_LIMITS}}),
    # Short group timeouts so a killed worker's partitions move in seconds (broker min: 6 s).
    "RELAYGUARD_SESSION_TIMEOUT_SECONDS": "6",
    "RELAYGUARD_HEARTBEAT_INTERVAL_SECONDS": "1",
}
MESSAGES_1H = 1  # index of messages_1h in the volume detector's limits (and its state)


def partition_of(key: str, partitions: int) -> int:
    """Where Kafka's default partitioner puts `key` (murmur2, as the Java client)."""
    return (int(murmur2(key.encode())) & 0x7FFFFFFF) % partitions


@dataclass
class Workload:
    """`over` users send LIMIT + 1 messages (each must be locked once); `at` users send LIMIT
    (never locked). Events are interleaved across users, stamped in the last minute."""

    users: int
    tag: str = field(default_factory=lambda: uuid.uuid4().hex[:6])
    sent: dict[str, list[str]] = field(default_factory=dict)  # user -> event ids, as sent

    def __post_init__(self) -> None:
        self.over = [f"over-{self.tag}-{i}" for i in range(self.users)]
        self.at = [f"at-{self.tag}-{i}" for i in range(self.users)]
        base = time.time() - 60
        per_user = {u: LIMIT + 1 for u in self.over} | {u: LIMIT for u in self.at}
        self.records: list[tuple[bytes, bytes]] = []
        for j in range(LIMIT + 1):
            for u, n in per_user.items():
                if j < n:
                    e = SendEvent(str(uuid.uuid4()), base + j * 2, "relay-faults", u,
                                  "192.0.2.9", u, 1, 1000)
                    self.sent.setdefault(u, []).append(e.event_id)
                    self.records.append((u.encode(), codec.encode_event(e)))

    def chunks(self, n: int) -> list[list[tuple[bytes, bytes]]]:
        size = -(-len(self.records) // n)
        return [self.records[i:i + size] for i in range(0, len(self.records), size)]


async def read_latest(bootstrap: str, topic: str) -> dict[bytes, bytes]:
    """The latest value per key of a topic, read up to its end offsets at the time of call."""
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=None,
                                enable_auto_commit=False, auto_offset_reset="earliest")
    await consumer.start()
    try:
        latest: dict[bytes, bytes] = {}
        deadline = time.monotonic() + 30
        ends: dict[TopicPartition, int] | None = None
        while time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=300)
            if ends is None and consumer.assignment():
                ends = await consumer.end_offsets(list(consumer.assignment()))
            for recs in batch.values():
                for r in recs:
                    if r.key is not None and r.value is not None:
                        key = r.key
                        if key.startswith(b'"'):  # a JSON-encoded str key
                            key = str(json.loads(key)).encode()
                        latest[key] = r.value
            if ends is not None:
                positions = [await consumer.position(tp) for tp in ends]
                if all(p >= end for p, end in zip(positions, ends.values(), strict=True)):
                    return latest
        return latest
    finally:
        await consumer.stop()


def _digest(event_id: str) -> bytes:
    return hashlib.blake2b(event_id.encode(), digest_size=8).digest()


def audit(states: dict[bytes, bytes], w: Workload) -> list[str]:
    """Every way the per-user state differs from what was sent (empty = exact)."""
    problems = []
    for user, ids in w.sent.items():
        raw = states.get(user.encode())
        if raw is None:
            problems.append(f"{user}: no state")
            continue
        s: engine.KeyState = state_codec.loads(raw)
        held = {s.recent_event_ids[i:i + 8] for i in range(0, len(s.recent_event_ids), 8)}
        volume = dict(s.detectors).get("volume")
        counted = sum(n for _, n in volume.counts[MESSAGES_1H]) if volume else 0
        if s.events_applied != len(ids) or counted != len(ids):
            problems.append(f"{user}: sent {len(ids)}, applied {s.events_applied}, "
                            f"counted {counted}")
        missing = [i for i in ids if _digest(i) not in held]
        if missing:
            problems.append(f"{user}: {len(missing)} sent event ids never applied")
    return problems


async def wait_exact(bootstrap: str, changelog: str, w: Workload, timeout: float,
                     stall: float = 60.0) -> list[str]:
    """Poll the changelog until the state is exact; the last problems if it is not. Gives up
    after `timeout` seconds, or earlier once the state has not moved for `stall` seconds (a
    loaded machine recovers slowly: still moving is not a failure, standing still is)."""
    start = time.monotonic()
    problems = ["not read yet"]
    last: dict[bytes, bytes] = {}
    moved = start
    while time.monotonic() - start < timeout and time.monotonic() - moved < stall:
        states = await read_latest(bootstrap, changelog)
        problems = audit(states, w)
        if not problems:
            return []
        if states != last:
            last, moved = states, time.monotonic()
    return problems


async def group_progress(bootstrap: str, group: str, topic: str, partitions: int) -> str:
    """Per partition: the group's committed offset against the end of the log. All committed
    with state short = events lost; not all committed = the worker is behind or stuck."""
    reader = KafkaRangeReader(bootstrap, group)
    parts = []
    try:
        for p in range(partitions):
            committed = await reader.start_offset(topic, p)
            end = await reader.end_offset(topic, p)
            parts.append(f"{p}: committed {committed} of {end}")
    except Exception as exc:  # a diagnosis must never hide the failure it explains
        parts.append(f"could not read further: {exc!r}")
    finally:
        await reader.stop()
    return f"{topic} for group {group}: " + ", ".join(parts)


async def lock_audit(bootstrap: str, locks_topic: str, w: Workload) -> list[str]:
    consumer = AIOKafkaConsumer(locks_topic, bootstrap_servers=bootstrap, group_id=None,
                                enable_auto_commit=False, auto_offset_reset="earliest")
    await consumer.start()
    ids: dict[str, set[str]] = {}
    try:
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:  # read what is there (the worker wrote it earlier)
            for recs in (await consumer.getmany(timeout_ms=500)).values():
                for r in recs:
                    c = codec.decode_lock_command(r.value)
                    if c.action == "lock":
                        ids.setdefault(c.subject, set()).add(c.command_id)
    finally:
        await consumer.stop()
    problems = [f"{u}: over the limit, locked {len(ids.get(u, ()))} times" for u in w.over
                if len(ids.get(u, ())) != 1]
    problems += [f"{u}: at the limit, locked" for u in w.at if u in ids]
    return problems


def kill(pid: int) -> None:
    """SIGKILL a process group started with start_new_session (worker or broker)."""
    os.killpg(pid, signal.SIGKILL)


def metric(text: str | None, name: str) -> int:
    """Sum of a counter over its label sets in a /metrics page."""
    total = 0
    for line in (text or "").splitlines():
        if line.startswith(f"relayguard_worker_{name}"):
            total += int(float(line.rsplit(" ", 1)[1]))
    return total
