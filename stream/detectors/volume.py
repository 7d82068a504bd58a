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

Learned bulk senders: a user whose own peaks have reached near a limit on at least `bulk_min_days`
(2) of the previous `bulk_days` (7) days gets, for that limit, `bulk_headroom` (1.5) times the
highest of those peaks instead, when that is higher (transactional senders with a batch every ten
minutes, newsletters with two campaigns a week: 60 of the 67 false-lock user-days left on the
simulator's default fleet were these senders without an operator plan). Only peaks at or above
the limit / headroom are kept (at most `bulk_days` + 1 per limit), so ordinary users store
nothing. A taken-over account is exempt only up to its owner's own proven volume, and only after
two days of it; the sending profile and correlation still judge what it sends. `bulk_days = 0`
turns this off. Our choice, after adaptive limits of outbound filters that learn a sender's
normal volume (e.g. EOP's outbound spam policy learns per-user baselines).

Tiers: a limit's value for a user comes from the first level that sets it: the user's own override,
then the user's domain (the part after '@'), then the user's plan (listed per user, else per
domain), then the default above. A level can say "unlimited" (None) or leave a limit out to inherit
(config spells that "inherit" or -1, as iRedAPD does).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
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
    bulk_days: int = 7  # 0 = no learned headroom
    bulk_min_days: int = 2
    bulk_headroom: float = 1.5


Resolved = tuple[tuple[int | None, str], ...]
# limits tuple id -> (that tuple, its defaults): built once per configuration, not per send
_DEFAULTS: dict[int, tuple[tuple[Limit, ...], Resolved]] = {}


def resolve(params: Params, user: str) -> Resolved:
    """Per limit (same order as `params.limits`): the value that applies and where it came from."""
    tiers = params.tiers
    if not (tiers.users or tiers.domains or tiers.plans):  # the common case: defaults only
        limits = params.limits
        hit = _DEFAULTS.get(id(limits))
        if hit is None or hit[0] is not limits:
            if len(_DEFAULTS) >= 64:  # tests build many configurations; a worker has one
                _DEFAULTS.clear()
            hit = _DEFAULTS[id(limits)] = (limits, tuple((lim.limit, "default") for lim in limits))
        return hit[1]
    levels = tiers.levels(user)
    out: list[tuple[int | None, str]] = []
    for lim in params.limits:
        for label, values in levels:
            if lim.name in values:
                out.append((values[lim.name], label))
                break
        else:
            out.append((lim.limit, "default"))
    return tuple(out)


@dataclass(frozen=True, slots=True)
class State:
    watermark: float = float("-inf")
    counts: tuple[windows.Buckets, ...] = ()  # one per limit, same order as Params.limits
    # Per limit: until when a finding was already reported, so one crossing gives one finding.
    reported_until: tuple[float, ...] = ()
    # Per limit: (day number, that day's highest count) for days whose peak came near the limit.
    peaks: tuple[tuple[tuple[int, int], ...], ...] = ()


DAY = 86400.0


def learned_limit(params: Params, peaks: tuple[tuple[int, int], ...], value: int,
                  today: int) -> int:
    """The limit a proven bulk sender gets: headroom over its own peaks of previous days."""
    if params.bulk_days <= 0:
        return value
    past = [n for d, n in peaks if today - params.bulk_days <= d < today]
    if len(past) < params.bulk_min_days:
        return value
    return max(value, int(params.bulk_headroom * max(past)))


def _note_peak(params: Params, peaks: tuple[tuple[int, int], ...], value: int | None,
               count: int, today: int) -> tuple[tuple[int, int], ...]:
    if params.bulk_days <= 0 or value is None or count * params.bulk_headroom < value:
        return peaks
    kept = [(d, n) for d, n in peaks if d >= today - params.bulk_days]
    if kept and kept[-1][0] == today:
        if count <= kept[-1][1]:
            return peaks if len(kept) == len(peaks) else tuple(kept)
        kept[-1] = (today, count)
    else:
        kept.append((today, count))
    return tuple(kept)


def initial_state() -> State:
    return State()


def step(params: Params, state: State, event: Event) -> tuple[State, list[Finding]]:
    if not isinstance(event, SendEvent):
        return state, []
    n = len(params.limits)
    counts = state.counts if len(state.counts) == n else ((),) * n
    reported = state.reported_until if len(state.reported_until) == n else (float("-inf"),) * n
    all_peaks = state.peaks if len(state.peaks) == n else ((),) * n
    now = max(state.watermark, event.event_time)
    today = int(now // DAY)
    new_counts: list[windows.Buckets] = []
    # Rebuilt only when a limit's report time or peaks change (rarely): most sends keep both.
    new_reported: list[float] | None = None
    new_peaks: list[tuple[tuple[int, int], ...]] | None = None
    findings: list[Finding] = []
    resolved = resolve(params, event.user)
    at = event.event_time
    recipients = event.recipient_count
    for i, (lim, buckets, (value, tier)) in enumerate(zip(params.limits, counts, resolved,
                                                          strict=True)):
        amount = 1 if lim.measure == "messages" else recipients
        buckets, count = windows.add_total(buckets, lim.window, at, amount, now)
        new_counts.append(buckets)
        if value is None:
            continue
        peaks = all_peaks[i]
        # peaks are noted against the configured value, so a learned limit keeps learning
        if count * params.bulk_headroom >= value:  # else _note_peak keeps the peaks
            noted = _note_peak(params, peaks, value, count, today)
            if noted is not peaks:
                if new_peaks is None:
                    new_peaks = list(all_peaks)
                new_peaks[i] = peaks = noted
        learned = learned_limit(params, peaks, value, today) if peaks else value
        if learned > value:
            value, tier = learned, f"learned bulk sender, {tier}"
        if count > value and now >= reported[i]:
            if new_reported is None:
                new_reported = list(reported)
            new_reported[i] = now + lim.window.length
            findings.append(_finding(event, lim, count, value, tier))
    peaks_out = all_peaks if new_peaks is None else tuple(new_peaks)
    new_state = State(
        now, tuple(new_counts), reported if new_reported is None else tuple(new_reported),
        peaks_out if any(peaks_out) else ())
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
    reacts_to=frozenset({"send"}),
    params_type=Params,
    initial_state=initial_state,
    step=step,
    description="messages and recipients per user over fixed windows, each with a limit",
)
