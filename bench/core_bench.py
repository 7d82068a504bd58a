"""Throughput and state size of the pure core, all detectors against baselines, in one run.

    .venv/bin/python bench/core_bench.py [--events 100000] [--users 2000] [--state-users 0]

Feeds the same synthetic traffic (sends, successful and failed logins with geo, a few attackers)
through `stream.engine.step` (via the replay loop: user keys and IP keys, as the worker does)
with three configurations: no detectors (the engine's own dedupe/lateness/policy cost), the
three original spine detectors, and every registered detector. Prints events/s and the mean
KeyState bytes per active user and per IP as the worker's table stores them (agents.state_codec,
MessagePack format 2; format 1, the map encoding of before issue 12, beside it as the
baseline). The collector runs with the worker's thresholds unless --gc default.
--state-users N adds a run with all detectors over N users (about three events
each) and prints the bytes per active user at that scale: measured, not extrapolated.
"""

from __future__ import annotations

import argparse
import gc
import random
import statistics
import sys
import time
import zlib
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from relayguard.agents import state_codec
from relayguard.foundation import gc_tuning
from relayguard.foundation.core_params import build_core_params
from relayguard.foundation.settings import Settings
from relayguard.roof.replay import Replayer
from relayguard.stream.detectors import registry
from relayguard.stream.engine import CoreParams, KeyState
from relayguard.stream.records import DeliveryEvent, Event, GeoPoint, LoginEvent, SendEvent


def _size(state: KeyState) -> int:
    """Bytes as the worker's table stores it (agents/state_codec.py)."""
    return len(state_codec.dumps(state))


T0 = 1_796_000_000.0
PLACES = [GeoPoint(52.52, 13.405, 20, "DE", "Berlin"), GeoPoint(48.857, 2.352, 20, "FR", "Paris"),
          GeoPoint(51.507, -0.128, 10, "GB", "London"), GeoPoint(40.713, -74.006, 10, "US", None),
          GeoPoint(35.68, 139.69, 20, "JP", None), GeoPoint(-23.55, -46.63, 50, "BR", None)]


def traffic(n_events: int, n_users: int, seed: int = 1) -> list[Event]:
    rnd = random.Random(seed)
    users = [f"user{i}@example{i % 50}.com" for i in range(n_users)]
    home = {u: (rnd.choice(PLACES), f"198.51.{rnd.randint(0, 255)}.{rnd.randint(1, 254)}")
            for u in users}
    out: list[Event] = []
    t = T0
    span = 7 * 86400.0  # a week of traffic
    for n in range(n_events):
        t += rnd.expovariate(n_events / span)
        eid = f"bench:relay-1:{n:016x}"
        r = rnd.random()
        if r < 0.03:  # attackers: failures from a few IPs against random users
            ip = f"192.0.2.{rnd.randint(1, 20)}"
            out.append(LoginEvent(eid, t, "r1", rnd.choice(users), ip, False,
                                  failure_reason="bad_credentials", password_hash=f"h{n}"))
            continue
        user = rnd.choice(users)
        geo, ip = home[user]
        if rnd.random() < 0.05:  # roaming
            geo, ip = rnd.choice(PLACES), f"203.0.{rnd.randint(0, 255)}.{rnd.randint(1, 254)}"
        if r < 0.70:
            # recipient domains as the policy service reports them: mostly the user's usual
            # correspondents (a pool of 30 per user), sometimes a new one; bounces now and then
            count = rnd.randint(1, 20)
            pool = zlib.crc32(user.encode()) % 1000  # stable across runs (hash() is salted)
            domains = tuple(sorted({f"d{(pool + rnd.randint(0, 29)) % 5000}.example"
                                    if rnd.random() < 0.95 else f"new{rnd.randint(0, 10**6)}.test"
                                    for _ in range(min(count, 5))}))
            out.append(SendEvent(eid, t, "r1", user, ip, user, count, 4000, "TLSv1.3",
                                 recipient_domains=domains,
                                 recipient_domain_count=len(domains)))
            if rnd.random() < 0.02:
                out.append(DeliveryEvent(f"{eid}:d", t + 5, "r1", user, "Q1", "bounced",
                                         recipient_domain=domains[0], dsn="5.1.1"))
        else:
            ok = rnd.random() < 0.9
            out.append(LoginEvent(eid, t, "r1", user, ip, ok, "TLSv1.3", "PLAIN",
                                  None if ok else "bad_credentials", geo=geo))
    return out


def only(params: CoreParams, names: set[str]) -> CoreParams:
    return CoreParams(tuple(d for d in params.detectors if d.spec.name in names), params.policy,
                      params.grace_seconds, params.dedupe_ids)


def measure(label: str, params: CoreParams, events: list[Event]) -> dict[str, float]:
    # Same keys stepped in every configuration, so the no-detector row is the engine's own cost.
    rep = Replayer(params, kinds=("user", "ip"))
    start = time.perf_counter()
    for ev in events:
        rep.feed(ev)
    seconds = time.perf_counter() - start
    user_sizes = [_size(s) for (k, _), s in rep.states.items() if k == "user"]
    ip_sizes = [_size(s) for (k, _), s in rep.states.items() if k == "ip"]
    # the same states in the table's format 1 (fields by name, before issue 12): the baseline
    old_sizes = [len(state_codec._dumps_v1(s)) for (k, _), s in rep.states.items()
                 if k == "user"]
    row = {"events_per_s": len(events) / seconds,
           "user_bytes": statistics.fmean(user_sizes) if user_sizes else 0.0,
           "user_bytes_max": max(user_sizes, default=0),
           "ip_bytes": statistics.fmean(ip_sizes) if ip_sizes else 0.0}
    print(f"{label:<22} {row['events_per_s']:>10,.0f} ev/s   user state mean "
          f"{row['user_bytes']:>7,.0f} B (max {row['user_bytes_max']:,})   "
          f"ip state mean {row['ip_bytes']:>6,.0f} B   format 1: user mean "
          f"{statistics.fmean(old_sizes) if old_sizes else 0.0:,.0f} B "
          f"(max {max(old_sizes, default=0):,})")
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--events", type=int, default=100_000)
    ap.add_argument("--users", type=int, default=2000)
    ap.add_argument("--state-users", type=int, default=0, help="also measure state at N users")
    ap.add_argument("--gc", choices=("throughput", "default"), default="throughput",
                    help="collector thresholds: the worker's (foundation/gc_tuning, default) "
                    "or CPython's (700, 10, 10)")
    args = ap.parse_args()
    events = traffic(args.events, args.users)
    full = build_core_params(Settings())
    if args.gc == "throughput":
        gc_tuning.tune_for_throughput()
    print(f"{len(events):,} events, {args.users:,} users, {len(full.detectors)} detectors, "
          f"gc thresholds {gc.get_threshold()}")
    noop = measure("no detectors", only(full, set()), events)
    spine = measure("spine (3 original)", only(full, {s.name for s in registry.SPINE}), events)
    allr = measure("all detectors", full, events)
    print(f"all vs spine: {allr['events_per_s'] / spine['events_per_s']:.2f}x throughput, "
          f"+{allr['user_bytes'] - spine['user_bytes']:,.0f} B per user; "
          f"engine alone (no detectors): {noop['events_per_s']:,.0f} ev/s, "
          f"{noop['user_bytes']:,.0f} B per user")
    if args.state_users:
        big = traffic(args.state_users * 3, args.state_users, seed=2)
        measure(f"all, {args.state_users:,} users", full, big)


if __name__ == "__main__":
    main()
