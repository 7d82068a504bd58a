"""Old against new: the pure core of two source trees on the same traffic, per CPU second, with
a digest of everything each produced, so a speed-up that changes a result shows at once.

    git archive cafb7dd | tar -x -C /tmp/core-base      # the tree to compare with
    .venv/bin/python bench/core_ab.py /tmp/core-base . [--events 30000] [--users 2000] \\
        [--rounds 3] [--gc default,throughput]

Each round runs every tree (its own `relayguard` package, imported in a child process) once per
GC setting, interleaved, on `core_bench.traffic(events, users)`: the worker's loop without
Kafka (`Replayer`, user and IP keys). Printed per tree and setting: the best CPU time of the
rounds as events per CPU second, and a digest of every step's outcome, findings, lock
commands and alerts and of every final state as the worker's table stores it; digests must be
equal across trees. `--gc default` is CPython's (700, 10, 10); `throughput` is what the worker,
replay and simulate set (relayguard.foundation.gc_tuning; a tree without that module gets the
same thresholds). The host's speed drifts, so only ratios inside one run count.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

CHILD = r"""
import gc, hashlib, sys, time
root, n, users, gc_mode = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
sys.path.insert(0, root + "/bench"); sys.path.insert(0, root)
import core_bench
from relayguard.agents import state_codec
from relayguard.foundation.core_params import build_core_params
from relayguard.foundation.settings import Settings
from relayguard.roof.replay import Replayer
events = core_bench.traffic(n, users)
rep = Replayer(build_core_params(Settings()), kinds=("user", "ip"))
if gc_mode == "throughput":
    gc.set_threshold(50_000, 20, 20)
out = []
t0 = time.process_time()
for ev in events:
    out.extend(rep.feed(ev))
cpu = time.process_time() - t0
h = hashlib.sha256()
for r in out:
    h.update(repr((r.outcome, r.findings, r.commands, r.alerts)).encode())
for (kind, key), state in sorted(rep.states.items()):
    h.update(f"{kind}:{key}".encode())
    h.update(state_codec.dumps(state))
print(cpu, h.hexdigest()[:16])
"""


def run(root: Path, events: int, users: int, gc_mode: str) -> tuple[float, str]:
    proc = subprocess.run([sys.executable, "-c", CHILD, str(root), str(events), str(users),
                           gc_mode], capture_output=True, text=True, check=False)
    if proc.returncode:
        raise SystemExit(f"{root}: {proc.stderr.strip().splitlines()[-1]}")
    cpu, digest = proc.stdout.split()
    return float(cpu), digest


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("trees", nargs="+", type=Path, help="source trees; the first is the baseline")
    ap.add_argument("--events", type=int, default=30_000)
    ap.add_argument("--users", type=int, default=2000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--gc", default="default,throughput")
    args = ap.parse_args()
    modes = args.gc.split(",")
    trees = [t.resolve() for t in args.trees]
    best: dict[tuple[Path, str], float] = {}
    digests: dict[tuple[Path, str], str] = {}
    for r in range(args.rounds):
        for mode in modes:
            for tree in trees:
                cpu, digest = run(tree, args.events, args.users, mode)
                best[tree, mode] = min(cpu, best.get((tree, mode), float("inf")))
                digests[tree, mode] = digest
                print(f"round {r + 1} {tree} gc={mode}: {args.events / cpu:,.0f} ev/CPU-s "
                      f"({digest})", file=sys.stderr)
    base = best[trees[0], modes[0]]
    print(f"{args.events:,} events, {args.users:,} users, best of {args.rounds} rounds "
          f"(baseline: {trees[0]} gc={modes[0]})")
    for mode in modes:
        for tree in trees:
            cpu = best[tree, mode]
            print(f"  {tree!s:<40} gc={mode:<10} {args.events / cpu:>8,.0f} ev/CPU-s  "
                  f"x{base / cpu:4.2f}  {digests[tree, mode]}")
    same = len(set(digests.values())) == 1
    print("results identical across trees and settings" if same else
          "RESULTS DIFFER: a tree or setting changed what the core decides")
    sys.exit(0 if same else 1)


if __name__ == "__main__":
    main()
