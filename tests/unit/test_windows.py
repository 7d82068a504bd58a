"""The window functions against a plain reference: every bucket kept, summed on demand. The
fast paths (nothing expired, event in the newest bucket) must give exactly what it gives."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from relayguard.stream import windows

SPECS = [windows.WindowSpec(60, 5), windows.WindowSpec(3600, 300), windows.WindowSpec(10, 1),
         windows.WindowSpec(7200, 300), windows.WindowSpec(100, 30)]


def reference_total(events: list[tuple[float, int]], spec: windows.WindowSpec,
                    now: float) -> int:
    oldest = int(now // spec.bucket) - spec.bucket_count + 1
    return sum(n for t, n in events if int(t // spec.bucket) >= oldest)


@settings(max_examples=300, deadline=None)
@given(spec=st.sampled_from(SPECS),
       steps=st.lists(st.tuples(st.floats(-200, 400), st.integers(0, 5)), max_size=60))
def test_add_and_total_match_the_reference(spec: windows.WindowSpec,
                                           steps: list[tuple[float, int]]) -> None:
    buckets: windows.Buckets = ()
    now = float("-inf")
    clock = 0.0
    kept: list[tuple[float, int]] = []
    for delta, amount in steps:
        clock += abs(delta) / 10  # mostly forward in time, sometimes a late event below
        t = clock if delta >= 0 else clock - abs(delta)
        now = max(now, t)
        buckets = windows.add(buckets, spec, t, amount, now)
        kept.append((t, amount))
        assert windows.total(buckets, spec, now) == reference_total(kept, spec, now)
        indexes = [i for i, _ in buckets]
        assert indexes == sorted(set(indexes))  # ordered, one pair per bucket
        assert len(buckets) <= spec.bucket_count  # bounded whatever the traffic
