"""deploy/prometheus/ and deploy/grafana/: the alert rules pass `promtool check rules` and their
own `promtool test rules` cases; the dashboard is well-formed Grafana JSON whose queries are
valid PromQL (checked by promtool) over series relayguard declares. That those series really
appear on a worker's and a hook's /metrics is shown in tests/integration/test_metrics.py."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from relayguard.agents import metrics as worker_metrics
from tests.fixtures.promtool import promtool

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "deploy/prometheus/relayguard-alerts.yml"
RULE_TESTS = ROOT / "deploy/prometheus/relayguard-alerts.test.yml"
SCRAPE_CONFIG = ROOT / "deploy/prometheus/prometheus.yml"
DASHBOARD = ROOT / "deploy/grafana/relayguard.json"
SERIES = re.compile(r"\brelayguard_(?:worker|hook)_[a-z_]+")
# Grafana's own variables, replaced by what Grafana would put there before PromQL sees them
GRAFANA_VARS = {"$__rate_interval": "5m", "$__interval": "1m", "$__range": "1h"}


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([promtool(), *args], capture_output=True, text=True, timeout=120,
                          check=False)


def test_promtool_check_rules() -> None:
    proc = _run("check", "rules", str(RULES))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SUCCESS" in proc.stdout


def test_alert_rules_fire_when_they_should_and_only_then() -> None:
    proc = _run("test", "rules", str(RULE_TESTS))
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_example_scrape_config_is_valid() -> None:
    proc = _run("check", "config", str(SCRAPE_CONFIG))
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_promtool_catches_a_broken_rule(tmp_path: Path) -> None:
    """The checks above must be able to fail: a rule with bad PromQL is refused."""
    bad = tmp_path / "bad.yml"
    bad.write_text(RULES.read_text().replace("deriv(relayguard_worker_consumer_lag[10m])",
                                             "deriv(relayguard_worker_consumer_lag[10m)", 1))
    assert _run("check", "rules", str(bad)).returncode != 0


def _board() -> dict[str, Any]:
    board: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return board


def _queries() -> list[tuple[int, str, str]]:
    return [(p["id"], t["refId"], t["expr"]) for p in _board()["panels"]
            for t in p.get("targets", [])]


def test_dashboard_structure() -> None:
    board = _board()
    assert board["title"] and board["uid"] and isinstance(board["schemaVersion"], int)
    ds_vars = [v for v in board["templating"]["list"] if v["type"] == "datasource"]
    assert [v["query"] for v in ds_vars] == ["prometheus"]
    ids = [p["id"] for p in board["panels"]]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    cells: set[tuple[int, int]] = set()
    for p in board["panels"]:
        g = p["gridPos"]
        assert all(isinstance(g[k], int) for k in ("x", "y", "w", "h")), p["title"]
        assert g["x"] >= 0 and g["w"] > 0 and g["h"] > 0 and g["x"] + g["w"] <= 24, p["title"]
        mine = {(x, y) for x in range(g["x"], g["x"] + g["w"])
                for y in range(g["y"], g["y"] + g["h"])}
        assert not cells & mine, f"panel {p['title']!r} overlaps another"
        cells |= mine
        if p["type"] == "row":
            continue
        assert p["type"] in {"timeseries", "stat"}, p["type"]
        assert p["datasource"]["uid"] == "${" + ds_vars[0]["name"] + "}"
        refs = [t["refId"] for t in p["targets"]]
        assert refs and len(refs) == len(set(refs)), p["title"]
        assert all(t["expr"].strip() for t in p["targets"]), p["title"]


def test_dashboard_queries_are_valid_promql(tmp_path: Path) -> None:
    """promtool parses each panel query (as a recording rule) after Grafana's substitutions."""
    rules = []
    for panel, ref, expr in _queries():
        for var, val in GRAFANA_VARS.items():
            expr = expr.replace(var, val)
        assert "$" not in expr, f"panel {panel}{ref}: unknown variable in {expr}"
        rules.append({"record": f"dashboard:panel_{panel}_{ref}", "expr": expr})
    path = tmp_path / "dashboard-queries.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    proc = _run("check", "rules", str(path))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"{len(rules)} rules found" in proc.stdout


def _declared_worker_series() -> set[str]:
    p = worker_metrics.PREFIX
    out = {p + n for n in worker_metrics.HELP} | {p + n for n in worker_metrics.GAUGES}
    for n in worker_metrics.HISTOGRAMS:
        out |= {p + n + s for s in ("_bucket", "_count", "_sum")}
    return out


@pytest.mark.parametrize("source", ["dashboard", "rules"])
def test_deploy_names_only_declared_worker_series(source: str) -> None:
    text = DASHBOARD.read_text() if source == "dashboard" else RULES.read_text()
    named = {n for n in SERIES.findall(text) if n.startswith(worker_metrics.PREFIX)}
    assert named, f"the {source} names no worker series"
    assert named <= _declared_worker_series(), sorted(named - _declared_worker_series())
