"""Garbage-collector settings for the processes that run the detection core (the worker,
`relayguard replay`, `relayguard simulate`).

The core allocates many small tuples and frozen dataclasses per event (the new states), and
reference counting frees nearly all of them; the cyclic collector only finds work in Faust's and
aiokafka's objects. CPython's default thresholds (700, 10, 10) still run a young collection
every 700 allocations, a few events here, and full collections over every live state: measured
with bench/core_bench.py (`--gc both`), 30-45% of the core's CPU went to the collector.

`THROUGHPUT` runs a young collection every 50,000 allocations and older ones 20 times rarer
each: cycles are still collected, a little later (their memory waits longer), and each young
collection scans more objects, so a pause is longer (a millisecond or two), which is why the
relay's policy service, where every millisecond is an SMTP client's wait, keeps the default.
`gc.freeze()` after start-up moves the import-time objects (Faust, aiokafka, schemas: several
hundred thousand) out of every later full collection. Our choice, after the measurement above;
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
