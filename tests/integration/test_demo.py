"""The README's main command: `relayguard demo` starts its own broker and worker, plays the
scripted fleet, and locks exactly the three attackers (exit code 0)."""

from __future__ import annotations

import subprocess
import sys

import pytest

pytestmark = pytest.mark.integration


def test_demo_locks_the_scripted_attacks(kafka_bootstrap: str) -> None:
    # kafka_bootstrap: the session has fetched the broker jars; the demo runs its own broker.
    run = subprocess.run([sys.executable, "-m", "relayguard", "demo", "--timeout", "90"],
                         capture_output=True, text=True, timeout=300)
    out = run.stdout + run.stderr
    assert run.returncode == 0, out
    for user in ("eve@example.com", "carol@example.com", "frank@example.com"):
        assert f"locked  {user}" in out
    for user in ("ana@example.com", "ben@example.com", "dana@example.com"):
        assert f"left alone  {user}" in out
    assert "LOCK  carol@example.com    until unlocked   [impossible_travel]" in out


def test_demo_follow_keeps_locking_attacks_and_spares_staff(kafka_bootstrap: str) -> None:
    run = subprocess.run([sys.executable, "-m", "relayguard", "demo", "--follow",
                          "--duration", "30"], capture_output=True, text=True, timeout=300)
    out = run.stdout + run.stderr
    assert run.returncode == 0, out
    assert "attack #1: spam burst on victim000@example.com" in out
    assert "LOCK  victim000@example.com" in out
    assert "LOCK  staff" not in out, out  # the steady traffic stays under every limit
