"""Garbage-collector settings for the processes that run the detection core (`relayguard
replay`, `relayguard simulate`; the worker takes RELAYGUARD_WORKER_GC_THRESHOLDS).

The core allocates many small tuples and frozen dataclasses per event (the new states), and
reference counting frees nearly all of them. CPython's default thresholds (700, 10, 10) still
run a young collection every 700 allocations, a few events here, and full collections over every
live state: measured with bench/core_ab.py (`--gc default,throughput`), the collector took a
third of the core's CPU.

`THROUGHPUT` runs a young collection every 50,000 allocations and older ones 20 times rarer
each: cycles are still collected, a little later (their memory waits longer), and each young
collection scans more objects, so a pause is longer (a millisecond or two). In the worker the
same thresholds made no measurable difference (bench/worker_bench.py, two runs each: Faust's
and aiokafka's per-record objects dominate there), so it keeps CPython's unless configured; it
does call `gc.freeze()` after start-up, which moves the import-time objects (Faust, aiokafka,
schemas) out of every later full collection. The relay's policy service, where every
millisecond is an SMTP client's wait, is not touched. Our choice, after the measurements above;
CPython documents both knobs (gc.set_threshold, gc.freeze).
"""

from __future__ import annotations

import gc

THROUGHPUT = (50_000, 20, 20)


def tune_for_throughput(thresholds: tuple[int, int, int] = THROUGHPUT,
                        freeze: bool = False) -> None:
    """Raise the thresholds; with `freeze`, also exempt everything alive now from collection
    (call it once start-up is done)."""
    if len(thresholds) != 3 or any(t < 0 for t in thresholds):
        raise ValueError(f"gc thresholds must be three integers >= 0, got {thresholds!r}")
    gc.set_threshold(*thresholds)
    if freeze:
        gc.collect()
        gc.freeze()
