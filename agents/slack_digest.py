"""Alert storms: when more than `threshold` subjects trip within `window` seconds (a credential
dump, a spray), the channel gets one digest message (updated as the storm goes on) instead of a
message per subject; once the rate is back under the threshold, alerts are posted one by one
again. Pure: the clock is passed in. Every alert still stays in the alerts topic.

Bounded: the gate keeps the last `threshold + 1` arrivals (all it needs to know the rate), the
digest keeps counts for everything but names only the first SUBJECTS_KEPT subjects.
"""

from __future__ import annotations

from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any, Literal

from relayguard.stream.records import Alert
from relayguard.stream.timefmt import to_rfc3339

SUBJECTS_KEPT = 200  # named in the digest's state; the message shows fewer
SUBJECTS_SHOWN = 60
DISTINCT_TRACKED = 20_000  # past this many distinct subjects, later ones count as new


@dataclass
class Digest:
    started: float  # wall clock, for the message
    subjects: list[str] = field(default_factory=list)  # "kind subject", first SUBJECTS_KEPT
    seen: set[str] = field(default_factory=set)
    by_detector: Counter[str] = field(default_factory=Counter)
    by_severity: Counter[str] = field(default_factory=Counter)
    alerts: int = 0
    distinct: int = 0
    ended: float | None = None
    ts: str | None = None  # the digest message, once posted
    channel: str | None = None
    dirty: bool = True  # has news the message does not show yet
    updated_at: float = 0.0  # monotonic time of the last post/update

    def add(self, alert: Alert) -> None:
        key = f"{alert.subject_kind} {alert.subject}"
        self.alerts += 1
        self.by_detector[alert.detector] += 1
        self.by_severity[alert.severity] += 1
        if key not in self.seen:
            self.distinct += 1
            if len(self.seen) < DISTINCT_TRACKED:
                self.seen.add(key)
            if len(self.subjects) < SUBJECTS_KEPT:
                self.subjects.append(key)
        self.dirty = True


class StormGate:
    def __init__(self, threshold: int, window: float) -> None:
        self.threshold = threshold
        self.window = window
        self.recent: deque[tuple[float, str]] = deque(maxlen=threshold + 1)
        self.digest: Digest | None = None

    def _storming(self, now: float) -> bool:
        return (len(self.recent) == self.recent.maxlen
                and now - self.recent[0][0] <= self.window)

    def admit(self, alert: Alert, now: float, wall: float) -> Literal["post", "digest"]:
        """Where this alert goes. `now` is monotonic, `wall` the epoch time for the message."""
        key = f"{alert.subject_kind}:{alert.subject}"
        if all(k != key for _, k in self.recent):  # threshold is small: a scan is fine
            self.recent.append((now, key))
        if self.digest is None and self._storming(now):
            self.digest = Digest(started=wall)
        if self.digest is None:
            return "post"
        self.digest.add(alert)
        return "digest"

    def end_if_calm(self, now: float, wall: float) -> Digest | None:
        """The digest of a storm that has just calmed down (then counting starts afresh)."""
        if self.digest is None or self._storming(now):
            return None
        done, self.digest = self.digest, None
        done.ended, done.dirty = wall, True
        self.recent.clear()
        return done


def _n(count: int, word: str) -> str:
    return f"{count} {word}" + ("" if count == 1 else "s")


def digest_text(d: Digest) -> str:
    state = "ended" if d.ended is not None else "ongoing"
    return (f"relayguard alert storm ({state}): {_n(d.distinct, 'subject')}, "
            f"{_n(d.alerts, 'alert')} since {to_rfc3339(d.started)}")


def digest_blocks(d: Digest, alerts_topic: str) -> list[dict[str, Any]]:
    """Block Kit within Slack's limits: <= 10 fields, section text <= 3000 chars."""
    state = (f"ended {to_rfc3339(d.ended)}" if d.ended is not None
             else "ongoing: this message is updated")
    counts = [{"type": "mrkdwn", "text": f"*{name[:100]}*\n{n}"}
              for name, n in d.by_detector.most_common(9)]
    if len(d.by_detector) > 9:
        rest = sum(n for _, n in d.by_detector.most_common()[9:])
        counts.append({"type": "mrkdwn", "text": f"*{len(d.by_detector) - 9} other detectors*"
                                                 f"\n{rest}"})
    severities = ", ".join(f"{s} {n}" for s, n in sorted(d.by_severity.items()))
    listed = ""
    for name in d.subjects[:SUBJECTS_SHOWN]:
        line = f"• `{name[:200]}`\n"
        if len(listed) + len(line) > 2700:
            break
        listed += line
    shown = listed.count("\n")
    if d.distinct > shown:
        listed += f"… and {d.distinct - shown} more"
    header = f"Alert storm: {_n(d.distinct, 'subject')} tripped"
    return [
        {"type": "header", "text": {"type": "plain_text", "text": header[:150]}},
        {"type": "section", "text": {"type": "mrkdwn", "text":
            f":rotating_light: {_n(d.alerts, 'alert')} on {_n(d.distinct, 'subject')} since "
            f"{to_rfc3339(d.started)} ({state}). Severity: {severities}. One message instead "
            f"of one per subject; each alert is in the `{alerts_topic}` topic."}},
        {"type": "section", "text": {"type": "mrkdwn", "text": "*By detector*"},
         "fields": counts or [{"type": "mrkdwn", "text": "-"}]},
        {"type": "section", "text": {"type": "mrkdwn", "text": listed or "-"}},
        {"type": "context", "elements": [{"type": "mrkdwn", "text":
            "see who is locked: `relayguard locks`; unlock one: `relayguard unlock SUBJECT "
            "--reason \"...\"`"}]},
    ]
