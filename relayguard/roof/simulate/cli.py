"""`relayguard simulate`: write a labelled fleet; `--score` / `simulate score DIR`: measure."""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click
import orjson

from relayguard.foundation.errors import ConfigError, RelayguardError
from relayguard.foundation.gc_tuning import tune_for_throughput
from relayguard.roof.simulate.fleet import SimConfig
from relayguard.roof.simulate.writer import CITY_DB, EVENTS, LABELS, OPERATOR, generate


def _progress(what: str) -> Any:
    def report(n: int, seconds: float) -> None:
        click.echo(f"... {what} {n:,} events, {n / max(seconds, 1e-9):,.0f} events/s", err=True)
    return report


def _start(value: str) -> float:
    try:
        dt = datetime.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(f"want a date like 2026-11-02, got {value!r}") from None
    return (dt if dt.tzinfo else dt.replace(tzinfo=UTC)).timestamp()


def run_score(out: Path, config: Path | None, operator: bool, as_json: bool, top: int,
              progress_every: int, from_actions: bool = False) -> dict[str, Any]:
    from relayguard.foundation.geoip import GeoLocator
    from relayguard.roof.replay import load_params
    from relayguard.roof.simulate.report import print_report
    from relayguard.roof.simulate.score import (
        Actions,
        collect,
        evaluate,
        load_actions,
        read_events,
        save_actions,
    )

    labels_path, events_path = out / LABELS, out / EVENTS
    for p in (labels_path, events_path, out / CITY_DB):
        if not p.is_file():
            raise ConfigError(f"{p} does not exist",
                              f"run `relayguard simulate --out {out}` first")
    if operator and config is not None:
        raise ConfigError("give --config or --operator, not both")
    try:
        labels = orjson.loads(labels_path.read_bytes())
    except orjson.JSONDecodeError as exc:
        raise ConfigError(f"{labels_path} is not JSON: {exc}",
                          "regenerate it with `relayguard simulate`") from None
    name = "operator" if operator else (config.stem if config else "defaults")
    cache = out / f"actions.{name}.jsonl"
    if from_actions:
        if not cache.is_file():
            raise ConfigError(f"{cache} does not exist", "score once without --from-actions")
        actions = load_actions(cache)
    else:
        params = load_params(out / OPERATOR if operator else config)
        locator = GeoLocator(out / CITY_DB)
        holder = Actions()

        def bad(number: int, why: str) -> None:
            click.echo(f"{events_path} line {number}: {why}", err=True)

        tune_for_throughput()  # the replay's allocations, not cycles: see gc_tuning
        actions = collect(read_events(events_path, bad, holder), params, locator,
                          _progress("replayed") if progress_every else None, progress_every or 1)
        actions.bad_lines = holder.bad_lines
        save_actions(actions, cache)
    report = evaluate(labels, actions)
    report["config"] = "operator.toml" if operator else (str(config) if config else "defaults")
    if as_json:
        click.echo(orjson.dumps(report, option=orjson.OPT_INDENT_2).decode())
    else:
        click.echo(f"--- score ({report['config']}) ---")
        print_report(report, sys.stdout, top)
    return report


@click.group(invoke_without_command=True,
             help="Write a labelled, seeded fleet simulation (events.jsonl, labels.json, "
             "city.mmdb, operator.toml) to --out; with --score, replay it through the "
             "detection core and print recall, recall within 60 s, false locks and false "
             "alerts per benign user per day. `relayguard simulate score DIR` scores an "
             "existing run.")
@click.option("--out", "out", type=click.Path(file_okay=False, path_type=Path),
              default=Path("simulation"), show_default=True, help="output directory")
@click.option("--seed", type=int, default=1, show_default=True)
@click.option("--users", type=click.IntRange(60), default=SimConfig.users, show_default=True)
@click.option("--orgs", type=click.IntRange(1), default=SimConfig.orgs, show_default=True)
@click.option("--warmup-days", type=click.IntRange(1), default=SimConfig.warmup_days,
              show_default=True, help="replayed so detectors learn, never scored")
@click.option("--scored-days", type=click.IntRange(1), default=SimConfig.scored_days,
              show_default=True)
@click.option("--attacks", type=click.IntRange(0), default=SimConfig.attacks,
              show_default=True, help="injected attacks, the twelve kinds in turn")
@click.option("--start", default="2026-11-02", show_default=True,
              help="first day (UTC); a Monday keeps weekends on weekends")
@click.option("--password-hashes", is_flag=True,
              help="relays supply a keyed hash of each attempted password")
@click.option("--score", "do_score", is_flag=True, help="score the run after writing it")
@click.option("--config", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="TOML with [detectors]/[policy] to score with (default: the defaults)")
@click.option("--operator", is_flag=True,
              help="score with the run's operator.toml (bulk senders on a bulk plan)")
@click.option("--json", "as_json", is_flag=True, help="print the figures as JSON")
@click.option("--top", type=int, default=25, show_default=True,
              help="benign users listed")
@click.option("--progress-every", type=int, default=200_000, show_default=True,
              help="progress on stderr every N events (0 = never)")
@click.pass_context
def simulate(ctx: click.Context, out: Path, seed: int, users: int, orgs: int,
             warmup_days: int, scored_days: int, attacks: int, start: str,
             password_hashes: bool, do_score: bool, config: Path | None, operator: bool,
             as_json: bool, top: int, progress_every: int) -> None:
    if ctx.invoked_subcommand is not None:
        return
    cfg = SimConfig(seed=seed, users=users, orgs=min(orgs, users), warmup_days=warmup_days,
                    scored_days=scored_days, attacks=attacks, start=_start(start),
                    password_hashes=password_hashes)
    try:
        lab = generate(cfg, out, _progress("wrote") if progress_every else None,
                       progress_every or 1)
    except ValueError as exc:
        click.echo(f"relayguard simulate: {exc}", err=True)
        sys.exit(2)
    msg = (f"wrote {lab['events']:,} events for {users} users in {cfg.orgs} organisations "
           f"and {attacks} attacks to {out} in {lab['seconds']:.1f} s "
           f"({lab['events'] / max(lab['seconds'], 1e-9):,.0f} events/s); "
           f"warm-up {lab['start_iso']} .. {lab['scored_start_iso']}, "
           f"scored .. {lab['end_iso']}")
    click.echo(msg, err=as_json)
    if do_score:
        _score_or_exit(out, config, operator, as_json, top, progress_every)


def _score_or_exit(out: Path, config: Path | None, operator: bool, as_json: bool, top: int,
                   progress_every: int, from_actions: bool = False) -> None:
    try:
        run_score(out, config, operator, as_json, top, progress_every, from_actions)
    except RelayguardError as exc:
        click.echo(exc.explain(), err=True)
        sys.exit(2)


@simulate.command("score", help="Score an existing simulation directory.")
@click.argument("out", type=click.Path(file_okay=False, path_type=Path))
@click.option("--config", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="TOML with [detectors]/[policy] (default: the defaults)")
@click.option("--operator", is_flag=True, help="score with the run's operator.toml")
@click.option("--json", "as_json", is_flag=True, help="print the figures as JSON")
@click.option("--top", type=int, default=25, show_default=True)
@click.option("--progress-every", type=int, default=200_000, show_default=True)
@click.option("--from-actions", is_flag=True,
              help="recompute the figures from the actions the last replay with this config "
              "saved (DIR/actions.<config>.jsonl) instead of replaying")
def score(out: Path, config: Path | None, operator: bool, as_json: bool, top: int,
          progress_every: int, from_actions: bool) -> None:
    _score_or_exit(out, config, operator, as_json, top, progress_every, from_actions)
