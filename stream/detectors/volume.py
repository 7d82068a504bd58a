"""Volume against fixed limits: messages and recipients per user over several windows at once.

Messages and recipients are counted separately and every limit says which one it uses (rspamd
counting one token per recipient is read as messages by users; mailcow #7181).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Literal

from stream import windows
from stream.detector import DetectorSpec
from stream.records import Event, Finding, SendEvent

NAME = "volume"
Measure = Literal["messages", "recipients"]


@dataclass(frozen=True, slots=True)
class Limit:
    name: str
    measure: Measure
    window: windows.WindowSpec
    limit: int | None  # None = unlimited


def _default_limits() -> tuple[Limit, ...]:
    minute = windows.WindowSpec(60, 5)
    hour = windows.WindowSpec(3600, 300)
    day = windows.WindowSpec(86400, 3600)
    return (
        Limit("messages_1m", "messages", minute, 10),  # policyd-rate-limit sample: 10/minute
        Limit("messages_1h", "messages", hour, 300),  # between the minute and day caps
        Limit("messages_24h", "messages", day, 1000),  # Microsoft EOP example: 1,000/day
        Limit("recipients_1m", "recipients", minute, 100),  # a fifth of the hourly recipient cap
        Limit("recipients_1h", "recipients", hour, 500),  # hosting providers / EOP: 500/hour
        Limit("recipients_24h", "recipients", day, 2000),  # hosting providers: 2,000/day
    )


@dataclass(frozen=True, slots=True)
class Params:
    limits: tuple[Limit, ...] = field(default_factory=_default_limits)


@dataclass(frozen=True, slots=True)
class State:
    watermark: float = float("-inf")
    counts: tuple[windows.Buckets, ...] = ()  # one per limit, same order as Params.limits
    # Per limit: until when a finding was already reported, so one crossing gives one finding.
    reported_until: tuple[float, ...] = ()


def initial_state() -> State:
    return State()


def step(params: Params, state: State, event: Event) -> tuple[State, list[Finding]]:
    if not isinstance(event, SendEvent):
        return state, []
    n = len(params.limits)
    counts = state.counts if len(state.counts) == n else ((),) * n
    reported = state.reported_until if len(state.reported_until) == n else (float("-inf"),) * n
    now = max(state.watermark, event.event_time)
    new_counts: list[windows.Buckets] = []
    new_reported: list[float] = []
    findings: list[Finding] = []
    for lim, buckets, until in zip(params.limits, counts, reported, strict=True):
        amount = 1 if lim.measure == "messages" else event.recipient_count
        buckets = windows.add(buckets, lim.window, event.event_time, amount, now)
        new_counts.append(buckets)
        count = windows.total(buckets, lim.window, now)
        if lim.limit is not None and count > lim.limit and now >= until:
            until = now + lim.window.length
            findings.append(_finding(event, lim, count))
        new_reported.append(until)
    new_state = replace(
        state, watermark=now, counts=tuple(new_counts), reported_until=tuple(new_reported)
    )
    return new_state, findings


def _finding(event: SendEvent, lim: Limit, count: int) -> Finding:
    window = int(lim.window.length)
    return Finding(
        detector=NAME,
        subject=event.user,
        subject_kind="user",
        event_time=event.event_time,
        summary=f"{event.user} sent {count} {lim.measure} in {window}s (limit {lim.limit})",
        evidence={
            "limit_name": lim.name,
            "measure": lim.measure,
            "window_seconds": window,
            "count": count,
            "limit": lim.limit,
            "client_ip": event.client_ip,
            "relay_id": event.relay_id,
        },
    )


SPEC = DetectorSpec(
    name=NAME,
    key_kind="user",
    params_type=Params,
    initial_state=initial_state,
    step=step,
    description="messages and recipients per user over fixed windows, each with a limit",
)
