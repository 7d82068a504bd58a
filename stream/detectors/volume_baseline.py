"""Volume against the user's own learned normal: an EWMA per hour of day (or hour of week).

No open-source relay filter does this (MailChannels sells it), so the defaults are our choice:
- measure: recipients (a message to 500 people is 500 deliveries; messages are named separately
  by the fixed limits in `volume`).
- profile: one EWMA per hour of day, alpha 0.3 (about a week's memory per slot); "hour_of_week"
  gives 168 slots for users whose weekends differ.
- floor: 20 recipients/hour, so a user who normally sends nothing is not flagged for 3 messages.
- multiple: 5x the expected hour, i.e. at least 100 recipients/hour with the floor.
- learning period: 7 days since the user was first seen (Defender for Cloud Apps learns for 7
  days). A brand-new user is judged by the fixed limits in `volume` only.
While learned, a spike is folded into the profile capped at multiple x expected, so one spam run
does not teach the detector that spam is normal. Alert-only by default.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from relayguard.stream.detector import DetectorSpec
from relayguard.stream.records import Event, Finding, SendEvent

NAME = "volume_baseline"
HOUR = 3600.0


@dataclass(frozen=True, slots=True)
class Params:
    measure: Literal["messages", "recipients"] = "recipients"
    profile: Literal["hour_of_day", "hour_of_week"] = "hour_of_day"
    alpha: float = 0.3
    floor: float = 20.0
    multiple: float = 5.0
    learning_seconds: float = 7 * 86400.0

    @property
    def slots(self) -> int:
        return 24 if self.profile == "hour_of_day" else 168


@dataclass(frozen=True, slots=True)
class State:
    first_seen: float | None = None
    hour: int = 0  # hours since the epoch of the hour being counted
    current: int = 0
    profile: tuple[float, ...] = ()
    reported_hour: int = -1


def initial_state() -> State:
    return State()


def expected(params: Params, state: State, hour: int) -> float:
    prof = state.profile or (0.0,) * params.slots
    return max(params.floor, prof[hour % params.slots])


def _roll(params: Params, state: State, hour: int, learned: bool) -> State:
    """Fold the finished hour into its slot and decay the slots of hours with no sends."""
    n = params.slots
    prof = list(state.profile or (0.0,) * n)
    done = state.current
    if learned:  # a spike teaches at most the alert threshold
        done = min(done, int(params.multiple * expected(params, state, state.hour)))
    slot = state.hour % n
    prof[slot] = params.alpha * done + (1 - params.alpha) * prof[slot]
    skipped = hour - state.hour - 1
    if skipped > 0:  # each skipped hour folds a zero into its slot: closed form, O(slots)
        full, rest = divmod(skipped, n)
        keep = 1 - params.alpha
        base = keep**full
        first = state.hour + 1
        # the `rest` slots from `first` on saw one more skipped hour than the others
        mult = [base] * n
        extra = base * keep
        for i in range(rest):
            mult[(first + i) % n] = extra
        prof = [p * m for p, m in zip(prof, mult, strict=True)]
    return State(state.first_seen, hour, 0, tuple(prof), state.reported_hour)


def step(params: Params, state: State, event: Event) -> tuple[State, list[Finding]]:
    if not isinstance(event, SendEvent):
        return state, []
    t = event.event_time
    hour = math.floor(t / HOUR)
    if state.first_seen is None:
        state = State(first_seen=t, hour=hour, profile=(0.0,) * params.slots)
    first = state.first_seen if state.first_seen is not None else t
    learned = t - first >= params.learning_seconds
    if hour > state.hour:
        state = _roll(params, state, hour, learned)
    # A late event from an already folded hour (within the engine's grace) counts in this hour.
    amount = 1 if params.measure == "messages" else event.recipient_count
    count = state.current + amount
    state = State(state.first_seen, state.hour, count, state.profile, state.reported_hour)
    exp = expected(params, state, state.hour)
    threshold = params.multiple * exp
    if not learned or count <= threshold or state.reported_hour == state.hour:
        return state, []
    state = State(state.first_seen, state.hour, count, state.profile, state.hour)
    slot = state.hour % params.slots
    prof_value = state.profile[slot] if state.profile else 0.0
    finding = Finding(
        detector=NAME,
        subject=event.user,
        subject_kind="user",
        event_time=t,
        summary=(f"{event.user} sent {count} {params.measure} this hour, {count / exp:.1f}x "
                 f"the usual {exp:.0f} for this hour ({params.profile} slot {slot})"),
        evidence={
            "measure": params.measure,
            "count": count,
            "window_seconds": int(HOUR),
            "hour_start": state.hour * HOUR,
            "profile": params.profile,
            "slot": slot,
            "baseline": round(prof_value, 2),
            "expected": round(exp, 2),
            "floor": params.floor,
            "multiple": params.multiple,
            "threshold": round(threshold, 2),
            "client_ip": event.client_ip,
        },
    )
    return state, [finding]


SPEC = DetectorSpec(
    name=NAME,
    key_kind="user",
    reacts_to=frozenset({"send"}),
    params_type=Params,
    initial_state=initial_state,
    step=step,
    description="sends per hour above a multiple of the user's learned hour-of-day normal",
)
