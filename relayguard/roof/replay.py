"""Offline replay: run the production core (stream.engine.step) over a file of events.

Every event is stepped on its user's state (when it names a user) and on its client IP's state
(for per-IP detectors), exactly as the worker does with the events topic and its by-IP
repartition. Bad lines are reported with their number and reason, counted, and skipped. At the
end, throttles whose TTL ran out by the last event time are expired, as the worker's timer would.
"""

from __future__ import annotations

import dataclasses
import heapq
import os
import sys
import time
import tomllib
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import click
import orjson

from relayguard.foundation.core_params import build_core_params
from relayguard.foundation.errors import ConfigError, RelayguardError
from relayguard.foundation.settings import Settings
from relayguard.stream import codec, engine
from relayguard.stream.detectors import registry
from relayguard.stream.engine import CoreParams, KeyState, StepResult
from relayguard.stream.records import Event, Finding, GeoPoint, LockCommand, LoginEvent, SubjectKind
from relayguard.stream.timefmt import to_rfc3339
from relayguard.stream.user_names import canonical_event


def geo_from_dict(d: dict[str, Any]) -> GeoPoint:
    """GeoPoint from an inline {"lat","lon","radius_km","country","city"} object (golden files)."""
    return GeoPoint(float(d["lat"]), float(d["lon"]), float(d.get("radius_km", 10.0)),
                    d.get("country"), d.get("city"))


def with_geo(event: Event, geo: dict[str, Any] | None) -> Event:
    """Geo only ever belongs on login events; on a send it is ignored."""
    if not geo or not isinstance(event, LoginEvent):
        return event
    return dataclasses.replace(event, geo=geo_from_dict(geo))


@dataclass
class Replayer:
    """The worker's per-key loop without Kafka: state per (kind, key), results per event."""

    params: CoreParams
    states: dict[tuple[SubjectKind, str], KeyState] = field(default_factory=dict)
    watermark: float = float("-inf")
    kinds: tuple[SubjectKind, ...] | None = None  # default: the kinds some detector lives in

    def __post_init__(self) -> None:
        if self.kinds is None:
            self.kinds = tuple(k for k in ("user", "ip") if self.params.for_kind(k))

    def feed(self, event: Event) -> list[StepResult]:
        results = []
        event = canonical_event(event, self.params.user_names)  # as the worker does at decode
        for kind in self.kinds or ():
            key = event.user if kind == "user" else event.client_ip
            if key is None or (kind == "ip" and not registry.needs_ip_state(event)):
                continue
            res = engine.step(self.params, kind, key, self.states.get((kind, key)), event)
            self.states[(kind, key)] = res.state
            results.append(res)
        self.watermark = max(self.watermark, event.event_time)
        return results

    def finish(self) -> list[LockCommand]:
        """Unlocks for throttles that expired by the newest event time (the worker's timer)."""
        out: list[LockCommand] = []
        if self.watermark == float("-inf"):
            return out
        for (kind, key), state in self.states.items():
            res = engine.tick(self.params, kind, key, state, self.watermark)
            self.states[(kind, key)] = res.state
            out.extend(res.commands)
        return out


@dataclass
class Summary:
    lines: int = 0
    events: int = 0
    bad_lines: int = 0
    bad_reasons: Counter[str] = field(default_factory=Counter)
    duplicates: int = 0
    too_late: int = 0
    findings: Counter[str] = field(default_factory=Counter)
    commands: Counter[str] = field(default_factory=Counter)
    alerts: int = 0
    subjects: set[str] = field(default_factory=set)
    seconds: float = 0.0


def load_params(config: Path | None) -> CoreParams:
    """Core params from a TOML file's [detectors] and [policy] tables (or the defaults)."""
    tables: dict[str, Any] = {}
    if config is not None:
        try:
            with config.open("rb") as fh:
                data = tomllib.load(fh)
        except OSError as exc:
            raise ConfigError(f"cannot read {config}: {exc.strerror}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{config} is not valid TOML: {exc}") from None
        tables = {k: data[k] for k in ("detectors", "policy") if k in data}
    return build_core_params(Settings(**tables))


def jsonl_events(lines: Iterable[str], summary: Summary,
                 err: TextIO) -> Iterator[tuple[int, Event]]:
    for number, line in enumerate(lines, 1):
        summary.lines = number
        if not line.strip():
            continue
        try:
            yield number, decode_line(line.encode())
        except codec.Rejected as exc:
            summary.bad_lines += 1
            summary.bad_reasons[exc.reason] += 1
            click.echo(f"line {number}: {exc.reason}: {exc.detail[:200]}", file=err)


def decode_line(raw: bytes) -> Event:
    """A wire-format event, optionally with an inline "geo" object (already enriched data,
    golden files); the geo is checked here, the rest by the schema."""
    if b'"geo"' not in raw:
        return codec.decode_event(raw)
    try:
        data = orjson.loads(raw)
        geo = data.pop("geo") if isinstance(data, dict) else None
    except orjson.JSONDecodeError:
        return codec.decode_event(raw)  # raises the proper Rejected
    event = codec.decode_event(orjson.dumps(data))
    try:
        return with_geo(event, geo)
    except (KeyError, TypeError, ValueError) as exc:
        detail = f"geo: want {{lat, lon, radius_km, country}}: {exc}"
        raise codec.Rejected("invalid", detail) from None


def log_events(lines: Iterable[str], summary: Summary, relay_id: str,
               reference_time: float) -> Iterator[tuple[int, Event]]:
    from relayguard.relay.log_parser import LogParser  # only this format needs the relay package

    parser = LogParser(relay_id=relay_id)
    for number, line in enumerate(lines, 1):
        summary.lines = number
        for ev in parser.feed(line.rstrip("\n"), reference_time, line_id=f"line:{number}"):
            yield number, ev


def merged_log_events(paths: list[Path], summary: Summary, relay_id: str,
                      reference_time: float | None) -> Iterator[tuple[int, Event]]:
    """Mail-log lines of several files (mail log, Dovecot log, ...) merged by their stamps and
    fed to one parser, as `hook tail` follows them side by side (relay.log_order: Dovecot lines
    first at the same stamp), so a Dovecot verdict can name the user of a Postfix failure in
    another file."""
    from relayguard.relay.log_order import keyed
    from relayguard.relay.log_parser import LogParser

    parser = LogParser(relay_id=relay_id)
    refs = [reference_time if reference_time is not None else os.path.getmtime(p)
            for p in paths]
    streams = [keyed(_lines(path, i, summary, refs[i]), refs[i], parser.tz, i)
               for i, path in enumerate(paths)]
    for *_, (ref, line_id, line) in heapq.merge(*streams):
        for ev in parser.feed(line, ref, line_id=line_id):
            yield summary.lines, ev


def _lines(path: Path, index: int, summary: Summary, ref: float
           ) -> Iterator[tuple[str, tuple[float, str, str]]]:
    """(text, (reference time, line id, text)) of one file's lines; counts them."""
    with path.open(encoding="utf-8", errors="replace") as fh:
        for number, raw in enumerate(fh, 1):
            summary.lines += 1
            line = raw.rstrip("\n")
            yield line, (ref, f"f{index}:line:{number}", line)


def merged_jsonl_events(paths: list[Path], summary: Summary,
                        err: TextIO) -> Iterator[tuple[int, Event]]:
    """Events of several JSONL files merged by event time (each file in its own order)."""
    def one(index: int, path: Path) -> Iterator[tuple[float, int, int, Event]]:
        with path.open(encoding="utf-8", errors="replace") as fh:
            for number, line in enumerate(fh, 1):
                summary.lines += 1
                if not line.strip():
                    continue
                try:
                    event = decode_line(line.encode())
                except codec.Rejected as exc:
                    summary.bad_lines += 1
                    summary.bad_reasons[exc.reason] += 1
                    click.echo(f"{path} line {number}: {exc.reason}: {exc.detail[:200]}",
                               file=err)
                    continue
                yield event.event_time, index, number, event

    for _, _, _, event in heapq.merge(*(one(i, p) for i, p in enumerate(paths))):
        yield summary.lines, event


def _describe_finding(f: Finding) -> str:
    when = to_rfc3339(f.event_time)
    return f"FINDING {when} {f.detector} {f.subject_kind}:{f.subject} {f.summary}"


def _describe_command(c: LockCommand) -> str:
    expires = "never" if c.expires_at is None else to_rfc3339(c.expires_at)
    dry = " (dry run)" if c.dry_run else ""
    return (f"COMMAND {c.action} {c.subject_kind}:{c.subject} by {c.detector} "
            f"severity={c.severity} expires={expires}{dry}: {c.reason}")


def run(events: Iterable[tuple[int, Event]], replayer: Replayer, summary: Summary, out: TextIO,
        err: TextIO, quiet: bool = False, progress_every: int = 100_000,
        geo: Any = None) -> Summary:
    started = time.perf_counter()
    from relayguard.foundation.geoip import enrich  # geoip2 is only needed here, not by the core

    for number, event in events:
        if geo is not None:
            event = enrich(event, geo)
        summary.events += 1
        for res in replayer.feed(event):
            summary.duplicates += res.outcome == "duplicate"
            summary.too_late += res.outcome == "too_late"
            summary.alerts += len(res.alerts)
            for f in res.findings:
                summary.findings[f.detector] += 1
                summary.subjects.add(f"{f.subject_kind}:{f.subject}")
                if not quiet:
                    click.echo(_describe_finding(f), file=out)
            for c in res.commands:
                summary.commands[c.action] += 1
                if not quiet:
                    click.echo(_describe_command(c), file=out)
        if progress_every and summary.events % progress_every == 0:
            rate = summary.events / max(time.perf_counter() - started, 1e-9)
            click.echo(f"... line {number}, {summary.events} events, {rate:,.0f} events/s",
                       file=err)
    for c in replayer.finish():
        summary.commands[c.action] += 1
        if not quiet:
            click.echo(_describe_command(c), file=out)
    summary.seconds = time.perf_counter() - started
    return summary


def print_summary(s: Summary, out: TextIO) -> None:
    rate = s.events / s.seconds if s.seconds > 0 else 0.0
    users = {x for x in s.subjects if x.startswith("user:")}
    ips = s.subjects - users
    click.echo("--- summary ---", file=out)
    click.echo(f"lines {s.lines}, events {s.events}, bad lines {s.bad_lines}"
               + (f" ({dict(s.bad_reasons)})" if s.bad_reasons else "")
               + f", duplicates {s.duplicates}, too late {s.too_late}", file=out)
    click.echo(f"findings {sum(s.findings.values())}: "
               + (", ".join(f"{k} {v}" for k, v in sorted(s.findings.items())) or "none"),
               file=out)
    click.echo(f"commands: lock {s.commands['lock']}, unlock {s.commands['unlock']}; "
               f"alerts {s.alerts}", file=out)
    click.echo(f"users affected {len(users)}, IPs affected {len(ips)}", file=out)
    click.echo(f"{s.seconds:.2f}s, {rate:,.0f} events/s", file=out)


@click.command(help="Replay files of events or mail logs through the detection core, offline, "
               "and print the findings and the lock commands the worker would issue. Several "
               "FILEs (e.g. the mail log and the Dovecot log) are merged by time.")
@click.argument("files", nargs=-1, required=True,
                type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--format", "fmt", type=click.Choice(["jsonl", "postfix-log"]), default="jsonl",
              show_default=True,
              help="jsonl: one login/send event per line (schemas/); postfix-log: Postfix, "
              "Dovecot and Exim mail-log lines (logins only)")
@click.option("--config", "config", type=click.Path(dir_okay=False, path_type=Path),
              help="TOML file with [detectors] and [policy] tables")
@click.option("--geoip-city-db", type=click.Path(dir_okay=False, path_type=Path),
              help="MaxMind/DB-IP City .mmdb to locate login IPs (travel, countries)")
@click.option("--relay-id", default="replay", show_default=True,
              help="relay id for events parsed from logs")
@click.option("--reference-time", type=float, default=None,
              help="epoch seconds used to give year-less syslog stamps a year "
              "(default: each file's modification time)")
@click.option("--quiet", "-q", is_flag=True, help="print the summary only")
@click.option("--progress-every", type=int, default=100_000, show_default=True,
              help="report progress on stderr every N events (0 = never)")
def replay(files: tuple[Path, ...], fmt: str, config: Path | None, geoip_city_db: Path | None,
           relay_id: str, reference_time: float | None, quiet: bool,
           progress_every: int) -> None:
    try:
        params = load_params(config)
        locator = None
        if geoip_city_db is not None:
            from relayguard.foundation.geoip import GeoLocator

            locator = GeoLocator(geoip_city_db)
    except RelayguardError as exc:
        click.echo(exc.explain(), err=True)
        sys.exit(2)
    summary = Summary()
    out, err = sys.stdout, sys.stderr
    if len(files) > 1:
        paths = list(files)
        events = (merged_jsonl_events(paths, summary, err) if fmt == "jsonl" else
                  merged_log_events(paths, summary, relay_id, reference_time))
        run(events, Replayer(params), summary, out, err, quiet, progress_every, locator)
        print_summary(summary, out)
        return
    file = files[0]
    with file.open(encoding="utf-8", errors="replace") as fh:
        if fmt == "jsonl":
            events = jsonl_events(fh, summary, err)
        else:
            ref = reference_time if reference_time is not None else os.path.getmtime(file)
            events = log_events(fh, summary, relay_id, ref)
        run(events, Replayer(params), summary, out, err, quiet, progress_every, locator)
    print_summary(summary, out)
