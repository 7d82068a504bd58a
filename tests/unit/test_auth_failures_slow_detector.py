"""auth_failures_slow beyond its golden file: bounded state, once per window, late events."""

from __future__ import annotations

from relayguard.stream.detectors import auth_failures_slow as slow
from relayguard.stream.records import LoginEvent

T0 = 1_800_000_000.0
P = slow.Params()


def _login(t: float, ip: str, ok: bool) -> LoginEvent:
    return LoginEvent(f"e{t}", t, "r1", "v@o.example", ip, ok, "TLSv1.3", "PLAIN",
                      None if ok else "bad_credentials", "test", None, None)


def _run(events: list[LoginEvent]) -> tuple[slow.State, list[int]]:
    state, fired = slow.initial_state(), []
    for i, e in enumerate(events):
        state, found = slow.step(P, state, e)
        fired += [i] * len(found)
    return state, fired


def test_state_stays_bounded_under_a_flood_from_thousands_of_networks() -> None:
    events = [_login(T0 + i, f"10.{i % 250}.{i // 250}.1", ok=False) for i in range(3000)]
    events += [_login(T0 + 4000 + i, f"172.{i % 250}.0.1", ok=True) for i in range(100)]
    state, fired = _run(events)
    assert len(state.failures) <= slow.MAX_FAILURES_KEPT
    assert len(state.recent_ips) <= slow.MAX_IPS_KEPT
    assert len(state.familiar) <= slow.MAX_FAMILIAR_KEPT
    # the 8th failure fires, then nothing more within the 4 h window (the flood lasts < 1 h)
    assert fired == [P.max_failures - 1]


def test_fires_again_after_the_window_and_a_success_clears_only_its_network() -> None:
    guesses = [_login(T0 + 600 * i, f"10.{i % 4}.0.{i}", ok=False) for i in range(8)]
    state, fired = _run(guesses)
    assert fired == [7]
    # the owner gets in from one of the guessing networks (say, a shared carrier): its
    # failures go, the other three networks' stay
    state, _ = slow.step(P, state, _login(T0 + 5000, "10.0.0.99", ok=True))
    assert {n for n, _ in state.failures} == {"10.1.0.0/16", "10.2.0.0/16", "10.3.0.0/16"}
    later = T0 + 600 * 7 + P.window_seconds + 1
    again = [_login(later + 60 * i, f"10.{1 + i % 3}.0.{i}", ok=False) for i in range(8)]
    fired_again = []
    for i, e in enumerate(again):
        state, found = slow.step(P, state, e)
        fired_again += [i] * len(found)
    assert fired_again == [7]  # the old failures fell out of the window: 8 new ones needed
    # a failure from the network the owner got in from is not counted
    before = len(state.failures)
    state, found = slow.step(P, state, _login(later + 900, "10.0.5.5", ok=False))
    assert len(state.failures) == before and found == []
