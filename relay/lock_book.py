"""The relay's in-RAM view of the compacted locks topic. Pure: no I/O, no clock reads.

A command is applied only if its version is higher than the last one applied for the same
subject (key `kind:subject`, the subject in canonical form: stream/user_names.py, so a lock on
`alice` holds `ALICE` too and the newest command for any spelling wins), so replays, duplicates
and out-of-order delivery are harmless.
Locks with `expires_at` lapse locally at that time even if no unlock ever arrives.

The policy service looks up every request's user and client IP: canonical keys are cached per
kind (at most KEY_CACHE_ENTRIES subjects of at most KEY_CACHE_MAX_CHARS each, cleared when full,
so hostile spellings cost at most a few MiB and then only the old per-lookup cost).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol

from relayguard.stream.records import LockCommand
from relayguard.stream.user_names import DEFAULT_USER_NAMES, UserNameMode, canonical_subject


class LockView(Protocol):
    """What the policy decision needs from the lock book."""

    def active_lock(self, kind: str, subject: str, now: float) -> LockCommand | None: ...


def subject_key(kind: str, subject: str, user_names: UserNameMode = DEFAULT_USER_NAMES) -> str:
    """`kind:subject` in canonical form: user names by the RELAYGUARD_USER_NAMES rule, IPs
    compressed so `2001:DB8::1` and `2001:db8:0::1` match."""
    return f"{kind}:{canonical_subject(kind, subject, user_names)}"


KEY_CACHE_ENTRIES = 4096
KEY_CACHE_MAX_CHARS = 320  # the longest user name an event may carry


class LockBook:
    def __init__(self, user_names: UserNameMode = DEFAULT_USER_NAMES) -> None:
        self.user_names = user_names
        self._latest: dict[str, LockCommand] = {}
        # subject as asked -> subject_key(), per kind; canonicalising (NFC, a regex, lower(),
        # ipaddress) costs several microseconds and Postfix asks about the same few again
        self._keys: dict[str, dict[str, str]] = {"user": {}, "ip": {}}

    def key(self, kind: str, subject: str) -> str:
        cache = self._keys.get(kind)
        if cache is None:
            return subject_key(kind, subject, self.user_names)
        key = cache.get(subject)
        if key is None:
            key = subject_key(kind, subject, self.user_names)
            if len(subject) <= KEY_CACHE_MAX_CHARS:
                if len(cache) >= KEY_CACHE_ENTRIES:
                    cache.clear()  # simplest bound; a flood of new names just misses
                cache[subject] = key
        return key

    def apply(self, command: LockCommand) -> bool:
        """Apply a lock/unlock command; True if it changed what this relay enforces (or would:
        an older-version or dry-run command returns False and changes nothing)."""
        if command.dry_run:
            return False
        key = self.key(command.subject_kind, command.subject)
        current = self._latest.get(key)
        if current is not None and command.version <= current.version:
            return False
        self._latest[key] = command
        return True

    def version(self, kind: str, subject: str) -> int | None:
        cmd = self._latest.get(self.key(kind, subject))
        return None if cmd is None else cmd.version

    def active_lock(self, kind: str, subject: str, now: float) -> LockCommand | None:
        """The lock command in force for this subject at `now`, or None."""
        # the key cache read in line (twice a policy request), `key` only on a miss
        cache = self._keys.get(kind)
        key = None if cache is None else cache.get(subject)
        cmd = self._latest.get(self.key(kind, subject) if key is None else key)
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

    def commands(self) -> Iterator[tuple[str, LockCommand]]:
        """(key, latest command) for every subject known, locks and unlocks."""
        yield from self._latest.items()

    def __len__(self) -> int:
        return len(self._latest)
