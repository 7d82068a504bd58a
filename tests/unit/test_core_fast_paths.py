"""The core's fast paths (issue 12 item 2) against the plain code they short-cut: the engine's
per-event-class skip list, `evolve` against `dataclasses.replace`, `windows.add_total`, and the
common-case exits of `touch` / `count_live`. Each fast path must give exactly what the slow one
gives, on random traffic with late events, repeats and many keys."""

from __future__ import annotations

import dataclasses
import random
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from relayguard.foundation.core_params import build_core_params
from relayguard.foundation.settings import Settings
from relayguard.stream import engine, policy, windows
from relayguard.stream.detector import EVERY_EVENT, event_class
from relayguard.stream.detectors import common, registry
from relayguard.stream.evolve import evolve
from relayguard.stream.records import DeliveryEvent, Event, GeoPoint, LoginEvent, SendEvent

T0 = 1_796_000_000.0
PLACES = [GeoPoint(52.52, 13.405, 20, "DE", "Berlin"), GeoPoint(40.713, -74.006, 10, "US", None),
          GeoPoint(35.68, 139.69, 20, "JP", None)]


def traffic(seed: int, n: int = 3000) -> list[Event]:
    """Logins (ok, failed, with and without TLS and geo), sends with recipient domains and
    foreign senders, bounces; a few users and IPs so keys repeat; some events late."""
    rnd = random.Random(seed)
    users = [f"u{i}@ex{i % 3}.test" for i in range(12)]
    ips = [f"198.51.{i}.{j}" for i in range(4) for j in (1, 2)] + ["2001:db8::1", "192.0.2.9"]
    out: list[Event] = []
    t = T0
    for k in range(n):
        t += rnd.expovariate(1 / 90)
        at = t - rnd.uniform(0, 400) if rnd.random() < 0.05 else t  # late, some beyond grace
        eid = f"r1:{k}"
        user, ip = rnd.choice(users), rnd.choice(ips)
        r = rnd.random()
        if r < 0.45:
            domains = tuple(sorted({f"d{rnd.randrange(40)}.test"
                                    for _ in range(rnd.randint(0, 6))}))
            sender = user if rnd.random() < 0.8 else f"x{rnd.randrange(5)}@other.test"
            out.append(SendEvent(eid, at, "r1", user, ip, sender, rnd.randint(1, 60), 4000,
                                 "TLSv1.3" if rnd.random() < 0.9 else None,
                                 recipient_domains=domains,
                                 recipient_domain_count=len(domains)))
        elif r < 0.5:
            out.append(DeliveryEvent(eid, at, "r1", user, "Q1",
                                     rnd.choice(("bounced", "deferred", "expired", "sent")),
                                     recipient_domain="d1.test", dsn="5.1.1"))
        else:
            ok = rnd.random() < 0.6
            out.append(LoginEvent(eid, at, "r1", user if rnd.random() < 0.97 else None, ip, ok,
                                  "TLSv1.3" if rnd.random() < 0.8 else None,
                                  rnd.choice(("PLAIN", "LOGIN", None)),
                                  None if ok else rnd.choice(("bad_credentials", "other",
                                                              "unknown_user")),
                                  geo=rnd.choice(PLACES) if rnd.random() < 0.8 else None,
                                  password_hash=None if ok else f"h{rnd.randrange(8)}"))
    return out


def _all_reacting(params: engine.CoreParams) -> engine.CoreParams:
    """The same detectors with no skip list: every step called for every event."""
    dets = tuple(engine.EnabledDetector(dataclasses.replace(d.spec, reacts_to=EVERY_EVENT),
                                        d.params) for d in params.detectors)
    return dataclasses.replace(params, detectors=dets)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_skipping_detectors_an_event_cannot_change_changes_nothing(seed: int) -> None:
    fast = build_core_params(Settings())
    slow = _all_reacting(fast)
    assert any(d.spec.reacts_to != EVERY_EVENT for d in fast.detectors)
    states: dict[str, dict[tuple[str, str], engine.KeyState]] = {"fast": {}, "slow": {}}
    for ev in traffic(seed):
        for kind in ("user", "ip"):
            key = ev.user if kind == "user" else getattr(ev, "client_ip", None)
            if key is None:
                continue
            got = {}
            for name, params in (("fast", fast), ("slow", slow)):
                res = engine.step(params, kind, key, states[name].get((kind, key)), ev)
                states[name][kind, key] = res.state
                got[name] = (res.state, res.outcome, res.findings, res.commands, res.alerts)
            assert got["fast"] == got["slow"], (kind, key, ev)


@pytest.mark.parametrize("seed", [4, 5])
def test_every_detector_leaves_its_state_alone_for_events_it_does_not_react_to(
        seed: int) -> None:
    params = build_core_params(Settings())
    for d in params.detectors:
        if d.spec.reacts_to == EVERY_EVENT:
            continue
        states: dict[str | None, Any] = {}
        skipped = 0
        for ev in traffic(seed):
            key = ev.user if d.spec.key_kind == "user" else getattr(ev, "client_ip", None)
            state = states.get(key, d.spec.initial_state())
            new, found = d.spec.step(d.params, state, ev)
            if event_class(ev) not in d.spec.reacts_to:
                assert new is state and found == [], (d.spec.name, ev)
                skipped += 1
            states[key] = new
        assert skipped > 0, d.spec.name


def _state_classes() -> list[type]:
    out: list[type] = [engine.KeyState, policy.LockState]
    for spec in registry.ALL:
        out.append(type(spec.initial_state()))
    return out


@pytest.mark.parametrize("cls", _state_classes(), ids=lambda c: f"{c.__module__}.{c.__name__}")
def test_evolve_is_dataclasses_replace(cls: type) -> None:
    obj = cls()
    for f in dataclasses.fields(cls):
        value = getattr(obj, f.name)
        other = (value + 1) if isinstance(value, int | float) and not isinstance(value, bool) \
            else (not value) if isinstance(value, bool) else value
        assert evolve(obj, **{f.name: other}) == dataclasses.replace(obj, **{f.name: other})
    assert evolve(obj) == obj and evolve(obj) is not obj
    with pytest.raises(TypeError):
        evolve(obj, no_such_field=1)


def test_evolve_refuses_classes_it_cannot_copy_exactly() -> None:
    @dataclasses.dataclass(frozen=True)
    class Checked:
        x: int = 0

        def __post_init__(self) -> None:
            if self.x < 0:
                raise ValueError("x")

    with pytest.raises(TypeError):
        evolve(Checked(), x=1)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from([1.0, 5.0, 60.0, 300.0]), st.integers(1, 24),
       st.lists(st.tuples(st.floats(0, 2000), st.floats(0, 400), st.integers(0, 9)),
                min_size=1, max_size=40))
def test_add_total_is_add_then_total(bucket: float, n: int,
                                     steps: list[tuple[float, float, int]]) -> None:
    spec = windows.WindowSpec(bucket * n, bucket)
    a: windows.Buckets = ()
    b: windows.Buckets = ()
    now = T0
    for gap, late, amount in steps:
        now += gap
        t = now - late
        a = windows.add(a, spec, t, amount, now)
        b, count = windows.add_total(b, spec, t, amount, now)
        assert b == a and count == windows.total(a, spec, now)


def _touch_reference(recent: common.Recent, thing: str, t: float, now: float, window: float,
                     cap: int) -> common.Recent:
    """`common.touch` as it was before its fast path (the loop alone)."""
    horizon = now - window
    seen = t
    kept: list[tuple[str, float]] = []
    for k, s in recent:
        if k == thing:
            seen = max(seen, s)
        elif s >= horizon:
            kept.append((k, s))
    if seen >= horizon:
        if kept and seen < kept[-1][1]:
            kept.append((thing, seen))
            kept.sort(key=lambda ks: ks[1])
        else:
            kept.append((thing, seen))
    return tuple(kept[-cap:])


@settings(max_examples=400, deadline=None)
@given(st.lists(st.tuples(st.sampled_from("abcdef"), st.floats(0, 300), st.floats(0, 200)),
                min_size=1, max_size=60),
       st.floats(10, 900), st.integers(1, 6))
def test_touch_and_count_live_fast_paths(steps: list[tuple[str, float, float]], window: float,
                                         cap: int) -> None:
    fast: common.Recent = ()
    slow: common.Recent = ()
    now = T0
    for thing, gap, late in steps:
        now += gap
        t = now - late
        fast = common.touch(fast, thing, t, now, window, cap)
        slow = _touch_reference(slow, thing, t, now, window, cap)
        assert fast == slow
        for w in (window / 3, window, window * 2):
            assert common.count_live(fast, now, w) == sum(1 for _, s in fast if s >= now - w)
