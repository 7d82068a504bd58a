"""Injected, labelled attacks. Each injector returns its events and its label: the victim(s),
the attackers' IPs, when the first malicious event, the first guess and the first malicious send
happened. The scorer measures time-to-lock from `first_send_at` (takeovers) or `first_guess_at`
(guessing attacks), as the label's `reference` says."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from relayguard.roof.simulate import mail, world
from relayguard.roof.simulate.events import RELAYS, Emitter, Timed
from relayguard.roof.simulate.fleet import DAY, Fleet, User

GUESSING = ("brute_force_fast", "brute_force_slow", "spray_fast", "spray_slow")
KINDS: tuple[str, ...] = (
    "stuffing_spam", "brute_force_fast", "brute_force_slow", "spray_fast", "spray_slow",
    "impossible_travel", "new_country_burst", "slow_spam_abroad", "slow_spam_home",
    "dormant_abroad", "dormant_home", "plaintext_auth",
)
MIN = 60.0
HOUR = 3600.0


@dataclass
class Attack:
    id: str
    kind: str
    victims: list[str]
    emit: Emitter
    rng: random.Random
    relay: str
    events: list[Timed] = field(default_factory=list)
    attacker_ips: list[str] = field(default_factory=list)
    targets: list[str] = field(default_factory=list)  # users guessed at but not taken over
    notes: str = ""
    # Recipients, envelope senders and bounces: a generator of their own (see mail.py), so the
    # attack's times are the same with or without them.
    mrng: random.Random = field(default_factory=lambda: random.Random(0))
    # "own" (the victim's address), "own_domain" (made-up boxes of the victim's domain) or
    # "foreign" (other domains): what the spam tool puts in MAIL FROM.
    senders: str = "own"
    bounce_rate: float = 0.2

    def setup_mail(self, seed: int, index: int) -> None:
        self.mrng = random.Random(f"attack-mail:{seed}:{index}")
        self.senders = self.mrng.choices(("own", "own_domain", "foreign"), (4, 3, 3))[0]
        self.bounce_rate = self.mrng.uniform(*mail.SPAM_BOUNCE)

    def sender_for(self, user: str, drawn: str) -> str:
        m, domain = self.mrng, user.split("@")[1]
        if self.senders == "own":
            return user
        if self.senders == "own_domain":
            return drawn if drawn != user else f"{m.choice(('info', 'billing', 'hr'))}@{domain}"
        if m.random() < 0.2:
            return user
        return f"{m.choice(('service', 'support', 'noreply', 'news'))}@" \
               f"{m.choice(('secure-pay', 'parcel-track', 'bank-alert', 'promo'))}" \
               f"{m.randrange(500)}.test"

    def login(self, t: float, user: str, ip: str, ok: bool = True, **kw: Any) -> None:
        if ip not in self.attacker_ips:
            self.attacker_ips.append(ip)
        self.events.append(self.emit.login(t, self.rng.choice(RELAYS), user, ip, ok, **kw))

    def send(self, t: float, user: str, ip: str, recipients: int, tls: bool = True,
             sender: str | None = None) -> None:
        size = self.rng.randint(2_000, 20_000)
        m = self.mrng
        domains = mail.distinct(mail.harvested(m) for _ in range(recipients))
        item = self.emit.send(t, self.relay, user, ip, recipients, size,
                              self.sender_for(user, sender or user), tls, mail.fields(domains))
        self.events.append(item)
        for status, dsn, domain in mail.bounces(m, domains, recipients, self.bounce_rate):
            later = m.uniform(2, 60) if status == "bounced" else m.uniform(60, 900)
            self.events.append(self.emit.delivery(t + later, self.relay, user,
                                                  item[2]["queue_id"], status, dsn, domain))

    def spam(self, t: float, user: str, ip: str, count: int, gap: tuple[float, float],
             rcpt: tuple[int, int], tls: bool = True, relogin_every: int = 0) -> float:
        """`count` messages, one every `gap` seconds; a fresh SMTP login every N messages."""
        for k in range(count):
            if relogin_every and k and k % relogin_every == 0:
                self.login(t, user, ip, tls=tls)
                t += 1
            sender = user if self.rng.random() < 0.6 else f"info{self.rng.randrange(99)}@" + \
                user.split("@")[1]
            self.send(t, user, ip, self.rng.randint(*rcpt), tls, sender)
            t += self.rng.uniform(*gap)
        return t

    def label(self) -> dict[str, Any]:
        logins = [e for e in self.events if e[2]["type"] == "login"]
        malicious = [e for e in self.events if e[2].get("client_ip") in self.attacker_ips]
        guesses = [e for e in logins if not e[2]["success"] and e[2]["client_ip"]
                   in self.attacker_ips]
        sends = [e for e in malicious if e[2]["type"] == "send"]
        return {
            "id": self.id, "kind": self.kind, "victims": self.victims,
            "attacker_ips": self.attacker_ips, "targets": self.targets,
            "first_malicious_at": min(e[0] for e in malicious),
            "first_guess_at": min((e[0] for e in guesses), default=None),
            "first_send_at": min((e[0] for e in sends), default=None),
            "last_malicious_at": max(e[0] for e in malicious),
            "reference": "first_guess" if self.kind in GUESSING else "first_send",
            "events": len(self.events), "notes": self.notes,
        }


def _abroad_ip(rng: random.Random, home: str, far_from: world.City | None = None) -> str:
    """A residential proxy or a VPS in a country that is not `home`."""
    options = [c for c in world.ATTACK_COUNTRIES if c != home]
    if far_from is not None:
        options = [c for c in options
                   if world.distance_km(far_from, world.cities_of(c)[0]) > 3000]
    country = rng.choice(options)
    dc = world.datacentre_in(country)
    if dc and rng.random() < 0.5:
        return world.datacentre_ip(rng, dc)
    return world.fixed_ip(rng, rng.choice(world.cities_of(country)))


def _home_proxy_ip(rng: random.Random, victim: User) -> str:
    """A residential proxy in the victim's own country (another subscriber's line)."""
    return world.fixed_ip(rng, rng.choice(world.cities_of(victim.country)))


def _guess(a: Attack, t: float, user: str, ip: str, reason: str = "bad_credentials") -> None:
    a.login(t, user, ip, ok=False, reason=reason, secret=f"{a.id}:{a.rng.random()}")


def stuffing_spam(a: Attack, t: float, victim: User, fleet: Fleet) -> None:
    rng = a.rng
    ips = [_abroad_ip(rng, victim.country) for _ in range(4)]
    others = rng.sample([u.name for u in fleet.users if u.name != victim.name], 50)
    fake = [f"{w}@{victim.org.domain}" for w in ("admin", "info", "sales", "office", "test")]
    names = others + fake
    hit_at = rng.randrange(10, len(names))
    names.insert(hit_at, victim.name)
    a.targets = others
    win_ip = ips[0]
    for k, name in enumerate(names):
        ip = ips[k % len(ips)]
        if name == victim.name:
            a.login(t, name, ip)
            win_ip = ip
        else:
            _guess(a, t, name, ip, "unknown_user" if name in fake else "bad_credentials")
        t += rng.uniform(5, 25)
    t = a.spam(t + rng.uniform(120, 480), victim.name, win_ip, rng.randint(150, 400),
               (2, 6), (1, 20), relogin_every=50)
    a.notes = "one try per account from 4 IPs abroad; the hit spams from its IP"


def brute_force_fast(a: Attack, t: float, victim: User, fleet: Fleet) -> None:
    ip = _abroad_ip(a.rng, victim.country)
    for _ in range(a.rng.randint(80, 200)):
        _guess(a, t, victim.name, ip)
        t += a.rng.uniform(0.5, 2.0)
    a.notes = "one IP abroad, a guess every 0.5-2 s"


def brute_force_slow(a: Attack, t: float, victim: User, fleet: Fleet) -> None:
    ips = [_abroad_ip(a.rng, victim.country) for _ in range(a.rng.randint(4, 8))]
    end = t + a.rng.uniform(8, 16) * HOUR
    k = 0
    while t < end:
        _guess(a, t, victim.name, ips[k % len(ips)])
        k += 1
        t += a.rng.uniform(4, 15) * MIN
    a.notes = f"{len(ips)} rotating IPs, a guess every 4-15 min"


def _spray(a: Attack, t: float, fleet: Fleet, n: tuple[int, int], gap: tuple[float, float],
           home: str) -> None:
    ip = _abroad_ip(a.rng, home)
    names = a.rng.sample([u.name for u in fleet.users], min(len(fleet.users), a.rng.randint(*n)))
    a.targets = names
    for name in names:
        _guess(a, t, name, ip)
        t += a.rng.uniform(*gap)


def spray_fast(a: Attack, t: float, victim: User, fleet: Fleet) -> None:
    _spray(a, t, fleet, (50, 120), (0.5, 2.0), victim.country)
    a.victims = []
    a.notes = "one IP, one common password against many accounts, a try every 0.5-2 s"


def spray_slow(a: Attack, t: float, victim: User, fleet: Fleet) -> None:
    _spray(a, t, fleet, (60, 150), (60, 240), victim.country)
    a.victims = []
    a.notes = "one IP, one try every 1-4 min (never 30 accounts in 2 min)"


def impossible_travel(a: Attack, t: float, victim: User, fleet: Fleet) -> None:
    rng = a.rng
    # The victim's own session at home, then the attacker on another continent minutes later.
    home = victim.home_ip
    a.events.append(a.emit.login(t, a.relay, victim.name, home))
    a.events.append(a.emit.send(t + 20, a.relay, victim.name, home, 1, 12_000,
                                extra=mail.fields([victim.org.domain])))
    ip = _abroad_ip(rng, victim.country, far_from=victim.org.city)
    t += rng.uniform(10, 40) * MIN
    a.login(t, victim.name, ip)
    a.spam(t + rng.uniform(30, 300), victim.name, ip, rng.randint(40, 120), (20, 60), (1, 10))
    a.notes = "victim logs in at home; attacker 10-40 min later from > 3,000 km away"


def new_country_burst(a: Attack, t: float, victim: User, fleet: Fleet) -> None:
    ip = _abroad_ip(a.rng, victim.country)
    a.login(t, victim.name, ip)
    a.spam(t + a.rng.uniform(60, 300), victim.name, ip, a.rng.randint(200, 500), (3, 8),
           (1, 30), relogin_every=100)
    a.notes = "login from a new country, then a burst"


def _slow_spam(a: Attack, t: float, victim: User, ips: list[str]) -> None:
    """Under every fixed limit and under correlation's 50 messages / 100 recipients an hour:
    12-30 messages an hour, 1-4 recipients each, for 10-16 hours, a new session each hour."""
    end = t + a.rng.uniform(10, 16) * HOUR
    k = 0
    while t < end:
        ip = ips[k % len(ips)]
        a.login(t, victim.name, ip)
        session_end = t + HOUR
        t += a.rng.uniform(30, 120)
        while t < session_end and t < end:
            a.send(t, victim.name, ip, a.rng.randint(1, 4))
            t += a.rng.uniform(120, 300)
        k += 1


def slow_spam_abroad(a: Attack, t: float, victim: User, fleet: Fleet) -> None:
    first = _abroad_ip(a.rng, victim.country)
    country = first.split(".")  # same foreign network family for the second proxy
    second = ".".join([*country[:2], str(a.rng.randrange(256)), str(a.rng.randrange(1, 255))])
    _slow_spam(a, t, victim, [first, second])
    a.notes = "two proxies abroad, 12-30 messages an hour for 10-16 h"


def slow_spam_home(a: Attack, t: float, victim: User, fleet: Fleet) -> None:
    ips = [_home_proxy_ip(a.rng, victim) for _ in range(3)]
    _slow_spam(a, t, victim, ips)
    a.notes = "residential proxies in the victim's own country, under every fixed limit"


def _dormant(a: Attack, t: float, victim: User, ip: str) -> None:
    a.login(t, victim.name, ip)
    a.spam(t + a.rng.uniform(60, 600), victim.name, ip, a.rng.randint(60, 150), (20, 60),
           (1, 10), relogin_every=40)


def dormant_abroad(a: Attack, t: float, victim: User, fleet: Fleet) -> None:
    _dormant(a, t, victim, _abroad_ip(a.rng, victim.country))
    a.notes = "an account silent for months wakes up abroad and sends"


def dormant_home(a: Attack, t: float, victim: User, fleet: Fleet) -> None:
    _dormant(a, t, victim, _home_proxy_ip(a.rng, victim))
    a.notes = "an account silent for months wakes up in its own country and sends"


def plaintext_auth(a: Attack, t: float, victim: User, fleet: Fleet) -> None:
    dc = world.datacentre_in(victim.country)
    ip = world.datacentre_ip(a.rng, dc) if dc else _home_proxy_ip(a.rng, victim)
    a.login(t, victim.name, ip, tls=False, mechanism="LOGIN")
    a.spam(t + a.rng.uniform(30, 200), victim.name, ip, a.rng.randint(100, 250), (10, 30),
           (1, 10), tls=False, relogin_every=25)
    a.notes = "a spam tool without TLS, from a server in the victim's country"


INJECTORS: dict[str, Callable[[Attack, float, User, Fleet], None]] = {
    "stuffing_spam": stuffing_spam, "brute_force_fast": brute_force_fast,
    "brute_force_slow": brute_force_slow, "spray_fast": spray_fast, "spray_slow": spray_slow,
    "impossible_travel": impossible_travel, "new_country_burst": new_country_burst,
    "slow_spam_abroad": slow_spam_abroad, "slow_spam_home": slow_spam_home,
    "dormant_abroad": dormant_abroad, "dormant_home": dormant_home,
    "plaintext_auth": plaintext_auth,
}


def _eligible(u: User, kind: str) -> bool:
    if kind.startswith("dormant"):
        return "dormant" in u.tags
    return u.size in ("normal", "heavy", "light") and not {"dormant", "long_silence"} & set(
        u.tags) and (u.size != "light" or kind not in ("new_country_burst", "impossible_travel"))


def inject(fleet: Fleet) -> list[Attack]:
    """`config.attacks` attacks, kinds in turn, at random times in the scored week."""
    cfg = fleet.config
    rng = random.Random(f"attacks:{cfg.seed}")
    taken: set[str] = set()
    out: list[Attack] = []
    for i in range(cfg.attacks):
        kind = KINDS[i % len(KINDS)]
        pool = [u for u in fleet.users if _eligible(u, kind) and u.name not in taken]
        if not pool:
            raise ValueError(f"no user left to be the victim of a {kind} attack: give the "
                             "fleet more users or fewer attacks")
        victim = rng.choice(pool)
        taken.add(victim.name)
        # Leave 18 h for the slow ones to finish inside the scored window.
        t = cfg.scored_start + rng.uniform(0.5 * DAY, cfg.scored_days * DAY - 18 * 3600)
        emit = Emitter(f"a{i + 1:02d}", cfg.password_hashes)
        a = Attack(f"A{i + 1:02d}", kind, [victim.name], emit,
                   random.Random(f"attack:{cfg.seed}:{i}"), rng.choice(RELAYS))
        a.setup_mail(cfg.seed, i)
        INJECTORS[kind](a, t, victim, fleet)
        a.events.sort(key=lambda e: (e[0], e[1]))
        out.append(a)
    return out
