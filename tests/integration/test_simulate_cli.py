"""`relayguard simulate --score` end to end on a small seeded fleet, as a user runs it: the
files it writes, the table it prints, and `simulate score DIR --json`. Structure only: today's
detection quality is what the next session improves, so no threshold is asserted here.
(No broker needed: the scorer replays through the core offline.)"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import orjson

from relayguard.roof.simulate.attacks import KINDS

SMALL = ["--seed", "3", "--users", "120", "--orgs", "25", "--warmup-days", "3",
         "--scored-days", "2", "--attacks", "12"]


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "relayguard", "simulate", *args],
                          capture_output=True, text=True, timeout=600)


def test_simulate_and_score_prints_the_table(tmp_path: Path) -> None:
    out = tmp_path / "sim"
    run = _run("--out", str(out), *SMALL, "--score", "--progress-every", "5000")
    assert run.returncode == 0, run.stdout + run.stderr
    for name in ("events.jsonl", "labels.json", "city.mmdb", "operator.toml"):
        assert (out / name).is_file(), name
    assert "... wrote" in run.stderr and "... replayed" in run.stderr  # progress on stderr
    text = run.stdout
    assert re.search(r"^wrote [\d,]+ events for 120 users in 25 organisations and 12 attacks",
                     run.stdout + run.stderr, re.M)
    assert re.search(r"^kind +attacks +caught +<=60s +alerted +median delay$", text, re.M)
    for kind in KINDS:
        assert re.search(rf"^{kind} +1 +[01] +[01] +[01] +(-|-?\d+ s)$", text, re.M), kind
    assert re.search(r"^all +12 +\d+ +\d+ +\d+$", text, re.M)
    assert re.search(r"^recall \d+\.\d%$", text, re.M)
    assert re.search(r"^recall within 60 s \d+\.\d%$", text, re.M)
    assert re.search(r"^false locks per benign user per day \d+\.\d{3}% \(\d+ user-days; "
                     r"user locks \d+\.\d{3}%, IP blocks refusing authenticated users "
                     r"\d+\.\d{3}%\)$", text, re.M)
    assert re.search(r"^false alerts per benign user per day \d+\.\d{3}% \(\d+ user-days\)$",
                     text, re.M)
    assert re.search(r"^benign users acted on: \d+", text, re.M)


def test_score_subcommand_json_matches_the_labels(tmp_path: Path) -> None:
    out = tmp_path / "sim"
    assert _run("--out", str(out), *SMALL, "--progress-every", "0").returncode == 0
    run = _run("score", str(out), "--operator", "--json", "--progress-every", "0")
    assert run.returncode == 0, run.stderr
    report = orjson.loads(run.stdout)
    labels = orjson.loads((out / "labels.json").read_bytes())
    assert report["config"] == "operator.toml"
    assert report["attacks"] == len(labels["attacks"]) == 12
    assert set(report["by_kind"]) == set(KINDS)
    assert report["events"] == labels["events"] and report["bad_lines"] == 0
    assert report["benign_users"] == sum(not u["victim"] for u in labels["users"].values())
    assert 0 <= report["recall_60s"] <= report["recall"] <= 1
    assert report["caught"] == sum(a["caught"] for a in report["attack_results"])
    for entry in report["benign_acted_on"]:
        assert not labels["users"][entry["user"]]["victim"]


def test_score_on_a_missing_run_says_what_to_do(tmp_path: Path) -> None:
    run = _run("score", str(tmp_path / "nothing"))
    assert run.returncode == 2
    assert "does not exist" in run.stderr and "relayguard simulate --out" in run.stderr
