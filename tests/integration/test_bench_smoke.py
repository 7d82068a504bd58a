"""Each benchmark script runs with tiny sizes and prints its figures (no timing is checked).

The benches that start their own Kafka broker (worker, restart, kafka_security) are left out:
a broker start alone would take most of this file's budget; `make bench` runs them.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

CASES = [
    (["core_bench.py", "--events", "600", "--users", "30", "--state-users", "50"],
     [r"all detectors +[\d,]+ ev/s",
      r"all, 50 users +[\d,]+ ev/s   user state mean +[\d,]+ B.*format 1: user mean"]),
    (["log_parser_bench.py", "--lines", "3000", "--repeat", "1", "--no-fail2ban"],
     [r"bare two-regex loop +: +[\d,]+ lines/s",
      r"LogParser failed logins +: .*postfix-log [\d,]+"]),
    (["policy_server_bench.py", "--connections", "1,2", "--requests", "60",
      "--only", "protocol,relayguard"],
     [r"protocol +1 conn +[\d,]+ req/s", r"relayguard +2 conn +[\d,]+ req/s .*client CPU"]),
    (["state_codec_bench.py", "--users", "20", "--events", "200", "--rounds", "1"],
     [r"pickle +\d+ +[\d.]+", r"format 1 +\d+ +[\d.]+ +[\d.]+ +- ",
      r"format 2 +\d+ +[\d.]+ +[\d.]+ +[\d.]+ \(largest"]),
    (["signing_bench.py", "--records", "50"], [r"decode, verified +[\d.]+ us/record"]),
]


@pytest.mark.parametrize(("argv", "expected"), CASES, ids=[c[0][0] for c in CASES])
def test_bench_prints_its_figures(argv: list[str], expected: list[str]) -> None:
    out = subprocess.run([sys.executable, str(ROOT / "bench" / argv[0]), *argv[1:]],
                         capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert out.returncode == 0, out.stderr[-3000:]
    for pattern in expected:
        assert re.search(pattern, out.stdout), f"{pattern!r} not in:\n{out.stdout}"


def test_profile_summary_reads_collapsed_stacks(tmp_path: Path) -> None:
    raw = tmp_path / "p.txt"
    raw.write_text("main (x.py:1);step (relayguard/stream/engine.py:9) 30\n"
                   "main (x.py:1);write (asyncio/selector_events.py:5) 10\n")
    out = subprocess.run([sys.executable, str(ROOT / "bench" / "profile_summary.py"), str(raw)],
                         capture_output=True, text=True, timeout=30, check=True).stdout
    assert "40 samples" in out
    assert re.search(r"75\.0%  relayguard", out)
    assert re.search(r"25\.0%  asyncio", out)
