"""Shared engine for "one key failing against many distinct things" detectors: password spraying
(one IP, many users) and distributed guessing (one user, many IPs).

State is a bounded list of the distinct things seen within the longest rule window, capped at the
largest threshold + 1: once a rule is crossed the detector does not need to remember more.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from relayguard.stream.detectors.common import Recent, count_live, live, touch


@dataclass(frozen=True, slots=True)
class Rule:
    name: str
    max_distinct: int  # more than this many distinct things in the window trips the rule
    window_seconds: float


@dataclass(frozen=True, slots=True)
class State:
    watermark: float = float("-inf")
    seen: Recent = ()
    reported_until: tuple[float, ...] = ()


@lru_cache(maxsize=256)
def _bounds(rules: tuple[Rule, ...]) -> tuple[float, int]:
    """The longest window and the cap on things kept (largest threshold + 1); asked on every
    event, the same few rule sets every time."""
    return (max((r.window_seconds for r in rules), default=0.0),
            max((r.max_distinct for r in rules), default=0) + 1)


def observe(rules: tuple[Rule, ...], state: State, thing: str,
            t: float) -> tuple[State, list[tuple[Rule, Recent]]]:
    """Record `thing` at `t`; return the rules newly crossed with the things that crossed them."""
    now = max(state.watermark, t)
    longest, cap = _bounds(rules)
    seen = touch(state.seen, thing, t, now, longest, cap)
    n = len(rules)
    reported = state.reported_until if len(state.reported_until) == n else (float("-inf"),) * n
    crossed: list[tuple[Rule, Recent]] = []
    new_reported: list[float] | None = None  # built only when a rule is crossed (rarely)
    for i, (rule, until) in enumerate(zip(rules, reported, strict=True)):
        if now >= until and count_live(seen, now, rule.window_seconds) > rule.max_distinct:
            if new_reported is None:
                new_reported = list(reported)
            new_reported[i] = now + rule.window_seconds
            crossed.append((rule, live(seen, now, rule.window_seconds)))
    return State(now, seen, reported if new_reported is None else tuple(new_reported)), crossed


@lru_cache(maxsize=64)
def one_rule(name: str, max_distinct: int, window_seconds: float) -> tuple[Rule, ...]:
    """A detector's single rule from its params, built once, not per event."""
    return (Rule(name, max_distinct, window_seconds),)
