"""`relayguard status SUBJECT [--ip]`: what relayguard knows about one user or client IP.

The worker's HTTP API answers the detector state (the worker that owns the subject's partition
answers; any worker forwards to it). This command adds, from Kafka: the subject's latest command
on the lock topic, the relays' acks of it, and recent findings from the alerts topic.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

import click
from aiokafka.errors import KafkaError

from relayguard.agents.status_view import subject_problem
from relayguard.foundation import status_reads
from relayguard.foundation.errors import ConfigError, DownstreamError, RelayguardError
from relayguard.foundation.settings import load_settings

MAX_FINDINGS = status_reads.MAX_FINDINGS


def _fetch(url: str, timeout: float) -> dict[str, Any]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            body = resp.read(4_000_000)
    except urllib.error.HTTPError as exc:
        try:
            why = json.loads(exc.read(100_000)).get("error", exc.reason)
        except (ValueError, AttributeError):
            why = exc.reason
        if exc.code == 400:
            raise ConfigError(f"the worker refused the subject: {why}") from None
        raise DownstreamError(f"the worker answered HTTP {exc.code}: {why}") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise DownstreamError(f"no worker answered at {url.split('/api/')[0]} ({reason}); start "
                              "one or point --worker at one") from None
    try:
        doc = json.loads(body)
    except ValueError:
        raise DownstreamError(f"{url} did not answer JSON; is it a relayguard worker?") from None
    if not isinstance(doc, dict) or "detectors" not in doc:
        raise DownstreamError(f"{url} did not answer a status document")
    return doc


def _fmt_time(t: Any) -> str:
    return t["utc"] if isinstance(t, dict) else "-"


def _counters(rows: list[dict[str, Any]]) -> list[str]:
    out = []
    for c in rows:
        limit = "unlimited" if c.get("limit") is None else c["limit"]
        win = c.get("window", {}).get("length_seconds")
        flag = "  OVER" if c.get("over") else ""
        tier = f" ({c['tier']})" if c.get("tier") not in (None, "default") else ""
        out.append(f"    {c['name']:18} {c['count']:>7} / {limit!s:<9} in {win:g}s{tier}{flag}")
    return out


def _detector_lines(name: str, d: dict[str, Any]) -> list[str]:
    lines = [f"  {name}:"]
    lines += _counters(d.get("counters", []))
    if name == "volume_baseline":
        until = _fmt_time(d["learning_until"])
        state = "learned" if d.get("learned") else f"learning until {until}"
        lines.append(f"    baseline ({d['measure']}, {d['profile']}): this hour "
                     f"{d['current_hour_count']}, expected {d['expected_this_hour']}, alert above "
                     f"{d['threshold']}; {state}")
    last = d.get("last_login")
    if last:
        lines.append(f"    last login {_fmt_time(last['time'])} from {last['ip']} "
                     f"({last.get('city') or '?'}, {last.get('country') or '?'})")
    for key in ("countries", "ips", "values", "users"):
        items = d.get(key)
        if isinstance(items, list) and items:
            shown = ", ".join(f"{next(iter(i.values()))} at {_fmt_time(i['last_seen'])}"
                              for i in items[:5])
            more = f" (+{len(items) - 5} more)" if len(items) > 5 else ""
            lines.append(f"    {key}: {shown}{more}")
    if "state" in d:
        lines.append(f"    state: {json.dumps(d['state'])[:300]}")
    return lines


def _report(doc: dict[str, Any], extra: dict[str, Any] | None) -> str:
    st = doc
    lines = [f"{st['kind']} {st['subject']}  (served by {st.get('served_by')}"
             + (f", routed from {st['routed_from']}" if st.get("routed_from") else "") + ")"]
    if not st.get("known"):
        lines.append("  the worker has no state for this subject (never seen, or expired)")
    lines.append(f"  last event {_fmt_time(st.get('last_event'))}; as of {_fmt_time(st['as_of'])}")
    lk = st["lock"]
    worker_lock = ("locked" if lk["active"] else "not locked") + (
        f" ({lk['remedy']}, until {_fmt_time(lk['expires_at'])})" if lk["active"] else "")
    lines.append(f"  worker's lock state: {worker_lock}")
    lines.append("detectors:")
    for name, d in st["detectors"].items():
        if d.get("seen"):
            lines += _detector_lines(name, d)
    quiet = [n for n, d in st["detectors"].items() if not d.get("seen")]
    if quiet:
        lines.append(f"  no state yet: {', '.join(quiet)}")
    if extra is None:
        return "\n".join(lines)
    cmd = extra.get("lock_command")
    lines.append("lock (latest command on the lock topic):")
    if cmd is None:
        lines.append("  none")
    else:
        state = "ACTIVE" if extra["lock_active"] else "not active"
        lines.append(f"  {cmd['action']} {state}: {cmd['reason']} by {cmd['issuer']} "
                     f"({cmd['detector']}) at {cmd['issued_at']}, until "
                     f"{cmd.get('expires_at') or 'unlocked'}; version {cmd['version']}, "
                     f"command {cmd['command_id']}")
        acks = extra["acks"]
        lines.append(f"  acked by {len(acks)} relay(s)"
                     + (f", slowest {max(a['after_seconds'] for a in acks)}s after issue"
                        if acks and acks[-1]['after_seconds'] is not None else ""))
        for a in acks:
            lines.append(f"    {a['relay_id']:24} applied {a['applied_at']}"
                         f" (+{a['after_seconds']}s)")
    history = extra["lock_history"]
    lines.append(f"lock history: {history['note']}")
    for r in history.get("records", []):
        lines.append(f"  {r['recorded_at']} {r['event']:7} by {r['issuer']} ({r['source']}): "
                     f"{r.get('reason', '')[:100]}")
    lines.append(f"recent findings (newest first, at most {MAX_FINDINGS}):")
    for f in extra["findings"]:
        lines.append(f"  {f['event_time']} {f['detector']:18} {f['severity']:8} {f['summary']}")
    if not extra["findings"]:
        lines.append("  none")
    lines.append(f"(read the last {extra['scan_per_partition']} records per partition of the "
                 f"alerts and lock-acks topics: {extra['findings_read']} alerts, "
                 f"{extra['acks_read']} acks)")
    return "\n".join(lines)


def _one_line(exc: RelayguardError) -> str:
    return f"{exc.whose}: {exc}" + (f" (what to do: {exc.hint})" if exc.hint else "")


@click.command(help="Show what relayguard knows about a user (or, with --ip, a client IP): "
               "counters per window against their limits, the learned baseline, the last "
               "locations with times, the worker's lock state, the current lock with the "
               "relays' acks, and recent findings.\n\nThe detector state comes from a worker's "
               "HTTP API (any worker: it forwards to the one owning the subject). Kafka reads "
               "are bounded: the latest lock command from the compacted lock topic, and only "
               "the last --scan records of each partition of the alerts and lock-acks topics "
               "(older findings and acks are not shown). Lock history needs the audit trail.")
@click.argument("subject")
@click.option("--ip", "is_ip", is_flag=True, help="SUBJECT is a client IP, not a user")
@click.option("--json", "as_json", is_flag=True, help="one JSON document on stdout")
@click.option("--worker", "worker_url", default=None, metavar="URL",
              help="a worker's HTTP API [default: http://127.0.0.1:$RELAYGUARD_WEB_PORT]")
@click.option("--scan", type=click.IntRange(1, 100_000), default=2000, show_default=True,
              help="records read from the end of each partition of alerts and lock-acks")
@click.option("--no-kafka", is_flag=True, help="only the worker's view; read nothing from Kafka")
@click.option("--timeout", type=float, default=10.0, show_default=True,
              help="seconds to wait for the worker")
def status(subject: str, is_ip: bool, as_json: bool, worker_url: str | None, scan: int,
           no_kafka: bool, timeout: float) -> None:
    kind = "ip" if is_ip else "user"
    # An unreachable broker is said once, below; aiokafka's own connection errors and the
    # "unclosed consumer" of a client that never connected are noise on top of it.
    for name in ("aiokafka", "asyncio"):
        logging.getLogger(name).setLevel(logging.CRITICAL)
    try:
        problem = subject_problem(kind, subject)
        if problem:
            raise ConfigError(f"bad subject: {problem}")
        settings = load_settings()
        base = (worker_url or f"http://127.0.0.1:{settings.web_port}").rstrip("/")
        doc = _fetch(f"{base}/api/status/{kind}/{urllib.parse.quote(subject, safe='@')}",
                     timeout)
        extra = None
        if not no_kafka:
            try:
                extra = asyncio.run(status_reads.kafka_extras(settings, kind, subject,
                                                doc["lock"].get("command_id"), scan))
            except (KafkaError, OSError, TimeoutError) as exc:
                raise DownstreamError(f"Kafka at {settings.bootstrap_servers} did not answer "
                                      f"({exc or type(exc).__name__}); the worker's view was "
                                      "read, use --no-kafka to see only that") from None
    except RelayguardError as exc:
        click.echo(_one_line(exc), err=True)
        sys.exit(2)
    if as_json:
        click.echo(json.dumps({"status": doc, **(extra or {})}, indent=2))
    else:
        try:
            text = _report(doc, extra)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:  # a worker of another
            click.echo(f"relayguard: cannot lay out this worker's answer ({exc!r}); "
                       "use --json", err=True)  # version: say so in one line
            sys.exit(2)
        click.echo(text)
