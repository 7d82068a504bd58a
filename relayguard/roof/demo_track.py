"""What the demo measures per injected attack: when its first event left the fleet, when the
worker's lock command was published (Kafka record time), and when each relay acked it (the
relay's applied_at). All clocks are this machine's, so the differences are real latencies."""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field

from relayguard.stream.records import LockAck, LockCommand


@dataclass
class Attack:
    name: str
    user: str
    story: str
    expected_detector: str | None  # None: any detector counts (the --follow attacks)
    first_event: float  # wall clock when the demo published the attack's first event
    lock: LockCommand | None = None
    locked_at: float | None = None  # the lock record's Kafka timestamp
    acks: dict[str, float] = field(default_factory=dict)  # relay -> applied_at

    @property
    def hit(self) -> bool:
        return self.lock is not None and (self.expected_detector is None
                                          or self.lock.detector == self.expected_detector)

    def to_lock(self) -> float | None:
        return None if self.locked_at is None else max(0.0, self.locked_at - self.first_event)

    def to_first_ack(self) -> float | None:
        return None if not self.acks else max(0.0, min(self.acks.values()) - self.first_event)

    def to_last_ack(self) -> float | None:
        return None if not self.acks else max(0.0, max(self.acks.values()) - self.first_event)


@dataclass
class Tracker:
    relays: tuple[str, ...]
    attacks: dict[str, Attack] = field(default_factory=dict)  # user -> attack
    locked: dict[str, str] = field(default_factory=dict)  # every user locked -> detector
    pending_acks: dict[str, list[LockAck]] = field(default_factory=dict)  # command id -> acks
    events: int = 0
    findings: int = 0
    locks: int = 0
    acks: int = 0
    _sent: deque[tuple[float, int]] = field(default_factory=deque)

    def add_attack(self, attack: Attack) -> None:
        self.attacks[attack.user] = attack

    def sent(self, n: int, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        self.events += n
        self._sent.append((now, n))

    def rate(self, now: float | None = None, span: float = 5.0) -> float:
        now = time.monotonic() if now is None else now
        while self._sent and self._sent[0][0] < now - span:
            self._sent.popleft()
        return sum(n for _, n in self._sent) / span

    def on_lock(self, cmd: LockCommand, record_time: float) -> None:
        if cmd.action != "lock" or cmd.subject_kind != "user":
            return
        self.locks += 1
        self.locked.setdefault(cmd.subject, cmd.detector)
        attack = self.attacks.get(cmd.subject)
        if attack is not None and attack.lock is None:
            attack.lock, attack.locked_at = cmd, record_time
            for ack in self.pending_acks.pop(cmd.command_id, []):
                attack.acks.setdefault(ack.relay_id, ack.applied_at)

    def on_ack(self, ack: LockAck) -> None:
        self.acks += 1
        attack = self.attacks.get(ack.subject)
        if attack is not None and attack.lock is not None \
                and attack.lock.command_id == ack.command_id:
            attack.acks.setdefault(ack.relay_id, ack.applied_at)
        else:  # the ack can overtake the lock record on its way to us
            self.pending_acks.setdefault(ack.command_id, []).append(ack)

    def all_acked(self) -> bool:
        return all(a.lock is not None and len(a.acks) >= len(self.relays)
                   for a in self.attacks.values())
