"""Operator commands on the lock topic: lock, unlock, and list what is locked now."""

from __future__ import annotations

import asyncio
import getpass
import socket
import time
from typing import Any

import click

from relayguard.foundation import lock_admin
from relayguard.foundation.cli_errors import friendly_errors
from relayguard.foundation.settings import load_settings
from relayguard.stream.records import LockAction, LockCommand, SubjectKind
from relayguard.stream.timefmt import to_rfc3339


def _issuer() -> str:
    return f"cli:{getpass.getuser()}@{socket.gethostname()}"


async def _operator_command(action: LockAction, subject: str, kind: SubjectKind, reason: str,
                            ttl: float | None) -> LockCommand:
    return await lock_admin.issue(load_settings(), action, subject, kind, reason, ttl, _issuer())


def _subject_options(fn: Any) -> Any:
    fn = click.option("--ip", "is_ip", is_flag=True, help="SUBJECT is a client IP, not a user")(fn)
    fn = click.option("--reason", required=True, help="why; kept in the audit trail")(fn)
    return click.argument("subject")(fn)


@click.command(help="Lock a user (or, with --ip, a client IP) on every relay now.")
@_subject_options
@click.option("--ttl", type=float, default=None, help="seconds until it expires (default: never)")
@friendly_errors
def lock(subject: str, is_ip: bool, reason: str, ttl: float | None) -> None:
    cmd = asyncio.run(_operator_command("lock", subject, "ip" if is_ip else "user", reason, ttl))
    click.echo(f"locked {cmd.subject_kind} {cmd.subject} (command {cmd.command_id}, "
               f"version {cmd.version})")


@click.command(help="Unlock a user (or, with --ip, a client IP) on every relay.")
@_subject_options
@friendly_errors
def unlock(subject: str, is_ip: bool, reason: str) -> None:
    cmd = asyncio.run(_operator_command("unlock", subject, "ip" if is_ip else "user", reason, None))
    click.echo(f"unlocked {cmd.subject_kind} {cmd.subject} (command {cmd.command_id}, "
               f"version {cmd.version})")


@click.command(help="List what is locked now, from the compacted lock topic (only records signed "
               "by a key in RELAYGUARD_VERIFY_KEYS / _DIR; others are counted, never shown).")
@friendly_errors
def locks() -> None:
    now = time.time()
    listing = asyncio.run(lock_admin.read_commands(load_settings(), now=now))
    shown = 0
    for c in listing.commands.values():
        if not lock_admin.is_active(c, now):
            continue
        until = "until unlocked" if c.expires_at is None else f"until {to_rfc3339(c.expires_at)}"
        click.echo(f"{c.subject_kind:4} {c.subject:30} {until:35} {c.detector:18} {c.reason}")
        shown += 1
    click.echo(f"{shown} active lock(s)")
    if listing.refused:
        why = ", ".join(f"{reason} {n}" for reason, n in sorted(listing.refused.items()))
        click.echo(f"{sum(listing.refused.values())} record(s) refused as untrusted and not "
                   f"shown ({why})", err=True)
