"""Summarise a py-spy profile (`py-spy record --format raw`, collapsed stacks) for BENCHMARKS.md.

    .venv/bin/python bench/profile_summary.py FILE [--root FUNC] [--top 15]

Prints the share of samples whose innermost frame is in each area (relayguard's own code, Faust
and mode, aiokafka, asyncio, codecs, ...), then the top functions by self samples and by
inclusive samples. --root keeps only stacks through a frame whose text contains FUNC (e.g.
`_run_module_as_main` for the main thread only). py-spy records active samples only (no --idle),
so shares are of the CPU the process used.
"""

from __future__ import annotations

import argparse
import re
from collections import Counter
from pathlib import Path

AREAS = [("relayguard", re.compile(r"\((?:relayguard|stream|agents|relay)/")),
         ("faust+mode", re.compile(r"\((?:faust|mode|venusian)/")),
         ("aiokafka+kafka", re.compile(r"\((?:aiokafka|kafka)/")),
         ("codecs (json/msgpack/pickle)", re.compile(r"\((?:json|orjson|msgspec|pickle|copyreg)"
                                                     r"[/.]|\bloads\b|\bdumps\b")),
         ("rocksdb", re.compile(r"rocksdict|rocksdb", re.I)),
         ("asyncio", re.compile(r"\(asyncio/")),
         ("logging", re.compile(r"\(logging/"))]


LINE = re.compile(r":\d+\)$")


def area(frame: str) -> str:
    for name, rx in AREAS:
        if rx.search(frame):
            return name
    return "other (stdlib, C, interpreter)"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("file", type=Path)
    ap.add_argument("--root", default="")
    ap.add_argument("--top", type=int, default=15)
    args = ap.parse_args()
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    areas: Counter[str] = Counter()
    total = 0
    for line in args.file.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit() or args.root not in stack:
            continue
        n = int(count)
        frames = [LINE.sub(")", f) for f in stack.split(";")]  # per function, not per line
        total += n
        own[frames[-1]] += n
        areas[area(frames[-1])] += n
        for f in set(frames):
            inclusive[f] += n
    if not total:
        raise SystemExit(f"no samples in {args.file} (root {args.root!r})")
    print(f"{total:,} samples")
    print("innermost frame by area:")
    for name, n in areas.most_common():
        print(f"  {n / total:6.1%}  {name}")
    print(f"top {args.top} functions, self:")
    for f, n in own.most_common(args.top):
        print(f"  {n / total:6.1%}  {f}")
    print(f"top {args.top} functions, inclusive (outside the event loop's own frames):")
    shown = 0
    for f, n in inclusive.most_common():
        if n / total > 0.97:
            continue  # the frames every sample passes through (main, run_forever, ...)
        print(f"  {n / total:6.1%}  {f}")
        shown += 1
        if shown == args.top:
            break


if __name__ == "__main__":
    main()
