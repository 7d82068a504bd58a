"""Write a simulated fleet to a directory:

- `events.jsonl`: every login and send event, one JSON object a line, in event-time order
  (schemas/login-event, schemas/send-event), merged from one generator per user and per attack;
- `labels.json`: the run's config and windows, every attack's label, every user's honest
  behaviours (what the false-positive listing shows);
- `city.mmdb`: the City database of the simulator's synthetic networks (`world.py`);
- `operator.toml`: what a sensible operator configures: the known bulk senders on a bulk plan.
"""

from __future__ import annotations

import heapq
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson

from relayguard.roof.demo_geodb import write_city_db
from relayguard.roof.simulate import world
from relayguard.roof.simulate.attacks import Attack, inject
from relayguard.roof.simulate.behaviour import UserTraffic
from relayguard.roof.simulate.events import Timed
from relayguard.roof.simulate.fleet import Fleet, SimConfig, User, build_fleet
from relayguard.stream.timefmt import to_rfc3339

EVENTS, LABELS, CITY_DB, OPERATOR = "events.jsonl", "labels.json", "city.mmdb", "operator.toml"
Progress = Callable[[int, float], None]


def stream(fleet: Fleet, attacks: list[Attack]) -> Iterator[Timed]:
    """All events in (time, id) order: a heap merge of per-user and per-attack generators."""
    sources: list[Iterator[Timed]] = [UserTraffic(u, fleet.config).events() for u in fleet.users]
    sources += [iter(a.events) for a in attacks]
    return heapq.merge(*sources)  # (time, unique id, ...) tuples: the dicts never compare


def labels(fleet: Fleet, attacks: list[Attack], events: int) -> dict[str, Any]:
    cfg = fleet.config
    victims = {v for a in attacks for v in a.victims}
    return {
        "format": 1,
        "config": {"seed": cfg.seed, "users": cfg.users, "orgs": cfg.orgs,
                   "warmup_days": cfg.warmup_days, "scored_days": cfg.scored_days,
                   "attacks": cfg.attacks, "password_hashes": cfg.password_hashes},
        "start": cfg.start, "scored_start": cfg.scored_start, "end": cfg.end,
        "start_iso": to_rfc3339(cfg.start), "scored_start_iso": to_rfc3339(cfg.scored_start),
        "end_iso": to_rfc3339(cfg.end), "events": events,
        "attacks": [a.label() for a in attacks],
        "users": {u.name: _user_label(u, u.name in victims) for u in fleet.users},
    }


def _user_label(u: User, victim: bool) -> dict[str, Any]:
    """What the user is and when its look-alike habits happen (day indices from `start`)."""
    d: dict[str, Any] = {"org": u.org.domain, "country": u.country, "size": u.size,
                         "tags": u.tags, "victim": victim}
    if u.trips:
        d["trips"] = [{"to": t.dest.name, "country": t.dest.country, "depart_day": t.depart_day,
                       "return_day": t.return_day} for t in u.trips]
    for name in ("stale_phone", "new_phone_day", "vacation", "silent_until"):
        value = getattr(u, name)
        if value is not None:
            d[name] = value
    if u.vpn_share:
        d["vpn_share"] = round(u.vpn_share, 2)
    return d


def operator_toml(fleet: Fleet) -> str:
    lines = ["# What a sensible operator configures for this fleet: the known bulk senders",
             "# (newsletters, transactional mail) on a plan of their own. Nothing else.",
             "[detectors.volume.plans.bulk]",
             "messages_1m = 60", "messages_1h = 3000", "messages_24h = 20000",
             "recipients_1m = 5000", "recipients_1h = 10000", "recipients_24h = 50000", ""]
    for u in fleet.users:
        if u.size in ("newsletter", "transactional"):
            lines += [f'[detectors.volume.users."{u.name}"]', 'plan = "bulk"', ""]
    return "\n".join(lines)


def generate(cfg: SimConfig, out: Path, progress: Progress | None = None,
             every: int = 200_000) -> dict[str, Any]:
    out.mkdir(parents=True, exist_ok=True)
    fleet = build_fleet(cfg)
    attacks = inject(fleet)
    started = time.perf_counter()
    n = 0
    with (out / EVENTS).open("wb") as fh:
        for _t, _eid, record in stream(fleet, attacks):
            fh.write(orjson.dumps(record))
            fh.write(b"\n")
            n += 1
            if progress and n % every == 0:
                progress(n, time.perf_counter() - started)
    lab = labels(fleet, attacks, n)
    (out / LABELS).write_bytes(orjson.dumps(lab, option=orjson.OPT_INDENT_2) + b"\n")
    (out / OPERATOR).write_text(operator_toml(fleet))
    write_city_db(out / CITY_DB, world.places())
    lab["seconds"] = time.perf_counter() - started
    return lab
