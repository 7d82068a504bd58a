"""Property tests for the arithmetic every detector stands on: bucketed windows and travel math."""

from __future__ import annotations

import math

from hypothesis import given, settings
from hypothesis import strategies as st

from relayguard.stream import geo_math, windows
from relayguard.stream.detectors.common import touch

# (gap since previous event's time, lateness behind the watermark) pairs, amounts
GRACE = 300.0


@st.composite
def window_and_events(draw: st.DrawFn) -> tuple[windows.WindowSpec, list[tuple[float, int]]]:
    bucket = draw(st.sampled_from([1.0, 5.0, 30.0, 60.0, 300.0]))
    spec = windows.WindowSpec(bucket * draw(st.integers(1, 24)), bucket)
    t = 1_796_000_000.0 + draw(st.floats(0, 10_000))
    out: list[tuple[float, int]] = []
    watermark = t
    for _ in range(draw(st.integers(1, 60))):
        watermark += draw(st.floats(0, 2 * spec.length))
        late = draw(st.one_of(st.just(0.0), st.floats(0, 1.5 * GRACE)))
        out.append((watermark - late, draw(st.integers(1, 50))))
    return spec, out


@settings(max_examples=300, deadline=None)
@given(window_and_events())
def test_window_total_equals_brute_force_count(case: tuple[windows.WindowSpec,
                                                            list[tuple[float, int]]]) -> None:
    spec, events = case
    buckets: windows.Buckets = ()
    accepted: list[tuple[float, int]] = []
    watermark = -math.inf
    for t, amount in events:
        if windows.is_too_late(t, watermark, GRACE):
            continue  # the engine refuses these before any detector sees them
        watermark = max(watermark, t)
        buckets = windows.add(buckets, spec, t, amount, watermark)
        accepted.append((t, amount))
        # Exact for the bucket-aligned window the detectors use...
        first = spec.index(watermark) - spec.bucket_count + 1
        aligned = sum(a for s, a in accepted if spec.index(s) >= first)
        assert windows.total(buckets, spec, watermark) == aligned
        # ...which is never wider than `length` and never narrower than `length - bucket`.
        wide = sum(a for s, a in accepted if s > watermark - spec.length - 1e-6)
        narrow = sum(a for s, a in accepted if s > watermark - spec.length + spec.bucket + 1e-6)
        assert narrow <= aligned <= wide
        assert len(buckets) <= spec.bucket_count  # bounded whatever the traffic


lat = st.floats(-90, 90, allow_nan=False)
lon = st.floats(-180, 180, allow_nan=False)
radius = st.floats(0, 1000, allow_nan=False)


@given(lat, lon, lat, lon)
def test_haversine_symmetric_and_bounded(a1: float, o1: float, a2: float, o2: float) -> None:
    d = geo_math.haversine_km(a1, o1, a2, o2)
    assert math.isclose(d, geo_math.haversine_km(a2, o2, a1, o1), rel_tol=1e-9, abs_tol=1e-6)
    assert 0.0 <= d <= math.pi * geo_math.EARTH_RADIUS_KM + 1e-6


@given(lat, lon)
def test_haversine_zero_for_same_point(a: float, o: float) -> None:
    assert geo_math.haversine_km(a, o, a, o) == 0.0


@given(lat, lon, lat, lon, lat, lon)
def test_haversine_triangle_inequality(a1: float, o1: float, a2: float, o2: float, a3: float,
                                       o3: float) -> None:
    ab = geo_math.haversine_km(a1, o1, a2, o2)
    bc = geo_math.haversine_km(a2, o2, a3, o3)
    ac = geo_math.haversine_km(a1, o1, a3, o3)
    assert ac <= ab + bc + 1e-6


@given(st.floats(0, 25_000), radius, radius)
def test_effective_distance_never_exceeds_raw(d: float, r1: float, r2: float) -> None:
    eff = geo_math.effective_distance_km(d, r1, r2)
    assert 0.0 <= eff <= d


@given(st.floats(0, 25_000), st.floats(0, 1e6))
def test_speed_is_finite_and_monotone_in_time(d: float, seconds: float) -> None:
    v = geo_math.implied_speed_kmh(d, seconds)
    assert math.isfinite(v)
    assert v >= geo_math.implied_speed_kmh(d, seconds + 60)


@given(st.lists(st.tuples(st.sampled_from("abcdefghij"), st.floats(0, 1000)), max_size=80),
       st.integers(1, 6))
def test_recent_set_is_bounded_and_distinct(seen: list[tuple[str, float]], cap: int) -> None:
    recent: tuple[tuple[str, float], ...] = ()
    now = 0.0
    for thing, t in seen:
        now = max(now, t)
        recent = touch(recent, thing, t, now, 300.0, cap)
        keys = [k for k, _ in recent]
        assert len(keys) == len(set(keys)) <= cap
        assert all(s >= now - 300.0 for _, s in recent)
