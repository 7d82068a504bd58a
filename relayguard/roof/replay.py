"""Offline replay: run the production core (stream.engine.step) over a file of events.

Every event is stepped on its user's state (when it names a user) and on its client IP's state
(for per-IP detectors), exactly as the worker does with the events topic and its by-IP
repartition. Bad lines are reported with their number and reason, counted, and skipped; lines
older than an earlier line are reported as out of order (and still fed: the core's lateness
rule decides). Settings are the worker's: RELAYGUARD_CONFIG_FILE / RELAYGUARD_* for detectors
and policy, RELAYGUARD_GEOIP_CITY_DB for locations (options override them).

The replay applies its own commands, as the fleet would: while a user or client IP is locked,
its SENDS are counted as "refused while locked" and not fed to the core (relays refuse them at
the policy check and publish no event), so findings after a lock are not overstated. LOGINS are
still fed: a relay's policy hook does not stop SASL authentication, and the worker sees those
events. Throttles expire at their TTL in event time (the worker's timer), so sends after the
expiry count again. At the end, throttles that ran out by the last event time are expired.
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
from relayguard.foundation.errors import ConfigError
from relayguard.foundation.gc_tuning import tune_for_throughput
from relayguard.foundation.settings import Settings, load_settings
from relayguard.roof.kind_errors import kind_errors
from relayguard.roof.replay_output import Output
from relayguard.stream import codec, engine
from relayguard.stream.detectors import registry
from relayguard.stream.engine import CoreParams, KeyState, StepResult
from relayguard.stream.records import (
    Event,
    GeoPoint,
    LockCommand,
    LoginEvent,
    SendEvent,
    SubjectKind,
)
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

    def expire(self, kind: SubjectKind, key: str, now: float) -> list[LockCommand]:
        """The worker's expiry timer for one subject: unlock its throttle if it ran out."""
        state = self.states.get((kind, key))
        if state is None:
            return []
        res = engine.tick(self.params, kind, key, state, now)
        self.states[(kind, key)] = res.state
        return list(res.commands)

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
    refused_while_locked: int = 0  # sends a relay would have refused: not fed to the core
    out_of_order: int = 0  # lines older than an earlier line (fed; the core may drop them)

    @property
    def rejected(self) -> int:
        """Lines that did not count: unreadable, or too late for the core."""
        return self.bad_lines + self.too_late

    def to_dict(self) -> dict[str, Any]:
        users = sorted(x for x in self.subjects if x.startswith("user:"))
        return {"lines": self.lines, "events": self.events, "bad_lines": self.bad_lines,
                "bad_reasons": dict(self.bad_reasons), "duplicates": self.duplicates,
                "too_late": self.too_late, "out_of_order": self.out_of_order,
                "refused_while_locked": self.refused_while_locked,
                "findings": dict(self.findings), "commands": dict(self.commands),
                "alerts": self.alerts, "users_affected": len(users),
                "ips_affected": len(self.subjects) - len(users), "rejected": self.rejected,
                "seconds": round(self.seconds, 3)}


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
                 out: Output) -> Iterator[tuple[int, Event]]:
    for number, line in enumerate(lines, 1):
        summary.lines = number
        if not line.strip():
            continue
        try:
            yield number, decode_line(line.encode())
        except codec.Rejected as exc:
            summary.bad_lines += 1
            summary.bad_reasons[exc.reason] += 1
            out.problem("bad_line", number, f"{exc.reason}: {exc.detail[:200]}")


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
                        out: Output) -> Iterator[tuple[int, Event]]:
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
                    out.problem("bad_line", f"{path} line {number}",
                                f"{exc.reason}: {exc.detail[:200]}")
                    continue
                yield event.event_time, index, number, event

    for _, _, _, event in heapq.merge(*(one(i, p) for i, p in enumerate(paths))):
        yield summary.lines, event


@dataclass
class OwnLocks:
    """The replay's own lock book: what relays would enforce after the commands so far."""

    active: dict[tuple[str, str], LockCommand] = field(default_factory=dict)
    due: list[tuple[float, SubjectKind, str]] = field(default_factory=list)  # expires_at, ...

    def apply(self, c: LockCommand) -> None:
        key = (c.subject_kind, c.subject)
        if c.action == "unlock":
            self.active.pop(key, None)
        elif not c.dry_run:
            self.active[key] = c
            if c.expires_at is not None:
                heapq.heappush(self.due, (c.expires_at, c.subject_kind, c.subject))

    def expiring(self, now: float) -> Iterator[tuple[SubjectKind, str]]:
        while self.due and self.due[0][0] <= now:
            _, kind, key = heapq.heappop(self.due)
            c = self.active.get((kind, key))
            if c is not None and c.expires_at is not None and c.expires_at <= now:
                yield kind, key

    def refusing(self, e: Event) -> LockCommand | None:
        if not isinstance(e, SendEvent):
            return None
        for key in (("user", e.user), ("ip", e.client_ip)):
            c = self.active.get(key)
            if c is not None and (c.expires_at is None or c.expires_at > e.event_time):
                return c
        return None


def run(events: Iterable[tuple[int, Event]], replayer: Replayer, summary: Summary, out: Output,
        progress_every: int = 100_000, geo: Any = None, apply_locks: bool = True) -> Summary:
    started = time.perf_counter()
    from relayguard.foundation.geoip import enrich  # geoip2 is only needed here, not by the core

    own = OwnLocks()
    newest, newest_line = float("-inf"), 0

    def commands(cmds: Iterable[LockCommand], line: int | None, when: float) -> None:
        for c in cmds:
            summary.commands[c.action] += 1
            out.command(c, line, when)
            if apply_locks:
                own.apply(c)

    for number, event in events:
        if geo is not None:
            event = enrich(event, geo)
        summary.events += 1
        t = event.event_time
        if t < newest:
            summary.out_of_order += 1
            out.problem("out_of_order", number, f"out of order: event time {to_rfc3339(t)} is "
                        f"{newest - t:.3f}s before line {newest_line}'s {to_rfc3339(newest)}")
        else:
            newest, newest_line = t, number
        for kind, key in list(own.expiring(t)):  # the worker's timer, in event time
            commands(replayer.expire(kind, key, t), number, t)
        lock = own.refusing(event) if apply_locks else None
        if lock is not None:
            summary.refused_while_locked += 1
            out.refused(event, number, lock)
            continue
        for res in replayer.feed(event):
            summary.duplicates += res.outcome == "duplicate"
            summary.too_late += res.outcome == "too_late"
            summary.alerts += len(res.alerts)
            for f in res.findings:
                summary.findings[f.detector] += 1
                summary.subjects.add(f"{f.subject_kind}:{f.subject}")
                out.finding(f, number)
            for a in res.alerts:
                out.alert(a, number)
            commands(res.commands, number, t)
        if progress_every and summary.events % progress_every == 0:
            rate = summary.events / max(time.perf_counter() - started, 1e-9)
            click.echo(f"... line {number}, {summary.events} events, {rate:,.0f} events/s",
                       file=out.err)
    commands(replayer.finish(), None, replayer.watermark)
    summary.seconds = time.perf_counter() - started
    return summary


def print_summary(s: Summary, out: TextIO) -> None:
    rate = s.events / s.seconds if s.seconds > 0 else 0.0
    users = {x for x in s.subjects if x.startswith("user:")}
    ips = s.subjects - users
    click.echo("--- summary ---", file=out)
    click.echo(f"lines {s.lines}, events {s.events}, bad lines {s.bad_lines}"
               + (f" ({dict(s.bad_reasons)})" if s.bad_reasons else "")
               + f", duplicates {s.duplicates}, too late {s.too_late}, out of order "
               f"{s.out_of_order}", file=out)
    click.echo(f"findings {sum(s.findings.values())}: "
               + (", ".join(f"{k} {v}" for k, v in sorted(s.findings.items())) or "none"),
               file=out)
    click.echo(f"commands: lock {s.commands['lock']}, unlock {s.commands['unlock']}; "
               f"alerts {s.alerts}; sends refused while locked {s.refused_while_locked}",
               file=out)
    click.echo(f"users affected {len(users)}, IPs affected {len(ips)}", file=out)
    click.echo(f"{s.seconds:.2f}s, {rate:,.0f} events/s", file=out)
    if s.rejected:
        click.echo(f"{s.rejected} line(s) rejected (bad {s.bad_lines}, too late {s.too_late}): "
                   "exit code 1", file=out)


def _setup(config: Path | None, geoip_city_db: Path | None) -> tuple[CoreParams, Any, str]:
    """The worker's settings (env, RELAYGUARD_CONFIG_FILE), options on top."""
    settings = load_settings()
    params = load_params(config) if config is not None else build_core_params(settings)
    source = (str(config) if config is not None else
              f"RELAYGUARD_CONFIG_FILE={settings.config_file or _env_config() or '(unset)'}")
    db = geoip_city_db or settings.geoip_city_db
    locator = None
    if db is not None:
        from relayguard.foundation.geoip import GeoLocator

        locator = GeoLocator(db)
    geo = str(db) if db else ("none: travel and country detectors see no locations (set "
                              "RELAYGUARD_GEOIP_CITY_DB or --geoip-city-db)")
    return params, locator, f"replay: detectors and policy from {source}; GeoIP {geo}"


def _env_config() -> str | None:
    return os.environ.get("RELAYGUARD_CONFIG_FILE")


@click.command(help="Replay files of events or mail logs through the detection core, offline, "
               "and print the findings, alerts and lock commands the worker would issue (with "
               "event time, line, id and version). Uses the worker's settings: "
               "RELAYGUARD_CONFIG_FILE / RELAYGUARD_* for detectors and policy, "
               "RELAYGUARD_GEOIP_CITY_DB for locations; --config and --geoip-city-db override "
               "them. The replay applies its own locks: a locked user's or IP's sends are "
               "counted as 'refused while locked' and not fed on (relays would refuse them); "
               "logins are still fed. Several FILEs (e.g. the mail log and the Dovecot log) are "
               "merged by time. Out-of-order lines are reported with their line numbers. Exit "
               "code 1 when lines were rejected (unreadable or too late).")
@click.argument("files", nargs=-1, required=True,
                type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--format", "fmt", type=click.Choice(["jsonl", "postfix-log"]), default="jsonl",
              show_default=True,
              help="jsonl: one login/send event per line (schemas/); postfix-log: Postfix, "
              "Dovecot and Exim mail-log lines (logins only)")
@click.option("--config", "config", type=click.Path(dir_okay=False, path_type=Path),
              help="TOML file with [detectors] and [policy] tables (default: the worker's "
              "RELAYGUARD_CONFIG_FILE and RELAYGUARD_* settings)")
@click.option("--geoip-city-db", type=click.Path(dir_okay=False, path_type=Path),
              help="MaxMind/DB-IP City .mmdb to locate login IPs (default: "
              "RELAYGUARD_GEOIP_CITY_DB)")
@click.option("--relay-id", default="replay", show_default=True,
              help="relay id for events parsed from logs")
@click.option("--reference-time", type=float, default=None,
              help="epoch seconds used to give year-less syslog stamps a year "
              "(default: each file's modification time)")
@click.option("--quiet", "-q", is_flag=True, help="print the summary only")
@click.option("--json", "as_json", is_flag=True,
              help="JSON Lines on stdout: finding, alert, command, refused, bad_line, "
              "out_of_order records, then one summary")
@click.option("--no-apply-locks", is_flag=True,
              help="feed every event, even sends a lock would have refused")
@click.option("--progress-every", type=int, default=100_000, show_default=True,
              help="report progress on stderr every N events (0 = never)")
@kind_errors
def replay(files: tuple[Path, ...], fmt: str, config: Path | None, geoip_city_db: Path | None,
           relay_id: str, reference_time: float | None, quiet: bool, as_json: bool,
           no_apply_locks: bool, progress_every: int) -> None:
    params, locator, setup = _setup(config, geoip_city_db)  # errors: one line via the group
    out = Output(sys.stdout, sys.stderr, as_json, quiet)
    click.echo(setup, err=True)
    summary = Summary()
    replayer = Replayer(params)
    tune_for_throughput()
    if len(files) > 1:
        paths = list(files)
        events = (merged_jsonl_events(paths, summary, out) if fmt == "jsonl" else
                  merged_log_events(paths, summary, relay_id, reference_time))
        run(events, replayer, summary, out, progress_every, locator, not no_apply_locks)
    else:
        with files[0].open(encoding="utf-8", errors="replace") as fh:
            if fmt == "jsonl":
                events = jsonl_events(fh, summary, out)
            else:
                ref = (reference_time if reference_time is not None
                       else os.path.getmtime(files[0]))
                events = log_events(fh, summary, relay_id, ref)
            run(events, replayer, summary, out, progress_every, locator, not no_apply_locks)
    if as_json:
        out.summary(summary.to_dict())
    else:
        print_summary(summary, sys.stdout)
    if summary.rejected:
        sys.exit(1)
