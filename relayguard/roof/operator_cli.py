"""Operator commands: lock, unlock, what is locked now and which relays enforce it, the relays
seen, and the audit trail. Read commands take --json (one JSON document on stdout).

Input is checked before any Kafka I/O (roof/cli_input.py); errors reach the `relayguard` group
(roof/cli.py), which prints them as one line and exits non-zero."""

from __future__ import annotations

import asyncio
import getpass
import socket
import time
from collections.abc import Callable
from typing import Any

import click
import orjson

from relayguard.foundation import audit, lock_admin
from relayguard.foundation.settings import load_settings
from relayguard.roof import cli_input, fleet
from relayguard.roof.kind_errors import kind_errors
from relayguard.stream.records import LockAction, LockCommand
from relayguard.stream.timefmt import to_rfc3339

BOUNDS_HELP = (" Reads are bounded: records of the last --since (default "
               f"{fleet.DEFAULT_WINDOW}) and at most --max-records per partition (default "
               f"{fleet.DEFAULT_MAX_RECORDS}); the output says when the limit cut records off.")


def _issuer() -> str:
    return f"cli:{getpass.getuser()}@{socket.gethostname()}"


def _emit_json(doc: Any) -> None:
    click.echo(orjson.dumps(doc, option=orjson.OPT_INDENT_2).decode())


def _operator_command(action: LockAction, subject: str, is_ip: bool, reason: str,
                      ttl: float | None) -> LockCommand:
    name, kind = cli_input.subject(subject, is_ip)
    if not reason.strip():
        raise cli_input.BadInput("--reason is empty", "say why; it goes into the audit trail")
    settings = load_settings()
    return asyncio.run(lock_admin.issue(settings, action, name, kind, reason, ttl, _issuer()))


def _subject_options(fn: Any) -> Any:
    fn = click.option("--ip", "is_ip", is_flag=True, help="SUBJECT is a client IP, not a user")(fn)
    fn = click.option("--reason", required=True, help="why; kept in the audit trail")(fn)
    return click.argument("subject")(fn)


def _window_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    fn = click.option("--json", "as_json", is_flag=True, help="one JSON document on stdout")(fn)
    fn = click.option("--max-records", type=click.IntRange(1, 10_000_000),
                      default=fleet.DEFAULT_MAX_RECORDS, show_default=True,
                      help="read at most this many of the newest records per partition")(fn)
    return click.option("--since", default=fleet.DEFAULT_WINDOW, show_default=True,
                        help="window to read: 90s, 30m, 2h, 7d or an RFC 3339 time")(fn)


@click.command(help="Lock a user (or, with --ip, a client IP) on every relay now. Recorded in "
               "the audit trail.")
@_subject_options
@click.option("--ttl", type=click.FloatRange(min=0, min_open=True), default=None,
              help="seconds until it expires (default: never)")
@kind_errors
def lock(subject: str, is_ip: bool, reason: str, ttl: float | None) -> None:
    cmd = _operator_command("lock", subject, is_ip, reason, ttl)
    click.echo(f"locked {cmd.subject_kind} {cmd.subject} (command {cmd.command_id}, "
               f"version {cmd.version})")


@click.command(help="Unlock a user (or, with --ip, a client IP) on every relay. Recorded in "
               "the audit trail.")
@_subject_options
@kind_errors
def unlock(subject: str, is_ip: bool, reason: str) -> None:
    cmd = _operator_command("unlock", subject, is_ip, reason, None)
    click.echo(f"unlocked {cmd.subject_kind} {cmd.subject} (command {cmd.command_id}, "
               f"version {cmd.version})")


def _refused_note(refused: Any) -> None:
    if refused:
        why = ", ".join(f"{reason} {n}" for reason, n in sorted(refused.items()))
        click.echo(f"{sum(refused.values())} record(s) refused as untrusted and not "
                   f"shown ({why})", err=True)


def _truncated_note(f: fleet.Fleet) -> None:
    for note in f.notes:
        click.echo(f"note: {note}", err=True)
    for topic in f.truncated:
        click.echo(f"note: {topic} has more records in the window than --max-records; only "
                   "the newest were read", err=True)


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    return f"{seconds:.1f}s" if seconds < 120 else f"{seconds / 60:.0f}m"


@click.command(help="List what is locked now, from the compacted lock topic (only records signed "
               "by a key in RELAYGUARD_VERIFY_KEYS / _DIR; others are counted, never shown), "
               "with how many relays acked each lock (lock-acks) and the slowest ack."
               + BOUNDS_HELP)
@_window_options
@kind_errors
def locks(since: str, max_records: int, as_json: bool) -> None:
    now = time.time()
    start = cli_input.since(since, now)
    assert start is not None
    f = asyncio.run(fleet.read_fleet(load_settings(), start, max_records, now, False))
    active = [c for c in f.commands.values() if lock_admin.is_active(c, now)]
    entries = [fleet.lock_entry(f, c) for c in active]
    if as_json:
        _emit_json({"count": len(entries), "locks": entries, "refused": dict(f.refused),
                    "relays_seen": sorted(f.relays), "window_start": to_rfc3339(start),
                    "truncated": f.truncated})
        return
    for c, e in zip(active, entries, strict=True):
        until = "until unlocked" if c.expires_at is None else f"until {to_rfc3339(c.expires_at)}"
        acks = f"acks {e['acks']}/{len(f.relays)} slowest {_age(e['slowest_ack_seconds'])}"
        click.echo(f"{c.subject_kind:4} {c.subject:30} {until:35} {c.detector:18} {acks:22} "
                   f"{c.reason}")
    click.echo(f"{len(active)} active lock(s); {len(f.relays)} relay(s) acked commands since "
               f"{to_rfc3339(start)}")
    _refused_note(f.refused)
    _truncated_note(f)


@click.command(help="List the relays seen (newest events on the events topic, acks on "
               "lock-acks) with their last event, last ack and lag: how many current lock "
               "commands issued in the window they have not acked and since when. A relay that "
               "stopped following the lock topic shows as BEHIND." + BOUNDS_HELP)
@_window_options
@click.option("--grace", type=click.FloatRange(min=0), default=fleet.DEFAULT_GRACE,
              show_default=True, help="seconds a relay may take to ack a new command before "
              "it counts as behind")
@kind_errors
def relays(since: str, max_records: int, as_json: bool, grace: float) -> None:
    now = time.time()
    start = cli_input.since(since, now)
    assert start is not None
    f = asyncio.run(fleet.read_fleet(load_settings(), start, max_records, now, True, grace))
    entries = [fleet.relay_entry(f, r) for r in sorted(f.relays.values(),
                                                       key=lambda r: r.relay_id)]
    if as_json:
        _emit_json({"count": len(entries), "relays": entries,
                    "expected_commands": len(f.expected()), "window_start": to_rfc3339(start),
                    "invalid_records": dict(f.invalid), "truncated": f.truncated,
                    "notes": f.notes})
        return
    click.echo(f"{'relay':24} {'last event':26} {'last ack':26} lag")
    for e in entries:
        lag = ("following" if e["following"] else
               f"BEHIND: {e['unacked_commands']} command(s) not acked, oldest "
               f"{_age(e['behind_seconds'])} ago")
        click.echo(f"{e['relay_id']:24} {e['last_event'] or '-':26} {e['last_ack'] or '-':26} "
                   f"{lag}")
    click.echo(f"{len(entries)} relay(s) seen since {to_rfc3339(start)}; "
               f"{len(f.expected())} current command(s) to ack")
    if f.invalid:
        click.echo("invalid records skipped: " + ", ".join(
            f"{t} {n}" for t, n in sorted(f.invalid.items())), err=True)
    _truncated_note(f)


@click.command(help="The audit trail: every lock, unlock, expiry and operator action (who, "
               "why, when, command id, version), from the non-compacted audit topic, oldest "
               "first. Optionally for one SUBJECT (a user, or with --ip a client IP). Bounded: "
               "records since --since (default 7d) and at most --max-records (default 10000).")
@click.argument("subject", required=False)
@click.option("--ip", "is_ip", is_flag=True, help="SUBJECT is a client IP, not a user")
@click.option("--since", default="7d", show_default=True,
              help="90s, 30m, 2h, 7d or an RFC 3339 time")
@click.option("--max-records", type=click.IntRange(1, 10_000_000), default=10_000,
              show_default=True)
@click.option("--json", "as_json", is_flag=True, help="one JSON document on stdout")
@kind_errors
def audit_cmd(subject: str | None, is_ip: bool, since: str, max_records: int,
              as_json: bool) -> None:
    name, kind = (None, None)
    if subject is not None:
        name, kind = cli_input.subject(subject, is_ip)
    elif is_ip:
        raise cli_input.BadInput("--ip needs a SUBJECT", "give the address: audit --ip 192.0.2.1")
    start = cli_input.since(since)
    trail = asyncio.run(audit.read(load_settings(), start, name, kind, max_records))
    if as_json:
        _emit_json({"count": len(trail.records), "records": trail.records,
                    "invalid_records": sum(trail.invalid.values()),
                    "truncated": trail.truncated})
        return
    for r in trail.records:
        until = "" if r.get("expires_at") is None else f" until {r['expires_at']}"
        dry = " (dry run)" if r.get("dry_run") else ""
        click.echo(f"{r['recorded_at']} {r['event']:6} {r['subject_kind']}:{r['subject']} "
                   f"by {r['issuer']} via {r['source']} [{r['detector']}]{until}{dry} "
                   f"v{r['version']} {r['command_id']}: {r['reason']}")
    click.echo(f"{len(trail.records)} audit record(s)")
    if trail.invalid:
        click.echo(f"{sum(trail.invalid.values())} invalid audit record(s) skipped", err=True)
    if trail.truncated:
        click.echo("note: more records in the window than --max-records; only the newest were "
                   "read", err=True)


audit_cmd.name = "audit"
