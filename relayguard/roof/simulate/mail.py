"""Who mail goes to, whom it claims to be from, and whether it bounces.

Honest users write to a stable set of domains (their own organisation, a few partners, the big
mailbox providers) and only now and then to a new one; mailing lists reach the same members each
time; newsletters and transactional senders reach many subscribers' domains, new ones every day.
Spam goes to harvested lists: a share of big providers and many domains nobody in the fleet ever
wrote to, and bounces at a rate a list hygiene service would be ashamed of.

Every draw here comes from a random generator of its own (per user, per attack), never from the
generator that draws times and sessions, so the fleet's logins and sends are the same with or
without these fields and a seed still gives byte-identical output. Shares and rates are our
judgement (see docs/simulator.md), not measured from a real fleet.
"""

from __future__ import annotations

import random
from collections.abc import Iterable

MAX_LISTED = 32  # the send event's recipient_domains holds at most this many

# Mailbox providers everyone writes to (".test" names: nothing here is a real domain).
PROVIDERS = ("gmail.test", "outlook.test", "yahoo.test", "gmx.test", "web.test",
             "orange.test", "icloud.test", "hotmail.test", "libero.test", "free.test",
             "t-online.test", "aol.test", "mail.test", "proton.test", "seznam.test", "wp.test")
PARTNERS = 4000  # business correspondents outside the fleet: partner0000.example ...
SUBSCRIBERS = 60000  # small domains of newsletter subscribers and shop customers


def partner(rng: random.Random) -> str:
    # Zipf-like: a few partners are everybody's (banks, tax advisers), most are someone's.
    return f"partner{min(PARTNERS - 1, int(rng.paretovariate(0.6)) - 1):04d}.example"


def subscriber(rng: random.Random) -> str:
    if rng.random() < 0.55:
        return rng.choice(PROVIDERS)
    return f"home{rng.randrange(SUBSCRIBERS):05d}.example"


def harvested(rng: random.Random) -> str:
    """A spam target's domain: big providers, or a domain from a scraped list."""
    if rng.random() < 0.45:
        return rng.choice(PROVIDERS)
    return f"list{rng.randrange(2_000_000):07d}.example"


class Correspondents:
    """One honest user's recipients: the own domain, a personal set of partners and providers,
    a stable mailing list, and now and then a domain written to for the first time."""

    def __init__(self, rng: random.Random, own: str, colleagues: list[str]) -> None:
        self.rng = rng
        self.own = own
        known = {rng.choice(PROVIDERS) for _ in range(rng.randint(2, 6))}
        known |= {partner(rng) for _ in range(rng.randint(3, 25))}
        known |= set(rng.sample(colleagues, min(len(colleagues), rng.randint(0, 3))))
        known.discard(own)
        self.known = sorted(known)
        self.new_share = rng.uniform(0.01, 0.06)  # recipients at a domain new to the user
        self.internal = rng.uniform(0.15, 0.5)
        self.list_members: list[str] = sorted(
            {subscriber(rng) for _ in range(rng.randint(20, 120))} | {partner(rng)
                                                                     for _ in range(10)})

    def domain(self) -> str:
        rng = self.rng
        r = rng.random()
        if r < self.internal:
            return self.own
        if r < self.internal + self.new_share:
            d = partner(rng) if rng.random() < 0.6 else subscriber(rng)
            if d not in self.known and d != self.own:
                self.known.append(d)  # written to once, a correspondent from then on
            return d
        # Favourites first: a few domains carry most of the mail.
        k = min(len(self.known) - 1, int(rng.expovariate(4.0 / max(1, len(self.known)))))
        return self.known[k] if self.known else self.own

    def message(self, recipients: int) -> list[str]:
        return distinct(self.domain() for _ in range(min(recipients, 200)))

    def list_post(self, recipients: int) -> list[str]:
        members = self.list_members
        return distinct(members[(i * 7) % len(members)] for i in range(min(recipients,
                                                                           len(members))))


def distinct(domains: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(domains))  # first seen first


def fields(domains: list[str], count: int | None = None) -> dict[str, object]:
    """The send event's RCPT summary: at most 32 domains listed, first seen first."""
    n = len(domains) if count is None else max(count, len(domains))
    return {"recipient_domains": domains[:MAX_LISTED], "recipient_domain_count": n}


def bounces(rng: random.Random, domains: list[str], recipients: int,
            rate: float) -> list[tuple[str, str, str]]:
    """(status, dsn, recipient domain) for the recipients that did not go through: permanent
    failures (unknown user, mailbox full) and now and then a greylisting deferral."""
    out: list[tuple[str, str, str]] = []
    if not domains:
        return out
    for i in range(recipients):
        if rng.random() < rate:
            d = domains[i % len(domains)]
            if rng.random() < 0.8:
                out.append(("bounced", rng.choice(("5.1.1", "5.1.1", "5.2.2", "5.7.1")), d))
            else:
                out.append(("deferred", "4.7.1", d))
    return out


HONEST_BOUNCE = 0.01  # an address book goes stale slowly
LIST_BOUNCE = 0.02
BULK_BOUNCE = 0.015  # a kept list of subscribers / customers
SPAM_BOUNCE = (0.12, 0.35)  # scraped lists: per attack, a rate in this range
