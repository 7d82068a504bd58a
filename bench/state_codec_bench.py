"""Table codec speed and size: the data-only msgspec codec (format 2: fields by position, what
workers write since issue 12; format 1: fields by name, still read) against the old pickle
codec, same states, same run.

    .venv/bin/python bench/state_codec_bench.py [--users 2000] [--events 60000] [--rounds 3]

States come from synthetic traffic through the real core (bench/core_bench.py's generator),
so they hold what a worker's table holds. Prints per-state decode, full encode and the cached
encode after one more send (`DecodedCache.dumps`, reusing unchanged detectors' bytes).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import pickle_state_codec
from core_bench import traffic

from relayguard.agents import state_codec
from relayguard.foundation.core_params import build_core_params
from relayguard.foundation.settings import Settings
from relayguard.roof.replay import Replayer
from relayguard.stream import engine
from relayguard.stream.records import SendEvent


def per_item_us(fn: Callable[[Any], Any], items: list[Any], rounds: int) -> float:
    best = float("inf")
    for _ in range(rounds):
        t = time.perf_counter()
        for item in items:
            fn(item)
        best = min(best, time.perf_counter() - t)
    return best / len(items) * 1e6


def cached_encode_us(mod: Any, pairs: list[tuple[engine.KeyState, engine.KeyState]],
                     rounds: int) -> float:
    """The worker's encode after an event: the cache still holds the previous state's bytes."""
    best = float("inf")
    for _ in range(rounds):
        cache = mod.DecodedCache(size=len(pairs) + 1)
        for i, (before, _) in enumerate(pairs):
            cache.dumps("user", str(i), before)
        t = time.perf_counter()
        for i, (_, after) in enumerate(pairs):
            cache.dumps("user", str(i), after)
        best = min(best, time.perf_counter() - t)
    return best / len(pairs) * 1e6


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--users", type=int, default=2000)
    ap.add_argument("--events", type=int, default=60000)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    params = build_core_params(Settings())
    rep = Replayer(params, kinds=("user",))
    for ev in traffic(args.events, args.users):
        rep.feed(ev)
    states = [s for (kind, _), s in rep.states.items() if kind == "user"]
    # One more send per user: what the worker encodes on each event.
    nexts = []
    for i, s in enumerate(states):
        e = SendEvent(f"bench-next-{i}", s.watermark + 1, "r1", f"u{i}", "198.51.100.1",
                      "x", 1, 1000)
        nexts.append((s, engine.step(params, "user", f"u{i}", s, e).state))
    print(f"{len(states)} user states from {args.events} events")
    print(f"{'codec':8} {'bytes/state':>11} {'decode us':>10} {'encode us':>10} "
          f"{'cached enc us':>13}")
    for name, mod in (("pickle", pickle_state_codec), ("format 1", _Format1),
                      ("format 2", state_codec)):
        blobs = [mod.dumps(s) for s in states]
        for s, b in zip(states[:200], blobs[:200], strict=True):
            assert mod.loads(b) == s
        size = statistics.mean(len(b) for b in blobs)
        biggest = max(len(b) for b in blobs)

        cached = (f"{cached_encode_us(mod, nexts, args.rounds):13.1f}"
                  if hasattr(mod, "DecodedCache") else f"{'-':>13}")
        print(f"{name:8} {size:11.0f} {per_item_us(mod.loads, blobs, args.rounds):10.1f} "
              f"{per_item_us(mod.dumps, states, args.rounds):10.1f} {cached} "
              f"(largest {biggest:,} B)")


class _Format1:
    """msgspec format 1 (fields by name): workers before issue 12 wrote it; still read."""

    loads = staticmethod(state_codec.loads)
    dumps = staticmethod(state_codec._dumps_v1)


if __name__ == "__main__":
    main()
