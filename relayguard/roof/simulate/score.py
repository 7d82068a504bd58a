"""Score a simulated run: replay its events through the production core and hold the actions
against the labels.

`collect` replays (the very `Replayer` and GeoIP enrichment `relayguard replay` uses) and keeps
what a relay would feel: lock commands on users, IP blocks, and every successful login of a user
that an active IP block refused. `evaluate` is pure: labels + actions -> figures.

- An attack is caught when a (non dry-run) lock lands on one of its victims or attacker IPs
  between its first malicious event and an hour after its last; its delay is measured from the
  first malicious send (takeovers) or the first guess (guessing attacks).
- A false lock is a (benign user, day) on which the user was locked, or on which an IP block
  refused one of the user's correct logins (a block of scope "unauthenticated" refuses none;
  for the same reason it does not catch a takeover, whose spam is authenticated). A false
  alert is a (benign user, day) with an alert-only alert about the user. A user lock of scope
  "unfamiliar_networks" counts only on a day it refused one of the user's correct logins from
  a network it does not spare. Rates are per benign
  user per scored day.
- Warm-up is replayed (it is how detectors learn) but never scored.
"""

from __future__ import annotations

import heapq
import statistics
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import orjson

from relayguard.roof.replay import Replayer
from relayguard.stream import codec
from relayguard.stream.detectors.common import network_of
from relayguard.stream.engine import CoreParams
from relayguard.stream.lock_sync import apply_command
from relayguard.stream.policy import refuses_authenticated, spared_networks
from relayguard.stream.records import Event, LockCommand, LoginEvent, SubjectKind

_OPERATOR = uuid.UUID("3d0b7c1e-5b7a-4c61-9a0e-6a5f0c2f9b10")
OPERATOR_UNLOCK_S = 86400.0  # a lock until unlocked is lifted by the operator a day later
AFTER_LAST = 3600.0  # a lock this long after an attack's last event still counts as catching it
WITHIN = 60.0


@dataclass(frozen=True)
class Action:
    t: float
    kind: str  # "user" or "ip"
    subject: str
    detector: str
    what: str  # "lock" (user lock or IP block), "alert" (alert only), "refused" (see below)
    user: str | None = None  # for "refused": the user whose correct login an IP block refused
    expires_at: float | None = None
    # for IP locks: False when its scope spares users who authenticate correctly
    refuses_authenticated: bool = True
    # for user locks of scope "unfamiliar_networks": the networks it lets through
    spares: tuple[str, ...] = ()


@dataclass
class Actions:
    items: list[Action] = field(default_factory=list)
    events: int = 0
    seconds: float = 0.0
    cpu_seconds: float = 0.0  # the machine may be shared: CPU time says what the core costs
    bad_lines: int = 0


def _refusal(blocks: dict[tuple[str, str], Action], key: tuple[str, str],
             t: float) -> Action | None:
    block = blocks.get(key)
    if block and (block.expires_at is None or block.expires_at > t):
        return block
    return None


def collect(events: Iterable[Event], params: CoreParams, locator: Any = None,
            progress: Callable[[int, float], None] | None = None, every: int = 200_000,
            operator_unlock_s: float | None = OPERATOR_UNLOCK_S) -> Actions:
    """Replay and keep the actions. A lock until unlocked is lifted by a simulated operator
    `operator_unlock_s` after it was issued (fed back to the core as the worker feeds it an
    operator's unlock from the lock topic), so one false lock does not last the whole run."""
    from relayguard.foundation.geoip import enrich

    replayer = Replayer(params)
    out = Actions()
    blocks: dict[tuple[str, str], Action] = {}  # active locks by (kind, subject)
    unlocks: list[tuple[float, str, str]] = []  # the operator's to-do list: (due, kind, subject)
    started, cpu = time.perf_counter(), time.process_time()
    for event in events:
        while unlocks and unlocks[0][0] <= event.event_time:
            due, kind, subject = heapq.heappop(unlocks)
            _operator_unlock(replayer, kind, subject, due)
            blocks.pop((kind, subject), None)
        if isinstance(event, LoginEvent) and event.success and event.user:
            for kind, key in (("user", event.user), ("ip", event.client_ip)):
                block = _refusal(blocks, (kind, key), event.event_time)
                if block and block.spares and network_of(event.client_ip) in block.spares:
                    continue  # a scoped user lock lets the user's own network through
                if block and block.refuses_authenticated:
                    out.items.append(Action(event.event_time, kind, key, block.detector,
                                            "refused", user=event.user))
        if locator is not None:
            event = enrich(event, locator)
        for res in replayer.feed(event):
            for c in res.commands:
                if c.dry_run:
                    continue
                if c.action == "unlock":
                    blocks.pop((c.subject_kind, c.subject), None)
                    continue
                a = Action(c.issued_at, c.subject_kind, c.subject, c.detector, "lock",
                           expires_at=c.expires_at,
                           refuses_authenticated=refuses_authenticated(c),
                           spares=tuple(sorted(spared_networks(c))))
                out.items.append(a)
                blocks[(c.subject_kind, c.subject)] = a
                if c.expires_at is None and operator_unlock_s is not None:
                    heapq.heappush(unlocks, (c.issued_at + operator_unlock_s, c.subject_kind,
                                             c.subject))
            for al in res.alerts:
                # Alert-only findings; a lock detector's finding on a subject already locked
                # also comes as a command-less alert, and is not a second action.
                alert_only = params.policy.for_detector(al.detector).remedy == "alert"
                if al.command_id is None and (alert_only or al.dry_run):
                    out.items.append(Action(al.event_time, al.subject_kind, al.subject,
                                            al.detector, "alert"))
        out.events += 1
        if progress and out.events % every == 0:
            progress(out.events, time.perf_counter() - started)
    replayer.finish()
    out.seconds = time.perf_counter() - started
    out.cpu_seconds = time.process_time() - cpu
    return out


def _operator_unlock(replayer: Replayer, kind: str, subject: str, now: float) -> None:
    sk: SubjectKind = "user" if kind == "user" else "ip"
    state = replayer.states.get((sk, subject))
    if state is None or not state.lock.locked:
        return
    version = max(state.lock.version + 1, int(now * 1000))
    command = LockCommand(
        command_id=str(uuid.uuid5(_OPERATOR, f"{kind}:{subject}:{version}")), subject=subject,
        subject_kind=sk, action="unlock", reason="simulated operator lifts the lock",
        detector="operator", evidence={}, issued_at=now, expires_at=None,
        issuer="simulated-operator", version=version, severity="info")
    replayer.states[(sk, subject)] = replace(state, lock=apply_command(state.lock, command))


def save_actions(actions: Actions, path: Path) -> None:
    """The replay's outcome, so the figures can be recomputed without replaying."""
    head = {"events": actions.events, "seconds": actions.seconds,
            "cpu_seconds": actions.cpu_seconds, "bad_lines": actions.bad_lines}
    with path.open("wb") as fh:
        fh.write(orjson.dumps(head) + b"\n")
        for x in actions.items:
            fh.write(orjson.dumps(asdict(x)) + b"\n")


def _action(raw: dict[str, Any]) -> Action:
    raw["spares"] = tuple(raw.get("spares", ()))
    return Action(**raw)


def load_actions(path: Path) -> Actions:
    lines = path.read_bytes().splitlines()
    head = orjson.loads(lines[0])
    return Actions([_action(orjson.loads(line)) for line in lines[1:]], head["events"],
                   head["seconds"], head["cpu_seconds"], head["bad_lines"])


def read_events(path: Path, on_bad: Callable[[int, str], None] | None = None,
                actions: Actions | None = None) -> Iterable[Event]:
    with path.open("rb") as fh:
        for number, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                yield codec.decode_event(line)
            except codec.Rejected as exc:
                if actions is not None:
                    actions.bad_lines += 1
                if on_bad:
                    on_bad(number, f"{exc.reason}: {exc.detail[:200]}")


def _attack_result(a: dict[str, Any], by_subject: dict[tuple[str, str], list[Action]]
                   ) -> dict[str, Any]:
    lo, hi = a["first_malicious_at"] - 1.0, a["last_malicious_at"] + AFTER_LAST
    subjects = [("user", v) for v in a["victims"]] + [("ip", ip) for ip in a["attacker_ips"]]
    ref_key = "first_guess_at" if a["reference"] == "first_guess" else "first_send_at"
    ref = a.get(ref_key) or a["first_malicious_at"]
    # A throttle that ran out before the reference time (say, on a stuffing IP before its
    # spam run) stopped nothing that matters: only locks still in force then or later count.
    # A takeover is stopped by an IP block only if the block refuses the attacker's
    # authenticated sends; a guesser is stopped by any block on its address.
    takeover = a["reference"] != "first_guess"
    locks = sorted((x for s in subjects for x in by_subject.get(s, ())
                    if x.what == "lock" and lo <= x.t <= hi
                    and (x.expires_at is None or x.expires_at > ref)
                    and not (takeover and x.kind == "ip" and not x.refuses_authenticated)),
                   key=lambda x: x.t)
    alerts = sorted((x for s in subjects for x in by_subject.get(s, ())
                     if x.what in ("lock", "alert") and lo <= x.t <= hi), key=lambda x: x.t)
    first = locks[0] if locks else None
    delay = None if first is None else first.t - ref
    return {
        "id": a["id"], "kind": a["kind"], "victims": a["victims"],
        "caught": first is not None, "locked_by": first.detector if first else None,
        "locked_subject": f"{first.kind}:{first.subject}" if first else None,
        "delay_s": None if delay is None else round(delay, 3),
        "within_60s": delay is not None and delay <= WITHIN,
        "alerted": bool(alerts), "first_signal": alerts[0].detector if alerts else None,
    }


def _rate(n: int, users: int, days: float) -> float:
    return n / (users * days) if users and days else 0.0


def evaluate(labels: dict[str, Any], actions: Actions) -> dict[str, Any]:
    scored_start, end = labels["scored_start"], labels["end"]
    days = (end - scored_start) / 86400.0
    users: dict[str, Any] = labels["users"]
    benign = {name for name, info in users.items() if not info["victim"]}
    by_subject: dict[tuple[str, str], list[Action]] = defaultdict(list)
    for x in actions.items:
        by_subject[(x.kind, x.subject)].append(x)

    results = [_attack_result(a, by_subject) for a in labels["attacks"]]
    kinds: dict[str, dict[str, Any]] = {}
    for r in results:
        k = kinds.setdefault(r["kind"], {"attacks": 0, "caught": 0, "within_60s": 0,
                                         "alerted": 0, "delays": []})
        k["attacks"] += 1
        k["caught"] += r["caught"]
        k["within_60s"] += r["within_60s"]
        k["alerted"] += r["alerted"]
        if r["delay_s"] is not None:
            k["delays"].append(r["delay_s"])
    for k in kinds.values():
        k["median_delay_s"] = statistics.median(k["delays"]) if k["delays"] else None
        del k["delays"]

    # Benign users acted on, in the scored window: one entry per (user, day, what).
    lock_days: set[tuple[str, int]] = set()
    alert_days: set[tuple[str, int]] = set()
    user_lock_days: set[tuple[str, int]] = set()
    ip_block_days: set[tuple[str, int]] = set()
    acted: dict[tuple[str, str, str], dict[str, Any]] = {}
    causes: Counter[tuple[str, str, str]] = Counter()
    for x in sorted(actions.items, key=lambda x: x.t):
        if not scored_start <= x.t < end:
            continue
        if x.what == "refused":  # a correct login refused by an IP block or the user's lock
            user, what = x.user, "ip_block" if x.kind == "ip" else "locked_out"
        elif x.kind == "user" and x.what in ("lock", "alert"):
            if x.spares:
                continue  # a scoped lock counts by the correct logins it refused
            user, what = x.subject, x.what
        else:
            continue
        if user not in benign:
            continue
        day = int((x.t - scored_start) // 86400)
        key = (user, day)
        if what == "alert":
            if key in alert_days:
                continue
            alert_days.add(key)
        else:
            (ip_block_days if what == "ip_block" else user_lock_days).add(key)
            if key in lock_days:
                continue
            lock_days.add(key)
        entry = acted.setdefault((user, what, x.detector), {
            "user": user, "action": what, "detector": x.detector,
            "subject": f"{x.kind}:{x.subject}", "first_at": x.t, "days": 0,  # user-days
            "tags": users.get(user, {}).get("tags", []),
        })
        entry["days"] += 1
        for tag in entry["tags"] or ["(none)"]:
            causes[("alert" if what == "alert" else "lock", x.detector, tag)] += 1

    caught = sum(r["caught"] for r in results)
    fast = sum(r["within_60s"] for r in results)
    total = len(results)
    nb = len(benign)
    return {
        "events": actions.events, "seconds": round(actions.seconds, 2),
        "events_per_s": round(actions.events / actions.seconds) if actions.seconds else None,
        "cpu_seconds": round(actions.cpu_seconds, 2),
        "events_per_cpu_s": (round(actions.events / actions.cpu_seconds)
                             if actions.cpu_seconds else None),
        "bad_lines": actions.bad_lines,
        "benign_users": nb, "scored_days": days,
        "attacks": total, "caught": caught, "within_60s": fast,
        "alerted": sum(r["alerted"] for r in results),
        "recall": caught / total if total else None,
        "recall_60s": fast / total if total else None,
        "false_lock_user_days": len(lock_days),
        "false_lock_rate": _rate(len(lock_days), nb, days),
        "false_user_lock_rate": _rate(len(user_lock_days), nb, days),
        "false_ip_block_rate": _rate(len(ip_block_days), nb, days),
        "false_alert_user_days": len(alert_days),
        "false_alert_rate": _rate(len(alert_days), nb, days),
        "by_kind": kinds,
        "attack_results": results,
        "benign_acted_on": sorted(acted.values(), key=lambda e: (e["first_at"], e["user"])),
        "causes": [{"remedy": r, "detector": d, "tag": t, "user_days": n}
                   for (r, d, t), n in causes.most_common()],
    }
