"""A simulated relay fleet that keeps going: steady normal traffic and, now and then, one of the
scripted attacks against a fresh account. What `relayguard demo --follow` plays."""

from __future__ import annotations

import random

from relayguard.roof.demo_scenario import RELAYS, login, send
from relayguard.stream.records import Event

# Home addresses in the demo City database: Berlin, Potsdam, London, Amsterdam, Paris.
HOMES = ("192.0.2.11", "192.0.2.70", "192.0.2.140", "203.0.113.20", "2001:db8::20")
USERS = tuple(f"staff{i:02d}@example.com" for i in range(40))
ATTACKS = ("spam burst", "password guessing", "continent jump")


def normal_tick(now: float, rnd: random.Random) -> list[Event]:
    """A few seconds of ordinary use: some logins with TLS from home, some small messages."""
    out: list[Event] = []
    for _ in range(rnd.randint(1, 4)):  # ~2 messages a minute per user: well under limits
        i = rnd.randrange(len(USERS))
        user, ip, relay = USERS[i], HOMES[i % len(HOMES)], RELAYS[i % len(RELAYS)]
        if rnd.random() < 0.3:
            out.append(login(now, user, ip, relay=relay))
        else:
            out.append(send(now, user, ip, rnd.randint(1, 4), relay))
    return out


def attack(n: int, now: float) -> tuple[str, str, list[Event]]:
    """The n-th attack: (kind, victim, events)."""
    kind = ATTACKS[n % len(ATTACKS)]
    victim = f"victim{n:03d}@example.com"
    if kind == "spam burst":
        events: list[Event] = [login(now, victim, "203.0.113.9", relay=RELAYS[1])]
        events += [send(now + 0.1 * k, victim, "203.0.113.9", 20, RELAYS[1]) for k in range(12)]
    elif kind == "password guessing":
        ip = f"203.0.113.{200 + n % 50}"
        events = [login(now + 0.5 * k, victim, ip, ok=False, relay=RELAYS[k % 3])
                  for k in range(6)]
    else:
        events = [login(now - 600, victim, "192.0.2.30", relay=RELAYS[0]),
                  login(now, victim, "198.51.100.9", relay=RELAYS[2])]
    return kind, victim, events
