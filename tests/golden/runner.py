"""Golden scenario runner: JSON files of events in, expected findings (and commands) out.

File shape (tests/golden/<detector>.json):
    {"detector": "<name>", "cases": [{
        "name": "...", "why": "one line: what this case proves",
        "config": {"detectors": {...}, "policy": {...}},      # optional, as in the TOML file
        "events": [{"t": 0, "type": "login", "user": "a@x", ..., "geo": {...},
                    "repeat": 5, "every": 2}],                  # "{i}" in strings = 0..repeat-1
        "expect": [{"detector": "...", "subject": "...", "evidence": {...subset...}}],
        "silent": true,                                         # benign: no detector says anything
        "expect_commands": [{"action": "lock", "detector": "...", "subject": "...",
                             "evidence": {...subset...}, "evidence_keys": [...]}]}]}
Events are the wire format (schemas/) with defaults filled in (a delivery event gets a queue id
and status "bounced"); "t" is seconds after the case's
"start" (default 2026-01-05T00:00:00Z) plus "day" days. Geo is inline: {"lat", "lon",
"radius_km", "country", "city"}. `expect` lists, in order, every finding of the checked detectors
(the file's detector, or the case's "check" list).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from relayguard.foundation.core_params import build_core_params
from relayguard.foundation.settings import Settings
from relayguard.roof.replay import Replayer, decode_line
from relayguard.stream.records import Event, Finding, LockCommand
from relayguard.stream.timefmt import parse_rfc3339, to_rfc3339

GOLDEN_DIR = Path(__file__).parent
DEFAULT_START = "2026-01-05T00:00:00Z"
META = {"t", "day", "repeat", "every"}


@dataclass
class Outcome:
    findings: list[Finding] = field(default_factory=list)
    commands: list[LockCommand] = field(default_factory=list)
    alerts: int = 0


def load(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = orjson.loads(path.read_bytes())
    return data


def all_files() -> list[Path]:
    return sorted(GOLDEN_DIR.glob("*.json"))


def _sub(v: Any, i: int) -> Any:
    """"{i}" replaced in a string, or in each string of a list (recipient_domains)."""
    if isinstance(v, str):
        return v.replace("{i}", str(i))
    if isinstance(v, list):
        return [x.replace("{i}", str(i)) if isinstance(x, str) else x for x in v]
    return v


def _fill(raw: dict[str, Any], start: float, n: int, i: int) -> dict[str, Any]:
    e = {k: _sub(v, i) for k, v in raw.items() if k not in META}
    t = start + raw.get("day", 0) * 86400.0 + raw.get("t", 0) + i * raw.get("every", 0)
    e.setdefault("event_time", to_rfc3339(t))
    e.setdefault("event_id", f"golden-{n}")
    e.setdefault("relay_id", "relay-1")
    if e["type"] == "delivery":  # no client: the relay delivers
        e.setdefault("queue_id", f"Q{n:06d}")
        e.setdefault("status", "bounced")
        return e
    e.setdefault("client_ip", "198.51.100.7")
    if e["type"] == "login":
        e.setdefault("success", True)
        e.setdefault("tls_protocol", "TLSv1.3")
        e.setdefault("sasl_mechanism", "PLAIN")
        if not e["success"]:
            e.setdefault("failure_reason", "bad_credentials")
    else:
        e.setdefault("sender", e["user"])
        e.setdefault("recipient_count", 1)
        e.setdefault("size", 2048)
    return e


def events(case: dict[str, Any]) -> list[Event]:
    start = parse_rfc3339(case.get("start", DEFAULT_START))
    out: list[Event] = []
    for raw in case["events"]:
        for i in range(raw.get("repeat", 1)):
            d = _fill(raw, start, len(out), i)
            out.append(decode_line(orjson.dumps(d)))
    return out


def run_case(case: dict[str, Any]) -> Outcome:
    config = case.get("config", {})
    params = build_core_params(Settings(**config))
    replayer = Replayer(params)
    out = Outcome()
    for ev in events(case):
        for res in replayer.feed(ev):
            out.findings.extend(res.findings)
            out.commands.extend(res.commands)
            out.alerts += len(res.alerts)
    return out


def _same(want: Any, got: Any) -> bool:
    if isinstance(want, dict):
        return isinstance(got, dict) and all(
            k in got and _same(v, got[k]) for k, v in want.items()
        )
    if isinstance(want, float) and isinstance(got, int | float):
        return math.isclose(want, got, rel_tol=0.01, abs_tol=0.5)
    return bool(want == got)


def mismatch(want: dict[str, Any], got_detector: str, got_subject: str,
             got_evidence: dict[str, Any], extra: dict[str, Any] | None = None) -> str | None:
    """None when `got` matches `want`, else why not."""
    if want.get("detector", got_detector) != got_detector:
        return f"detector {got_detector!r} != {want['detector']!r}"
    if want.get("subject", got_subject) != got_subject:
        return f"subject {got_subject!r} != {want['subject']!r}"
    for k, v in want.get("evidence", {}).items():
        if k not in got_evidence or not _same(v, got_evidence[k]):
            return f"evidence[{k!r}] = {got_evidence.get(k)!r}, want {v!r}"
    for k in want.get("evidence_keys", []):
        if k not in got_evidence:
            return f"evidence lacks {k!r}: has {sorted(got_evidence)}"
    for k, v in want.get("fields", {}).items():
        if extra is None or extra.get(k) != v:
            return f"{k} = {(extra or {}).get(k)!r}, want {v!r}"
    return None


def check_case(detector: str, case: dict[str, Any]) -> list[str]:
    """Problems with one case; empty when it passes."""
    got = run_case(case)
    problems: list[str] = []
    if case.get("silent"):
        for f in got.findings:
            problems.append(f"benign case, but {f.detector}: {f.summary}")
        for c in got.commands:
            problems.append(f"benign case, but command {c.action} {c.subject} by {c.detector}")
        return problems
    checked = set(case.get("check", [detector]))
    findings = [f for f in got.findings if f.detector in checked]
    want = case.get("expect", [])
    if len(findings) != len(want):
        problems.append(f"{len(findings)} findings of {sorted(checked)}, want {len(want)}: "
                        + "; ".join(f.summary for f in findings))
    for w, f in zip(want, findings, strict=False):
        why = mismatch(w, f.detector, f.subject, f.evidence)
        if why:
            problems.append(f"finding {f.summary!r}: {why}")
    if "expect_commands" in case:
        want_c = case["expect_commands"]
        if len(got.commands) != len(want_c):
            problems.append(f"{len(got.commands)} commands, want {len(want_c)}: "
                            + "; ".join(f"{c.action} {c.subject} by {c.detector}"
                                        for c in got.commands))
        for w, c in zip(want_c, got.commands, strict=False):
            extra = {"action": c.action, "subject_kind": c.subject_kind,
                     "expires": c.expires_at is not None}
            why = mismatch(w, c.detector, c.subject, c.evidence, extra)
            if why:
                problems.append(f"command {c.action} {c.subject} by {c.detector}: {why}")
    return problems
