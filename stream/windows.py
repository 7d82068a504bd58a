"""Sliding event-time windows as plain values.

A window is a short tuple of (bucket index, amount) pairs, oldest first. Buckets older than the
window are dropped on every add, so the size is bounded by window / bucket + 1 whatever the traffic.
Late events are counted if they still fall inside the window; events older than the grace period
behind the newest time seen are refused by the caller (see `is_too_late`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

Buckets = tuple[tuple[int, int], ...]


@dataclass(frozen=True, slots=True)
class WindowSpec:
    """A window of `length` seconds counted in buckets of `bucket` seconds."""

    length: float
    bucket: float
    # ceil(length / bucket), computed once: it is read on every add and total (hot path).
    count: int = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.length <= 0 or self.bucket <= 0 or self.bucket > self.length:
            raise ValueError(f"bad window: length={self.length} bucket={self.bucket}")
        object.__setattr__(self, "count", int(-(-self.length // self.bucket)))

    @property
    def bucket_count(self) -> int:
        return self.count

    def index(self, t: float) -> int:
        return int(t // self.bucket)


def is_too_late(event_time: float, watermark: float, grace: float) -> bool:
    """An event is too late when it is older than the newest time seen minus the grace."""
    return event_time < watermark - grace


def add(buckets: Buckets, spec: WindowSpec, t: float, amount: int, now: float) -> Buckets:
    """Add `amount` at time `t`; `now` is the newest event time seen (the window's end)."""
    size = spec.bucket
    oldest_kept = int(now // size) - spec.count + 1
    idx = int(t // size)
    if buckets and buckets[0][0] >= oldest_kept:
        # The common case: nothing expired and the event lands in the newest bucket or after it.
        last, n = buckets[-1]
        if last == idx:
            return (*buckets[:-1], (idx, n + amount))
        if last < idx:
            return (*buckets, (idx, amount))
    kept = [(i, n) for i, n in buckets if i >= oldest_kept]
    if idx < oldest_kept:
        return tuple(kept)
    for pos, (i, n) in enumerate(kept):
        if i == idx:
            kept[pos] = (i, n + amount)
            return tuple(kept)
        if i > idx:
            kept.insert(pos, (idx, amount))
            return tuple(kept)
    kept.append((idx, amount))
    return tuple(kept)


def add_total(buckets: Buckets, spec: WindowSpec, t: float, amount: int,
              now: float) -> tuple[Buckets, int]:
    """`add`, then `total` at `now`, in one pass over the buckets (the volume detectors ask
    for both on every send)."""
    size = spec.bucket
    oldest_kept = int(now // size) - spec.count + 1
    if buckets and buckets[0][0] >= oldest_kept:
        last, n = buckets[-1]
        idx = int(t // size)
        if last == idx:
            kept = (*buckets[:-1], (idx, n + amount))
            return kept, sum([c for _, c in kept])
        if last < idx:
            kept = (*buckets, (idx, amount))
            return kept, sum([c for _, c in kept])
    kept = add(buckets, spec, t, amount, now)
    return kept, total(kept, spec, now)


def total(buckets: Buckets, spec: WindowSpec, now: float) -> int:
    """Sum of the buckets that overlap the window ending at `now`."""
    if not buckets:
        return 0
    oldest_kept = int(now // spec.bucket) - spec.count + 1
    if buckets[0][0] >= oldest_kept:
        return sum([n for _, n in buckets])
    return sum([n for i, n in buckets if i >= oldest_kept])
