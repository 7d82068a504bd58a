"""The relay's in-RAM view of the compacted locks topic. Pure: no I/O, no clock reads.

A command is applied only if its version is higher than the last one applied for the same
subject (key `kind:subject`), so replays, duplicates and out-of-order delivery are harmless.
Locks with `expires_at` lapse locally at that time even if no unlock ever arrives.
"""

from __future__ import annotations

import contextlib
import ipaddress
from collections.abc import Iterator
from typing import Protocol

from relayguard.stream.records import LockCommand


class LockView(Protocol):
    """What the policy decision needs from the lock book."""

    def active_lock(self, kind: str, subject: str, now: float) -> LockCommand | None: ...


def subject_key(kind: str, subject: str) -> str:
    """`kind:subject`, with IPs in canonical form so `2001:DB8::1` and `2001:db8:0::1` match."""
    if kind == "ip":
        with contextlib.suppress(ValueError):  # not an IP: match it as written
            subject = ipaddress.ip_address(subject.strip("[]")).compressed
    return f"{kind}:{subject}"


class LockBook:
    def __init__(self) -> None:
        self._latest: dict[str, LockCommand] = {}

    def apply(self, command: LockCommand) -> bool:
        """Apply a lock/unlock command; True if it changed what this relay enforces (or would:
        an older-version or dry-run command returns False and changes nothing)."""
        if command.dry_run:
            return False
        key = subject_key(command.subject_kind, command.subject)
        current = self._latest.get(key)
        if current is not None and command.version <= current.version:
            return False
        self._latest[key] = command
        return True

    def version(self, kind: str, subject: str) -> int | None:
        cmd = self._latest.get(subject_key(kind, subject))
        return None if cmd is None else cmd.version

    def active_lock(self, kind: str, subject: str, now: float) -> LockCommand | None:
        """The lock command in force for this subject at `now`, or None."""
        cmd = self._latest.get(subject_key(kind, subject))
        if cmd is None or cmd.action != "lock":
            return None
        if cmd.expires_at is not None and now >= cmd.expires_at:
            return None
        return cmd

    def is_locked(self, kind: str, subject: str, now: float) -> bool:
        return self.active_lock(kind, subject, now) is not None

    def active(self, now: float) -> Iterator[LockCommand]:
        """Every lock in force at `now`."""
        for cmd in self._latest.values():
            if cmd.action == "lock" and (cmd.expires_at is None or now < cmd.expires_at):
                yield cmd

    def __len__(self) -> int:
        return len(self._latest)
