"""Volume against fixed limits: messages and recipients per user over several windows at once.

Messages and recipients are counted separately and every limit says which one it uses (rspamd
counting one token per recipient is read as messages by users; mailcow #7181).

Default limits and their sources:
- messages_1m 10: policyd-rate-limit's sample configuration (10 messages/minute).
- messages_1h 300: our choice, between the minute and day caps.
- messages_24h 1000: Microsoft EOP outbound example (1,000 messages/day; policyd-rate-limit's sample
  has 150/day, which suits a single mailbox, not a relay customer).
- recipients_1m 500: the hourly recipient cap (was 100, a fifth of it, until issue 9): one honest
  mailing-list post of a few hundred recipients tripped it alone and locked its sender for an
  hour (measured on `relayguard simulate`); the hourly and daily caps still hold.
- recipients_1h 500: hosting providers (e.g. cPanel hosts) and the EOP example, 500 recipients/hour.
- recipients_24h 2000: hosting providers, 2,000 recipients/day.

Tiers: a limit's value for a user comes from the first level that sets it: the user's own override,
then the user's domain (the part after '@'), then the user's plan (listed per user, else per
domain), then the default above. A level can say "unlimited" (None) or leave a limit out to inherit
(config spells that "inherit" or -1, as iRedAPD does).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Literal

from relayguard.stream import windows
from relayguard.stream.detector import DetectorSpec
from relayguard.stream.records import Event, Finding, SendEvent

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
        Limit("recipients_1m", "recipients", minute, 500),  # = the hourly cap; see above
        Limit("recipients_1h", "recipients", hour, 500),  # hosting providers / EOP: 500/hour
        Limit("recipients_24h", "recipients", day, 2000),  # hosting providers: 2,000/day
    )


# One level's settings: limit name -> value (None = unlimited). A name left out inherits.
LevelLimits = Mapping[str, int | None]


@dataclass(frozen=True, slots=True)
class Tiers:
    users: Mapping[str, LevelLimits] = field(default_factory=dict)
    domains: Mapping[str, LevelLimits] = field(default_factory=dict)
    plans: Mapping[str, LevelLimits] = field(default_factory=dict)
    user_plans: Mapping[str, str] = field(default_factory=dict)  # user -> plan
    domain_plans: Mapping[str, str] = field(default_factory=dict)  # domain -> plan

    def levels(self, user: str) -> list[tuple[str, LevelLimits]]:
        """The levels that apply to `user`, most specific first, each with a label."""
        out: list[tuple[str, LevelLimits]] = []
        if user in self.users:
            out.append(("user", self.users[user]))
        domain = user.rpartition("@")[2].lower() if "@" in user else ""
        if domain and domain in self.domains:
            out.append((f"domain:{domain}", self.domains[domain]))
        plan = self.user_plans.get(user) or (self.domain_plans.get(domain) if domain else None)
        if plan is not None and plan in self.plans:
            out.append((f"plan:{plan}", self.plans[plan]))
        return out


@dataclass(frozen=True, slots=True)
class Params:
    limits: tuple[Limit, ...] = field(default_factory=_default_limits)
    tiers: Tiers = field(default_factory=Tiers)


def resolve(params: Params, user: str) -> list[tuple[int | None, str]]:
    """Per limit (same order as `params.limits`): the value that applies and where it came from."""
    tiers = params.tiers
    if not (tiers.users or tiers.domains or tiers.plans):  # the common case: defaults only
        return [(lim.limit, "default") for lim in params.limits]
    levels = tiers.levels(user)
    out: list[tuple[int | None, str]] = []
    for lim in params.limits:
        for label, values in levels:
            if lim.name in values:
                out.append((values[lim.name], label))
                break
        else:
            out.append((lim.limit, "default"))
    return out


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
    resolved = resolve(params, event.user)
    for lim, buckets, until, (value, tier) in zip(
        params.limits, counts, reported, resolved, strict=True
    ):
        amount = 1 if lim.measure == "messages" else event.recipient_count
        buckets = windows.add(buckets, lim.window, event.event_time, amount, now)
        new_counts.append(buckets)
        count = windows.total(buckets, lim.window, now)
        if value is not None and count > value and now >= until:
            until = now + lim.window.length
            findings.append(_finding(event, lim, count, value, tier))
        new_reported.append(until)
    new_state = replace(
        state, watermark=now, counts=tuple(new_counts), reported_until=tuple(new_reported)
    )
    return new_state, findings


def _finding(event: SendEvent, lim: Limit, count: int, value: int, tier: str) -> Finding:
    window = int(lim.window.length)
    return Finding(
        detector=NAME,
        subject=event.user,
        subject_kind="user",
        event_time=event.event_time,
        summary=f"{event.user} sent {count} {lim.measure} in {window}s (limit {value}, {tier})",
        evidence={
            "limit_name": lim.name,
            "measure": lim.measure,
            "window_seconds": window,
            "count": count,
            "limit": value,
            "tier": tier,
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
