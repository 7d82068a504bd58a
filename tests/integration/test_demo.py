"""The README's main command: `relayguard demo` starts its own broker, worker and relay lock
followers, plays the scripted fleet, locks exactly the three attackers (exit code 0), and ends
with a summary table giving each attack's time to lock and to the relays' acks."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

pytestmark = pytest.mark.integration

# | story | user | verdict | detector | to lock | to first ack | to all acks |
ROW = re.compile(r"^\|\s*(?P<story>[^|]+?)\s*\|\s*(?P<user>\S+)\s*\|\s*(?P<verdict>\S+)\s*\|"
                 r"\s*(?P<detector>\S+)\s*\|\s*(?P<lock>\S+)\s*\|\s*(?P<first>\S+)\s*\|"
                 r"\s*(?P<all>\S+)\s*\|$")


def _summary_rows(out: str) -> dict[str, dict[str, str]]:
    assert "summary per injected attack" in out, out
    table = out[out.index("summary per injected attack"):]
    rows = {}
    for line in table.splitlines():
        m = ROW.match(line.strip())
        if m and m["user"] != "user":
            rows[m["user"]] = m.groupdict()
    return rows


def _seconds(cell: str) -> float:
    assert re.fullmatch(r"\d+\.\d\ds", cell), f"not a time: {cell!r}"
    return float(cell[:-1])


def _check_row(row: dict[str, str], detector: str | None) -> None:
    assert row["verdict"] == "locked", row
    if detector is not None:
        assert row["detector"] == detector, row
    to_lock, first, last = (_seconds(row[k]) for k in ("lock", "first", "all"))
    assert first >= to_lock and last >= first, row  # a relay acks what was published


def test_demo_locks_the_scripted_attacks(kafka_bootstrap: str) -> None:
    # kafka_bootstrap: the session has fetched the broker jars; the demo runs its own broker.
    run = subprocess.run([sys.executable, "-m", "relayguard", "demo", "--timeout", "90"],
                         capture_output=True, text=True, timeout=300)
    out = run.stdout + run.stderr
    assert run.returncode == 0, out
    rows = _summary_rows(run.stdout)
    expected = {"eve@example.com": "auth_failures", "carol@example.com": "impossible_travel",
                "frank@example.com": "volume"}
    assert set(rows) == set(expected), run.stdout
    for user, detector in expected.items():
        _check_row(rows[user], detector)
    for user in ("ana@example.com", "ben@example.com", "dana@example.com"):
        assert f"left alone  {user}" in out
    assert "LOCK  carol@example.com    until unlocked   [impossible_travel]" in out
    assert "3 relays follow the lock topic: relay-fra-1, relay-ams-2, relay-lon-3" in out


def test_demo_follow_keeps_locking_attacks_and_spares_staff(kafka_bootstrap: str) -> None:
    run = subprocess.run([sys.executable, "-m", "relayguard", "demo", "--follow",
                          "--duration", "30"], capture_output=True, text=True, timeout=300)
    out = run.stdout + run.stderr
    assert run.returncode == 0, out
    assert "attack #1: spam burst on victim000@example.com" in out
    assert "LOCK  victim000@example.com" in out
    assert "LOCK  staff" not in out, out  # the steady traffic stays under every limit
    rows = _summary_rows(run.stdout)
    assert "victim000@example.com" in rows and len(rows) >= 4, run.stdout
    for row in rows.values():
        _check_row(row, None)
