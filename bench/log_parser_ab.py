"""Old against new: LogParser.feed of the source tree ROOT on the log file LOG, per CPU second,
with the bare two-regex loop of log_parser_bench.py timed in the same process. Best of 3.

    .venv/bin/python bench/log_parser_bench.py --lines 500000 --repeat 1 --no-fail2ban \\
        --write /tmp/mail500k.log
    git archive 76bbba1 | tar -x -C /tmp/old      # the tree to compare with
    .venv/bin/python bench/log_parser_ab.py /tmp/old /tmp/mail500k.log
    .venv/bin/python bench/log_parser_ab.py . /tmp/mail500k.log [--no-deliveries]

ROOT's own relayguard package is imported (its top-level folders are linked into relayguard/),
so each tree runs in its own process. Trees whose LogParser has no `deliveries` run without.
`--dump FILE` also writes every event (line number, repr) of one more pass to FILE, so two
trees' outputs can be compared with cmp: the same events, in the same order.
"""

from __future__ import annotations

import inspect
import re
import sys
import time
from pathlib import Path

BASELINE = re.compile(
    r"warning: [-._\w]+\[(?P<host>[0-9a-fA-F.:]+)\](?::\d+)?: SASL (?:LOGIN|PLAIN|"
    r"(?:CRAM|DIGEST)-MD5) authentication failed:")
DOVECOT = re.compile(r"dovecot: auth: [-\w]+\((?P<user>[^,()]*),(?P<ip>[0-9a-fA-F.:]+)"
                     r"(?:,[^)]*)?\): (?:unknown user|invalid credentials|Password mismatch)")


def main() -> None:
    root, log = Path(sys.argv[1]).resolve(), Path(sys.argv[2])
    sys.path.insert(0, str(root))
    from relayguard.relay.log_parser import LogParser

    lines = log.read_text().splitlines()
    ref = 1764417600.0  # 2026-11-29T12:00:00Z, the bench log's day
    deliveries = ("deliveries" in inspect.signature(LogParser).parameters
                  and "--no-deliveries" not in sys.argv)
    best_p = best_r = float("inf")
    events = 0
    for _ in range(3):
        t0 = time.process_time()
        for line in lines:
            if BASELINE.search(line) is None:
                DOVECOT.search(line)
        best_r = min(best_r, time.process_time() - t0)
        parser = LogParser("bench", deliveries=True) if deliveries else LogParser("bench")
        events = 0
        t0 = time.process_time()
        for i, line in enumerate(lines):
            events += len(parser.feed(line, ref, str(i)))
            if deliveries:
                events += len(parser.pop_deliveries())
        best_p = min(best_p, time.process_time() - t0)
    if "--dump" in sys.argv:
        parser = LogParser("bench", deliveries=True) if deliveries else LogParser("bench")
        with open(sys.argv[sys.argv.index("--dump") + 1], "w") as out:
            for i, line in enumerate(lines):
                found = parser.feed(line, ref, str(i)) + (parser.pop_deliveries() if deliveries
                                                          else [])
                for e in found:
                    out.write(f"{i} {e!r}\n")
    n = len(lines)
    print(f"{root} (deliveries {'on' if deliveries else 'off'}): parser {n / best_p:,.0f} "
          f"lines/CPU-s, two-regex loop {n / best_r:,.0f}, ratio {best_r / best_p:.1%}, "
          f"{events:,} events")


if __name__ == "__main__":
    main()
