"""Keep the worker's idea of a subject's lock in step with commands others issued.

An operator's `relayguard unlock` (or another worker's command) reaches the worker through the
lock topic; without this, a subject the worker once locked for good would look locked forever and
never be locked again after an operator lifted it.
"""

from __future__ import annotations

from dataclasses import replace

from relayguard.stream.policy import SCOPE_ALL, LockState, command_scope
from relayguard.stream.records import LockCommand


def apply_command(state: LockState, command: LockCommand) -> LockState:
    """The state after `command`, if it is newer than what the state already reflects."""
    if command.dry_run or command.version <= state.version:
        return state
    if command.action == "unlock":
        return replace(state, locked=False, remedy=None, expires_at=None,
                       version=command.version, command_id=command.command_id, scope=SCOPE_ALL)
    return replace(
        state,
        locked=True,
        remedy="lock" if command.expires_at is None else "throttle",
        expires_at=command.expires_at,
        version=command.version,
        command_id=command.command_id,
        scope=command_scope(command),
    )
