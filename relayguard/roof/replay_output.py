"""How `relayguard replay` reports: text lines for eyes, or JSON Lines (--json) for scripts.

Text: FINDING / ALERT / COMMAND lines on stdout with the event time, ids and versions; problems
(bad lines, out-of-order lines) on stderr with their line numbers. JSON: one object per line on
stdout, each with a "type" (finding, alert, command, refused, bad_line, out_of_order), and a
last {"type": "summary", ...}; stderr then carries only progress."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any, TextIO

import click
import orjson

from relayguard.stream import codec
from relayguard.stream.records import Alert, Event, Finding, LockCommand
from relayguard.stream.timefmt import to_rfc3339

MAX_PROBLEM_LINES = 200  # per kind on stderr; counts in the summary stay exact


class Output:
    def __init__(self, out: TextIO, err: TextIO, as_json: bool, quiet: bool) -> None:
        self.out, self.err, self.as_json, self.quiet = out, err, as_json, quiet
        self._problems: dict[str, int] = {}

    def _json(self, doc: dict[str, Any]) -> None:
        self.out.write(orjson.dumps(doc, default=str).decode() + "\n")

    def finding(self, f: Finding, line: int) -> None:
        if self.quiet:
            return
        if self.as_json:
            d = asdict(f)
            d["event_time"] = to_rfc3339(f.event_time)
            self._json({"type": "finding", "line": line, **d})
            return
        click.echo(f"FINDING {to_rfc3339(f.event_time)} line {line} {f.detector} "
                   f"{f.subject_kind}:{f.subject} {f.summary}", file=self.out)

    def alert(self, a: Alert, line: int) -> None:
        if self.quiet:
            return
        if self.as_json:
            self._json({"line": line, **codec.alert_to_dict(a)})
            return
        dry = " (dry run)" if a.dry_run else ""
        click.echo(f"ALERT {to_rfc3339(a.event_time)} line {line} {a.severity} {a.detector} "
                   f"{a.subject_kind}:{a.subject} remedy={a.remedy} id={a.alert_id}"
                   f"{dry}: {a.summary}", file=self.out)

    def command(self, c: LockCommand, line: int | None, event_time: float) -> None:
        if self.quiet:
            return
        if self.as_json:
            self._json({"line": line, "event_time": to_rfc3339(event_time),
                        **codec.lock_command_to_dict(c)})
            return
        expires = "never" if c.expires_at is None else to_rfc3339(c.expires_at)
        dry = " (dry run)" if c.dry_run else ""
        where = f"line {line}" if line is not None else "at end"
        click.echo(f"COMMAND {to_rfc3339(event_time)} {where} {c.action} "
                   f"{c.subject_kind}:{c.subject} by {c.detector} severity={c.severity} "
                   f"expires={expires} id={c.command_id} version={c.version}{dry}: {c.reason}",
                   file=self.out)

    def refused(self, e: Event, line: int, lock: LockCommand) -> None:
        if self.quiet or not self.as_json:
            return  # text: counted in the summary; one line per refused send would flood
        self._json({"type": "refused", "line": line, "event_id": e.event_id,
                    "event_time": to_rfc3339(e.event_time), "user": e.user,
                    "client_ip": e.client_ip, "locked_by": lock.command_id})

    def problem(self, kind: str, line: int | str, detail: str) -> None:
        if self.as_json:
            self._json({"type": kind, "line": line, "detail": detail})
            return
        n = self._problems[kind] = self._problems.get(kind, 0) + 1
        if n <= MAX_PROBLEM_LINES:
            where = line if isinstance(line, str) else f"line {line}"
            click.echo(f"{where}: {detail}", file=self.err)
        elif n == MAX_PROBLEM_LINES + 1:
            click.echo(f"... more {kind.replace('_', ' ')} lines not shown (see the summary)",
                       file=self.err)

    def summary(self, doc: dict[str, Any]) -> None:
        if self.as_json:
            self._json({"type": "summary", **doc})
