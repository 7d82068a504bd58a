"""The detector contract: frozen `Params`, a bounded per-key state, and a pure `step`.

A detector is a module that builds one `DetectorSpec`. The engine keeps one state per detector per
key (a user, or a client IP) and calls `step` for every event in event-time order. `step` must not
read the clock or do I/O, and must keep its state bounded whatever the traffic.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from relayguard.stream.records import Event, Finding, SubjectKind

P = TypeVar("P")
S = TypeVar("S")


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


AnySpec = DetectorSpec[Any, Any]
