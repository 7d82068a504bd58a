"""Order lines of several mail logs by time, so one parser sees them as they happened.

A Dovecot verdict in dovecot.log names the user of an old Postfix failure line in mail.log
only if the parser sees the verdict first. Reading file after file breaks that whenever the
Postfix file comes first, so `hook tail` (each poll) and `replay` (whole files) merge by the
lines' stamps. At the same stamp Dovecot lines go first: Dovecot decides before Postfix logs
the failure. A line with no stamp we read, or that cannot matter to the parser, keeps the time
of the line before it in its file, so the merge never moves it across its neighbours.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Iterator, Sequence
from datetime import tzinfo
from typing import TypeVar

from relayguard.relay.log_header import parse_header
from relayguard.relay.log_patterns import may_matter

T = TypeVar("T")


def is_dovecot(prog: str) -> bool:
    return prog in ("dovecot", "auth") or prog.startswith(("dovecot/", "dovecot-"))


def keyed(texts: Iterable[tuple[str, T]], reference_time: float, tz: tzinfo, index: int
          ) -> Iterator[tuple[float, int, int, int, T]]:
    """(time, rank, file index, sequence, item) for each (line text, item) of one file."""
    last = float("-inf")
    for seq, (text, item) in enumerate(texts):
        rank = 1
        if may_matter(text):
            h = parse_header(text, reference_time, tz)
            if h is not None:
                last = h.time
                rank = 0 if is_dovecot(h.prog) else 1
        yield last, rank, index, seq, item


def merge_by_time(files: Sequence[Iterable[tuple[str, T]]], reference_time: float,
                  tz: tzinfo) -> Iterator[T]:
    """The items of every file, merged by their lines' stamps (each file stays in order when
    its stamps do)."""
    streams = [keyed(f, reference_time, tz, i) for i, f in enumerate(files)]
    for *_, item in heapq.merge(*streams):
        yield item
