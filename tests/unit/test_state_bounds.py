"""Per-key state stays bounded: a month of busy, varied traffic for one user (and one attacking IP)
must not grow the stored engine state past a fixed size.

The bound is what the Faust table stores per key (changelog record and RocksDB value), so it is
measured as the bytes of agents/state_codec.py, the worker's table codec for KeyState.
"""

from __future__ import annotations

import random

from relayguard.agents import state_codec
from relayguard.foundation.core_params import build_core_params
from relayguard.foundation.settings import Settings
from relayguard.roof.replay import Replayer
from relayguard.stream.engine import KeyState
from relayguard.stream.records import Event, GeoPoint, LoginEvent, SendEvent


def _size(state: KeyState) -> int:
    """Bytes as the worker's table stores it."""
    return len(state_codec.dumps(state))


T0 = 1_796_000_000.0
DAY = 86400.0
# Stated bounds (stored bytes): the engine remembers 256 event-id digests (2 KiB); every
# detector keeps capped tuples. Measured: ~5.8 KB for the busy user, ~3.1 KB for the IP
# (pickle, the codec before, gave ~6.2 and ~3.2 KB).
USER_STATE_BOUND = 10_000
IP_STATE_BOUND = 6_000
PLACES = [(52.52, 13.405, "DE"), (48.857, 2.352, "FR"), (51.507, -0.128, "GB"),
          (40.713, -74.006, "US"), (35.68, 139.69, "JP"), (-23.55, -46.63, "BR"),
          (41.9, 12.5, "IT"), (55.75, 37.62, "RU"), (19.08, 72.88, "IN"), (-33.87, 151.21, "AU")]


def busy_month(user: str, seed: int = 7) -> list[Event]:
    """30 days: ~150 events a day of sends, successes and failures from hundreds of IPs and ten
    countries, with distinct wrong passwords, plaintext sessions and long recipient lists."""
    rnd = random.Random(seed)
    out: list[Event] = []
    t = T0
    n = 0
    while t < T0 + 30 * DAY:
        t += rnd.expovariate(1 / 600)  # ~144 a day
        n += 1
        ip = ".".join(str(rnd.randint(1, 223)) for _ in range(4))
        eid = f"postfix-log:relay-1:{n:016x}"  # realistic id length: ids dominate the state
        lat, lon, country = rnd.choice(PLACES)
        kind = rnd.random()
        if kind < 0.5:
            out.append(SendEvent(eid, t, "r1", user, ip, user, rnd.randint(1, 60), 5000))
        else:
            ok = kind < 0.8
            out.append(LoginEvent(
                eid, t, "r1", user, ip, ok, tls_protocol=rnd.choice([None, "TLSv1.3"]),
                failure_reason=None if ok else "bad_credentials",
                password_hash=None if ok else f"h{rnd.randint(0, 10**6)}",
                geo=GeoPoint(lat, lon, 20.0, country, None),
            ))
    return out


def test_user_and_ip_state_bounded_over_a_busy_month() -> None:
    replayer = Replayer(build_core_params(Settings()))
    events = busy_month("alice@example.com")
    sizes = []
    for i, ev in enumerate(events):
        replayer.feed(ev)
        if i % 500 == 0:
            sizes.append(_size(replayer.states[("user", "alice@example.com")]))
    assert len(events) > 4000
    user_bytes = _size(replayer.states[("user", "alice@example.com")])
    assert user_bytes < USER_STATE_BOUND, user_bytes
    # Bounded, not merely small: the second half of the month is no bigger than the first.
    half = len(sizes) // 2
    assert max(sizes[half:]) <= max(sizes[:half]) * 1.1
    ip_events = busy_month("x")
    ip_replayer = Replayer(build_core_params(Settings()))
    for k, ev in enumerate(ip_events):  # one attacking IP failing against thousands of users
        ip_replayer.feed(LoginEvent(f"postfix-log:relay-1:{k:016x}", ev.event_time, "r1",
                                    f"user{k}@example.com", "192.0.2.66", False,
                                    password_hash=f"h{k}"))
    ip_bytes = _size(ip_replayer.states[("ip", "192.0.2.66")])
    assert ip_bytes < IP_STATE_BOUND, ip_bytes
