"""agents/ack_latency.py's AckTracker: first and last relay ack per command, missing acks."""

from __future__ import annotations

import pytest

from relayguard.agents.ack_latency import AckTracker
from relayguard.agents.metrics import Metrics
from relayguard.stream.records import LockAck

T0 = 1_800_000_000.0


def _ack(relay: str, command: str, at: float, action: str = "lock") -> LockAck:
    return LockAck(relay, command, "alice", "user", action, 1, at)  # type: ignore[arg-type]


def _tracker(wait: float = 60.0) -> tuple[AckTracker, Metrics]:
    m = Metrics()
    return AckTracker(m, wait=wait, relay_memory=600.0), m


def _sum(m: Metrics, ack: str) -> float:
    for fam in m.histograms["lock_to_ack_seconds"].collect():
        for s in fam.samples:
            if s.name.endswith("_sum") and s.labels == {"action": "lock", "ack": ack}:
                return s.value
    return 0.0


def test_one_relay_is_first_and_last() -> None:
    t, m = _tracker()
    t.command("c1", "lock", T0, T0)
    t.ack(_ack("r1", "c1", T0 + 0.4), T0 + 0.5)
    assert m.count("lock_to_ack_seconds", action="lock", ack="first") == 1
    assert m.count("lock_to_ack_seconds", action="lock", ack="last") == 1
    assert _sum(m, "first") == _sum(m, "last") == pytest.approx(0.4)
    assert not t.pending


def test_last_waits_for_every_relay_seen_recently_and_takes_the_slowest() -> None:
    t, m = _tracker()
    t.ack(_ack("r1", "old", T0 - 100), T0)  # both relays acked something before
    t.ack(_ack("r2", "old", T0 - 90), T0)
    t.command("c1", "lock", T0, T0)
    t.ack(_ack("r2", "c1", T0 + 2.0), T0 + 2)
    t.ack(_ack("r2", "c1", T0 + 2.5), T0 + 3)  # a repeat (relay restart) changes nothing
    assert m.count("lock_to_ack_seconds", action="lock", ack="first") == 1
    assert m.count("lock_to_ack_seconds", action="lock", ack="last") == 0
    t.ack(_ack("r1", "c1", T0 + 1.0), T0 + 4)  # applied earlier, read later
    assert m.count("lock_to_ack_seconds", action="lock", ack="last") == 1
    assert _sum(m, "first") == _sum(m, "last") == 2.0


def test_a_relay_that_does_not_ack_is_counted_missing_after_the_wait() -> None:
    t, m = _tracker(wait=60)
    t.ack(_ack("r1", "old", T0 - 10), T0)
    t.ack(_ack("r2", "old", T0 - 10), T0)
    t.command("c1", "lock", T0, T0)
    t.ack(_ack("r1", "c1", T0 + 1), T0 + 1)
    t.sweep(T0 + 30)
    assert m.value("lock_acks_missing_total", relay="r2") == 0
    assert m.gauge("lock_commands_awaiting_acks") == 1 and m.gauge("relays_seen") == 2
    t.sweep(T0 + 61)
    assert m.value("lock_acks_missing_total", relay="r2") == 1
    assert m.value("lock_acks_missing_total", relay="r1") == 0
    assert m.count("lock_to_ack_seconds", action="lock", ack="last") == 0
    assert m.gauge("lock_commands_awaiting_acks") == 0


def test_an_ack_read_before_its_command_still_counts() -> None:
    t, m = _tracker()
    t.ack(_ack("r1", "c1", T0 + 0.2), T0 + 0.3)
    t.command("c1", "lock", T0, T0 + 0.4)
    assert m.count("lock_to_ack_seconds", action="lock", ack="first") == 1
    assert _sum(m, "first") == pytest.approx(0.2)


def test_history_read_on_catch_up_is_not_timed_and_old_relays_are_forgotten() -> None:
    t, m = _tracker(wait=60)
    t.command("c-old", "lock", T0 - 3600, T0)  # published an hour ago
    assert not t.pending
    t.ack(_ack("gone", "x", T0 - 700), T0)  # last ack beyond the relay memory
    t.sweep(T0)
    assert "gone" not in t.relays and m.gauge("relays_seen") == 0


def test_clock_skew_never_gives_negative_times() -> None:
    t, m = _tracker()
    t.command("c1", "unlock", T0, T0)
    t.ack(_ack("r1", "c1", T0 - 5, action="unlock"), T0)  # relay clock behind
    assert m.count("lock_to_ack_seconds", action="unlock", ack="first") == 1
    for fam in m.histograms["lock_to_ack_seconds"].collect():
        assert all(s.value >= 0 for s in fam.samples)
