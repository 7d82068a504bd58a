"""What the worker knows about one subject, as a JSON-able document: pure, no I/O, no clock.

Per enabled detector of the subject's kind: its counters per window against their limits (volume
limits resolved through the tiers for that user), the learned baseline, the last locations with
times; detectors without a dedicated view show their state as plain data. Plus the lock state
the worker believes it has told the relays (policy.LockState). Counts are taken as of `now`
(the caller's clock), so a window the subject stopped sending in shows what is left of it.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import math
from collections.abc import Callable
from typing import Any

from relayguard.stream import windows
from relayguard.stream.detectors import (
    auth_failures,
    auth_failures_ip,
    auth_failures_slow,
    distinct,
    impossible_travel,
    new_country,
    too_many_places,
    volume,
    volume_baseline,
)
from relayguard.stream.detectors.common import Recent
from relayguard.stream.engine import CoreParams, KeyState
from relayguard.stream.policy import LockState
from relayguard.stream.records import GeoPoint, SubjectKind
from relayguard.stream.timefmt import to_rfc3339

Doc = dict[str, Any]
MAX_LIST = 50  # longest list of anything shown per detector (states are bounded anyway)


def when(t: float | None) -> Doc | None:
    """A time as epoch seconds and RFC 3339 (None for never / -inf)."""
    if t is None or not math.isfinite(t):
        return None
    return {"epoch": t, "utc": to_rfc3339(t)}


def plain(value: Any) -> Any:
    """Any core state value as JSON-able data (dataclasses by field, -inf as None)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, bytes):
        return {"bytes": len(value)}
    if isinstance(value, tuple | list):
        return [plain(v) for v in value[:MAX_LIST]]
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in list(value.items())[:MAX_LIST]}
    return value


def _geo(geo: GeoPoint) -> Doc:
    return {"country": geo.country, "city": geo.city, "latitude": geo.latitude,
            "longitude": geo.longitude, "accuracy_radius_km": geo.accuracy_radius_km}


def _recent(recent: Recent, key: str) -> list[Doc]:
    """Newest first."""
    return [{key: k, "last_seen": when(t)} for k, t in reversed(recent[-MAX_LIST:])]


def _window(spec: windows.WindowSpec) -> Doc:
    return {"length_seconds": spec.length, "bucket_seconds": spec.bucket}


def _counter(name: str, count: int, limit: int | None, window: Doc, **extra: Any) -> Doc:
    return {"name": name, "count": count, "limit": limit, "window": window,
            "over": limit is not None and count > limit, **extra}


def _volume(p: volume.Params, s: volume.State, subject: str, now: float) -> Doc:
    counts = s.counts if len(s.counts) == len(p.limits) else ((),) * len(p.limits)
    at = max(now, s.watermark)
    counters = [
        _counter(lim.name, windows.total(buckets, lim.window, at), value, _window(lim.window),
                 measure=lim.measure, tier=tier)
        for lim, buckets, (value, tier) in zip(p.limits, counts, volume.resolve(p, subject),
                                               strict=True)
    ]
    return {"last_event": when(s.watermark), "counters": counters}


def _baseline(p: volume_baseline.Params, s: volume_baseline.State, subject: str,
              now: float) -> Doc:
    learned_at = None if s.first_seen is None else s.first_seen + p.learning_seconds
    exp = volume_baseline.expected(p, s, s.hour)
    return {
        "measure": p.measure, "profile": p.profile,
        "first_seen": when(s.first_seen), "learning_until": when(learned_at),
        "learned": learned_at is not None and now >= learned_at,
        "current_hour": when(s.hour * volume_baseline.HOUR) if s.first_seen is not None else None,
        "current_hour_count": s.current,
        "expected_this_hour": round(exp, 2), "threshold": round(p.multiple * exp, 2),
        "floor": p.floor, "multiple": p.multiple,
        "slots": [round(v, 2) for v in s.profile],
    }


def _travel(p: impossible_travel.Params, s: impossible_travel.State, subject: str,
            now: float) -> Doc:
    last = s.last
    return {"max_speed_kmh": p.max_speed_kmh,
            "last_login": None if last is None else
            {"time": when(last.time), "ip": last.ip, **_geo(last.geo)}}


def _new_country(p: new_country.Params, s: new_country.State, subject: str, now: float) -> Doc:
    return {"first_seen": when(s.first_seen), "logins": s.logins,
            "learning_until": when(None if s.first_seen is None
                                   else s.first_seen + p.learning_seconds),
            "learning_logins": p.learning_logins,
            "countries": _recent(s.countries, "country")}


def _distinct_count(s: distinct.State, window: float, now: float) -> int:
    horizon = max(now, s.watermark) - window
    return sum(1 for _, t in s.seen if t >= horizon)


def _places(p: too_many_places.Params, s: too_many_places.State, subject: str,
            now: float) -> Doc:
    win = {"length_seconds": p.window_seconds}
    return {
        "counters": [
            _counter("countries", _distinct_count(s.countries, p.window_seconds, now),
                     p.max_countries, win),
            _counter("ips", _distinct_count(s.ips, p.window_seconds, now), p.max_ips, win),
        ],
        "countries": _recent(s.countries.seen, "country"),
        "ips": _recent(s.ips.seen, "ip"),
    }


def _auth_failures(p: auth_failures.Params, s: auth_failures.State, subject: str,
                   now: float) -> Doc:
    count = windows.total(s.failures, p.window, max(now, s.watermark))
    return {"last_event": when(s.watermark),
            "counters": [_counter("failures", count, p.max_failures, _window(p.window))],
            "recent_ips": list(reversed(s.recent_ips[-MAX_LIST:]))}


def _auth_failures_slow(p: auth_failures_slow.Params, s: auth_failures_slow.State,
                        subject: str, now: float) -> Doc:
    at = max(now, s.watermark)
    recent = [(net, t) for net, t in s.failures if t > at - p.window_seconds]
    networks = sorted({net for net, _ in recent})
    window = {"length_seconds": p.window_seconds}
    return {"last_event": when(s.watermark),
            "counters": [_counter("failures_from_unfamiliar_networks", len(recent),
                                  p.max_failures, window),
                         _counter("unfamiliar_networks", len(networks), p.min_networks, window)],
            "unfamiliar_networks": networks[:MAX_LIST],
            "familiar_networks": _recent(s.familiar, "network"),
            "recent_ips": list(reversed(s.recent_ips[-MAX_LIST:]))}


def _auth_failures_ip(p: auth_failures_ip.Params, s: auth_failures_ip.State, subject: str,
                      now: float) -> Doc:
    counts = s.counts if len(s.counts) == len(p.rules) else ((),) * len(p.rules)
    at = max(now, s.watermark)
    return {"last_event": when(s.watermark),
            "counters": [_counter(r.name, windows.total(b, r.window, at), r.max_failures,
                                  _window(r.window)) for r, b in zip(p.rules, counts, strict=True)],
            "users": _recent(s.users, "user")}


def _distinct(p: Any, s: distinct.State, subject: str, now: float) -> Doc:
    return {"last_event": when(s.watermark),
            "counters": [_counter(r.name, _distinct_count(s, r.window_seconds, now),
                                  r.max_distinct, {"length_seconds": r.window_seconds})
                         for r in p.rules],
            "values": _recent(s.seen, "value")}


View = Callable[[Any, Any, str, float], Doc]
VIEWS: dict[str, View] = {
    volume.NAME: _volume,
    volume_baseline.NAME: _baseline,
    impossible_travel.NAME: _travel,
    new_country.NAME: _new_country,
    too_many_places.NAME: _places,
    auth_failures.NAME: _auth_failures,
    auth_failures_slow.NAME: _auth_failures_slow,
    auth_failures_ip.NAME: _auth_failures_ip,
    "password_spray": _distinct,
    "distributed_guessing": _distinct,
}


MAX_SUBJECT = 320  # an e-mail address at most


def subject_problem(kind: str, subject: str) -> str | None:
    """Why `subject` cannot be a `kind` subject, or None (shared by the API and the CLI)."""
    if kind not in ("user", "ip"):
        return f"kind must be 'user' or 'ip', not {kind[:20]!r}"
    if not subject or len(subject) > MAX_SUBJECT or not subject.isprintable():
        return f"a {kind} is 1 to {MAX_SUBJECT} printable characters"
    if kind == "ip":
        try:
            ipaddress.ip_address(subject)
        except ValueError:
            return f"{subject[:60]!r} is not an IP address"
    return None


def lock_view(lock: LockState, now: float) -> Doc:
    active = lock.locked and (lock.expires_at is None or lock.expires_at > now)
    return {"locked": lock.locked, "active": active, "remedy": lock.remedy,
            "expires_at": when(lock.expires_at), "version": lock.version,
            "command_id": lock.command_id, "scope": lock.scope,
            "last_alerts": [{"detector": d, "at": when(t)} for d, t in lock.last_alert_at]}


def status_document(kind: SubjectKind, subject: str, state: KeyState | None,
                    params: CoreParams, now: float) -> Doc:
    """The status of one subject. `state` None: the worker has never seen it."""
    st = state or KeyState()
    own = dict(st.detectors)
    detectors: Doc = {}
    for d in params.for_kind(kind):
        name = d.spec.name
        s = own.get(name)
        if s is None:
            detectors[name] = {"seen": False}
            continue
        view = VIEWS.get(name)
        try:
            body = view(d.params, s, subject, now) if view else {"state": plain(s)}
        except (TypeError, ValueError, AttributeError, IndexError) as exc:
            # a state shape this view does not know (params changed): show it raw
            body = {"state": plain(s), "view_error": str(exc)}
        detectors[name] = {"seen": True, **body}
    return {
        "kind": kind, "subject": subject, "known": state is not None,
        "as_of": when(now), "last_event": when(st.watermark), "late_events": st.late_events,
        "lock": lock_view(st.lock, now), "detectors": detectors,
    }
