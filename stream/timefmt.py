"""RFC 3339 on the wire, float epoch seconds inside; and the bounds an event time must keep.

The bounds are checked against a `now` the caller passes in (the worker's clock): the core never
reads the clock itself.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime

# The largest time `to_rfc3339` can write (datetime stops at year 9999), minus a day so that a
# time plus any TTL the policy adds stays writable.
MAX_WIRE_TIME = datetime(9999, 12, 30, tzinfo=UTC).timestamp()


def to_rfc3339(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_rfc3339(text: str) -> float:
    """Seconds since the epoch; a time without an offset is taken as UTC."""
    dt = datetime.fromisoformat(text)
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.timestamp()


@dataclass(frozen=True, slots=True)
class TimeBounds:
    """How far an event time may stray from the worker's clock.

    max_future_seconds, default 300: the 5-minute clock-skew tolerance of Kerberos (MIT krb5
    `clockskew` and Active Directory's "maximum tolerance for computer clock synchronization"),
    the usual bound for hosts that are meant to run NTP. Equal to the core's grace period, so
    a time at the bound can never push a watermark far enough to refuse real events as late.
    max_age_seconds, default 7 days: Kafka's default retention (`log.retention.hours=168`);
    nothing older can legitimately still be on its way through the events topic.
    """

    max_future_seconds: float = 300.0
    max_age_seconds: float = 7 * 86400.0

    def __post_init__(self) -> None:
        if not (self.max_future_seconds > 0 and self.max_age_seconds > 0):
            raise ValueError(f"time bounds must be > 0: {self}")

    def problem(self, t: float, now: float) -> str | None:
        """Why `t` is implausible at `now`, or None when it is fine."""
        if not math.isfinite(t):
            return f"event time {t!r} is not a number"
        if t > now + self.max_future_seconds:
            return (f"event time {to_rfc3339(min(t, MAX_WIRE_TIME))} is {t - now:.0f} s ahead of "
                    f"the worker's clock (limit {self.max_future_seconds:.0f} s): the relay's "
                    "clock is wrong or the event is forged")
        if t < now - self.max_age_seconds:
            return (f"event time {to_rfc3339(max(t, 0.0))} is {now - t:.0f} s old (limit "
                    f"{self.max_age_seconds:.0f} s): replay old logs with `relayguard replay`")
        return None
