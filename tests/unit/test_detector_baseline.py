"""Learned baseline: EWMA per hour slot, closed-form decay over quiet hours, learning period."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from relayguard.stream.detectors import volume_baseline as vb
from relayguard.stream.records import SendEvent

HOUR = 3600.0
T0 = 1_796_000_000.0 - (1_796_000_000.0 % HOUR)  # on an hour boundary


def send(i: int, t: float, rcpts: int) -> SendEvent:
    return SendEvent(f"s{i}", t, "r1", "u@x", "192.0.2.1", "u@x", rcpts, 100)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 500), st.integers(0, 60)), min_size=1, max_size=30))
def test_closed_form_decay_equals_folding_every_hour(steps: list[tuple[int, int]]) -> None:
    """Folding a zero for every skipped hour, one by one, gives the same profile as the
    closed form used for gaps."""
    p = vb.Params(learning_seconds=10**9)  # never learned: nothing is capped
    fast = vb.initial_state()
    slow = vb.initial_state()
    hour = 0
    for i, (gap, amount) in enumerate(steps):
        hour += gap
        t = T0 + hour * HOUR
        fast, _ = vb.step(p, fast, send(i, t, amount))
        # slow: the same traffic plus explicit zero-recipient sends in every skipped hour
        if slow.first_seen is not None:
            for h in range(slow.hour + 1, hour):
                slow, _ = vb.step(p, slow, send(10_000 + h, T0 + h * HOUR, 0))
        slow, _ = vb.step(p, slow, send(i, t, amount))
    assert len(fast.profile) == 24
    for a, b in zip(fast.profile, slow.profile, strict=True):
        assert abs(a - b) < 0.01 * max(1.0, b)


def test_brand_new_user_never_judged() -> None:
    p = vb.Params()
    s = vb.initial_state()
    for i in range(500):
        s, f = vb.step(p, s, send(i, T0 + i * 60, 50))
        assert f == []


def test_spike_teaches_at_most_the_threshold() -> None:
    p = vb.Params()
    s = vb.initial_state()
    for d in range(8):
        s, _ = vb.step(p, s, send(d, T0 + d * 86400, 10))
    s, f = vb.step(p, s, send(100, T0 + 8 * 86400, 5000))
    assert len(f) == 1 and f[0].evidence["count"] == 5000
    s, _ = vb.step(p, s, send(101, T0 + 9 * 86400, 10))  # rolls the spike hour in
    slot = int((T0 // HOUR) % 24)
    assert s.profile[slot] < 0.3 * 100 + 0.7 * 10  # capped at 5 x 20, not 5000


def test_hour_of_week_profile() -> None:
    p = vb.Params(profile="hour_of_week")
    s, _ = vb.step(p, vb.initial_state(), send(0, T0, 1))
    assert len(s.profile) == 168
