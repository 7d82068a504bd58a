"""The engine end to end without Kafka: dedupe, lateness, detect -> decide, idempotent locks."""

from __future__ import annotations

from collections.abc import Sequence

from relayguard.stream import engine
from relayguard.stream.detectors import registry
from relayguard.stream.policy import DetectorPolicy, PolicyParams
from relayguard.stream.records import GeoPoint, LoginEvent, SendEvent

T0 = 1_796_000_000.0


def params(**policy: DetectorPolicy) -> engine.CoreParams:
    enabled = tuple(engine.EnabledDetector(s, s.params_type()) for s in registry.ALL
                    if s.name in ("volume", "auth_failures", "impossible_travel"))
    base = {"volume": DetectorPolicy("throttle", "high", ttl_seconds=3600),
            "impossible_travel": DetectorPolicy("lock", "high"),
            "auth_failures": DetectorPolicy("throttle", "medium", ttl_seconds=600)}
    return engine.CoreParams(enabled, PolicyParams({**base, **policy}))


def send(i: int, t: float, user: str = "mallory", rcpts: int = 1) -> SendEvent:
    return SendEvent(f"s{i}", t, "r1", user, "192.0.2.1", f"{user}@x.test", rcpts, 1000)


def run(p: engine.CoreParams, events: Sequence[SendEvent | LoginEvent],
        key: str = "mallory") -> list[engine.StepResult]:
    state = None
    results: list[engine.StepResult] = []
    for e in events:
        r = engine.step(p, "user", key, state, e)
        state = r.state
        results.append(r)
    return results


def test_burst_over_limit_gives_exactly_one_lock() -> None:
    results = run(params(), [send(i, T0 + i) for i in range(40)])
    commands = [c for r in results for c in r.commands]
    assert len(commands) == 1
    cmd = commands[0]
    assert (cmd.subject, cmd.action, cmd.detector) == ("mallory", "lock", "volume")
    assert cmd.expires_at == cmd.issued_at + 3600
    assert cmd.evidence["limit_name"] == "messages_1m" and cmd.evidence["count"] == 11


def test_under_limit_stays_silent() -> None:
    results = run(params(), [send(i, T0 + i * 10) for i in range(6)])
    assert not any(r.findings or r.commands or r.alerts for r in results)


def test_duplicate_event_ids_are_dropped() -> None:
    e = send(1, T0)
    first, second = run(params(), [e, e])
    assert first.outcome == "processed" and second.outcome == "duplicate"


def test_events_older_than_grace_are_refused() -> None:
    results = run(params(), [send(1, T0), send(2, T0 - 301), send(3, T0 - 299)])
    assert [r.outcome for r in results] == ["processed", "too_late", "processed"]
    assert results[-1].state.late_events == 1


def test_throttle_expiry_unlocks_then_relocks_on_new_burst() -> None:
    burst1 = [send(i, T0 + i) for i in range(12)]
    burst2 = [send(100 + i, T0 + 4000 + i) for i in range(12)]
    results = run(params(), burst1 + burst2)
    actions = [c.action for r in results for c in r.commands]
    assert actions == ["lock", "unlock", "lock"]
    versions = [c.version for r in results for c in r.commands]
    assert versions == sorted(versions) and len(set(versions)) == 3


def test_impossible_travel_locks_with_both_places() -> None:
    berlin = GeoPoint(52.52, 13.405, 20, "DE", "Berlin")
    sydney = GeoPoint(-33.87, 151.21, 20, "AU", "Sydney")
    a = LoginEvent("l1", T0, "r1", "carol", "192.0.2.20", True, "TLSv1.3", geo=berlin)
    b = LoginEvent("l2", T0 + 720, "r2", "carol", "198.51.100.7", True, "TLSv1.3", geo=sydney)
    results = run(params(), [a, b], key="carol")
    (cmd,) = [c for r in results for c in r.commands]
    assert cmd.detector == "impossible_travel" and cmd.expires_at is None
    assert cmd.evidence["from"]["city"] == "Berlin" and cmd.evidence["to"]["city"] == "Sydney"
    assert cmd.evidence["speed_kmh"] > 900


def test_dry_run_marks_commands() -> None:
    p = params()
    p = engine.CoreParams(p.detectors, PolicyParams(p.policy.detectors, dry_run=True))
    results = run(p, [send(i, T0 + i) for i in range(12)])
    (cmd,) = [c for r in results for c in r.commands]
    assert cmd.dry_run


def test_dedupe_remembers_the_last_ids_only() -> None:
    p = params()
    p = engine.CoreParams(p.detectors, p.policy, dedupe_ids=4)
    events = [send(i, T0 + i * 10) for i in range(6)]
    results = run(p, [*events, events[5], events[1]])
    assert [r.outcome for r in results[-2:]] == ["duplicate", "processed"]  # e1 was forgotten
    assert len(results[-1].state.recent_event_ids) == 4 * 8


def test_digest_match_must_be_aligned() -> None:
    d = bytes(range(16))  # two digests: 0..7 and 8..15
    assert engine._seen(d, bytes(range(8, 16)))
    assert not engine._seen(d, bytes(range(4, 12)))  # straddles both


def test_source_position_at_or_below_last_applied_is_a_redelivery() -> None:
    p = params()
    s = None
    for off in (5, 6, 7):
        s = engine.step(p, "user", "mallory", s, send(off, 1000.0 + off), (0, off)).state
    assert s is not None and s.applied == ((0, 7),) and s.events_applied == 3
    for off in (5, 7):  # the very same records again, new ids or not: no effect
        res = engine.step(p, "user", "mallory", s, send(100 + off, 1010.0), (0, off))
        assert res.outcome == "redelivered" and res.state is s
    # Another partition's offsets are tracked on their own (after a partition-count change).
    res = engine.step(p, "user", "mallory", s, send(200, 1011.0), (1, 0))
    assert res.outcome == "processed" and res.state.applied == ((0, 7), (1, 0))


def test_positions_stay_bounded_by_the_partition_count() -> None:
    p = params()
    s = None
    for i in range(500):
        s = engine.step(p, "user", "mallory", s, send(i, 1000.0 + i), (i % 4, i)).state
    assert s is not None and len(s.applied) == 4 and s.events_applied == 500


def test_duplicate_id_still_records_its_position() -> None:
    p = params()
    s = engine.step(p, "user", "mallory", None, send(1, 1000.0), (0, 1)).state
    res = engine.step(p, "user", "mallory", s, send(1, 1000.0), (0, 2))  # relay resend
    assert res.outcome == "duplicate" and res.state.applied == ((0, 2),)
    assert res.state.events_applied == 1
