"""The detector contract: frozen `Params`, a bounded per-key state, and a pure `step`.

A detector is a module that builds one `DetectorSpec`. The engine keeps one state per detector per
key (a user, or a client IP) and calls `step` for every event it `reacts_to`, in event-time
order. `step` must not read the clock or do I/O, and must keep its state bounded whatever the
traffic.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, Literal, TypeVar

from relayguard.stream.records import DeliveryEvent, Event, Finding, LoginEvent, SubjectKind

P = TypeVar("P")
S = TypeVar("S")

# What an event is, for "can this event change this detector at all?" (the engine's skip list).
EventClass = Literal["login_ok", "login_fail", "send", "delivery"]
EVENT_CLASSES: tuple[EventClass, ...] = ("login_ok", "login_fail", "send", "delivery")
EVERY_EVENT: frozenset[EventClass] = frozenset(EVENT_CLASSES)


def event_class(event: Event) -> EventClass:
    if isinstance(event, LoginEvent):
        return "login_ok" if event.success else "login_fail"
    return "delivery" if isinstance(event, DeliveryEvent) else "send"


@dataclass(frozen=True, slots=True)
class DetectorSpec(Generic[P, S]):
    name: str
    key_kind: SubjectKind  # which key's state the detector lives in
    params_type: type[P]
    initial_state: Callable[[], S]
    step: Callable[[P, S, Event], tuple[S, list[Finding]]]
    description: str = ""
    # Called after every detector of the key has stepped, with all findings of that event; this
    # is how correlation sees other detectors' findings without knowing about them.
    on_findings: Callable[[P, S, Event, list[Finding]], tuple[S, list[Finding]]] | None = None
    # The event classes `step` can react to. For any other event, `step` must return its state
    # unchanged (the same object) and no finding, so the engine does not call it at all: most
    # detectors read logins only or sends only (tests/unit/test_detector_relevance.py holds
    # every detector to what it declares).
    reacts_to: frozenset[EventClass] = EVERY_EVENT


AnySpec = DetectorSpec[Any, Any]
