"""The simulated customers: organisations (office, VPN, holidays) and their users (how much they
send, their devices, and the honest habits that look like attacks), drawn from one seed."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import UTC, datetime

from relayguard.roof.simulate import world
from relayguard.roof.simulate.world import City

DAY = 86400.0
DEFAULT_START = datetime(2026, 11, 2, tzinfo=UTC).timestamp()  # a Monday


@dataclass(frozen=True)
class SimConfig:
    seed: int = 1
    users: int = 1600
    orgs: int = 300
    warmup_days: int = 14
    scored_days: int = 7
    attacks: int = 48
    start: float = DEFAULT_START  # 00:00 UTC of the first day; should be a Monday
    password_hashes: bool = False  # relays that supply a keyed hash of the attempted password

    def weekday(self, day: int) -> int:
        """0 = Monday for the run's `day`-th day."""
        return (datetime.fromtimestamp(self.start, UTC).weekday() + day) % 7

    @property
    def days(self) -> int:
        return self.warmup_days + self.scored_days

    @property
    def scored_start(self) -> float:
        return self.start + self.warmup_days * DAY

    @property
    def end(self) -> float:
        return self.start + self.days * DAY


@dataclass(frozen=True)
class Org:
    index: int
    domain: str
    city: City
    office_ip: str  # the office NAT: everyone at the office shares it
    vpn_ip: str | None  # corporate VPN exit, usually in another country
    holidays: frozenset[int]  # day indices that are public holidays at the org


@dataclass(frozen=True)
class Trip:
    dest: City
    depart_day: int
    return_day: int
    depart_hour: float  # local time at the origin
    hotel_ip: str


@dataclass
class User:
    index: int
    name: str
    org: Org
    size: str  # light, normal, heavy, newsletter, transactional
    home_ip: str
    rate: float  # SMTP sessions on a working day
    phone_share: float  # fraction of sessions from the phone
    tags: list[str] = field(default_factory=list)  # honest behaviours, for the FP listing
    stale_phone: tuple[int, int] | None = None  # days [a, b) an old device retries
    new_phone_day: int | None = None
    vpn_share: float = 0.0
    trips: list[Trip] = field(default_factory=list)
    mailing_list: bool = False
    plaintext: bool = False
    works_from_home: bool = False
    vacation: tuple[int, int] | None = None
    preamble_days: tuple[int, ...] = ()  # negative day indices of activity months ago
    silent_until: int | None = None  # no traffic before this day (dormant / long silence)
    server_ip: str | None = None  # bulk senders send from one server
    daily_volume: int = 0  # bulk senders' messages a day

    @property
    def country(self) -> str:
        return self.org.city.country

    def active_on(self, day: int) -> bool:
        if self.silent_until is not None and day < self.silent_until:
            return False
        return not (self.vacation and self.vacation[0] <= day < self.vacation[1])

    def trip_on(self, day: int) -> Trip | None:
        for trip in self.trips:
            if trip.depart_day <= day <= trip.return_day:
                return trip
        return None


@dataclass
class Fleet:
    config: SimConfig
    orgs: list[Org]
    users: list[User]


def _weighted_country(rng: random.Random) -> str:
    names = [c for c, _ in world.HOME_COUNTRIES]
    weights = [w for _, w in world.HOME_COUNTRIES]
    return rng.choices(names, weights)[0]


def _org_sizes(rng: random.Random, orgs: int, users: int) -> list[int]:
    """Heavy-tailed organisation sizes (many one-to-five person shops, a few with dozens)."""
    weights = [min(60.0, rng.paretovariate(1.1)) for _ in range(orgs)]
    total = sum(weights)
    sizes = [max(1, int(users * w / total)) for w in weights]
    i = 0
    while sum(sizes) < users:  # hand out the remainder round the largest organisations
        sizes[i % orgs] += 1
        i += 1
    while sum(sizes) > users:
        j = max(range(orgs), key=lambda k: sizes[k])
        sizes[j] -= 1
    return sizes


def _org(rng: random.Random, index: int, cfg: SimConfig) -> Org:
    days = cfg.days
    country = _weighted_country(rng)
    city = rng.choice(world.cities_of(country))
    vpn_ip = None
    if rng.random() < 0.08:
        # Corporate VPN exits sit in a big European hub, usually in another country.
        hubs = ("Frankfurt", "Amsterdam", "London", "Paris", "Stockholm")
        vpn_ip = world.datacentre_ip(rng, rng.choice(hubs))
    # Country holidays: the same weekday(s) for every org of the country, from the seed.
    holiday_rng = random.Random(f"holidays:{cfg.seed}:{country}")
    weekdays = [d for d in range(days) if cfg.weekday(d) < 5]
    holidays = frozenset(holiday_rng.sample(weekdays, 2)) if weekdays else frozenset()
    return Org(index, f"org{index:03d}.example", city, world.fixed_ip(rng, city), vpn_ip, holidays)


def _size(rng: random.Random) -> tuple[str, float]:
    r = rng.random()
    if r < 0.40:
        return "light", rng.uniform(1.0, 4.0)
    if r < 0.87:
        return "normal", rng.uniform(5.0, 12.0)
    return "heavy", rng.uniform(15.0, 30.0)


def _habits(rng: random.Random, u: User, cfg: SimConfig) -> None:
    days = cfg.days
    if rng.random() < 0.03:
        a = rng.randrange(days - 1)
        u.stale_phone = (a, min(days, a + rng.randint(1, 5)))
        u.tags.append("stale_phone")
    if rng.random() < 0.05:
        u.new_phone_day = rng.randrange(days)
        u.tags.append("new_phone")
    if rng.random() < 0.25:
        u.phone_share = min(0.8, u.phone_share + 0.35)
        u.tags.append("mobile_hopper")
    if u.org.vpn_ip and rng.random() < 0.5:  # VPN on for some sessions, off for others
        u.vpn_share = rng.uniform(0.1, 0.5)
        u.tags.append("vpn")
    if rng.random() < 0.08:
        _add_trip(rng, u, days)
    if rng.random() < 0.03:
        u.mailing_list = True
        u.tags.append("mailing_list")
    if rng.random() < 0.015:
        u.plaintext = True
        u.tags.append("plaintext_client")
    if rng.random() < 0.2:
        u.works_from_home = True
    if rng.random() < 0.10 and not u.trips:
        a = rng.randrange(days - 3)
        u.vacation = (a, a + rng.randint(3, 7))
        u.tags.append("vacation")


def _add_trip(rng: random.Random, u: User, days: int) -> None:
    home = u.org.city
    if rng.random() < 0.5 and len(world.cities_of(home.country)) > 1:
        dest = rng.choice([c for c in world.cities_of(home.country) if c != home])
    else:
        dest = rng.choice([c for c in world.CITIES if c.country != home.country])
    depart = rng.randrange(1, days - 2)
    ret = min(days - 1, depart + rng.randint(2, 6))
    u.trips.append(Trip(dest, depart, ret, rng.uniform(7.0, 15.0), world.fixed_ip(rng, dest)))
    u.tags.append("traveller" if dest.country == home.country else "traveller_abroad")


def build_fleet(cfg: SimConfig) -> Fleet:
    rng = random.Random(f"fleet:{cfg.seed}")
    orgs = [_org(rng, i, cfg) for i in range(cfg.orgs)]
    sizes = _org_sizes(rng, cfg.orgs, cfg.users)
    users: list[User] = []
    bulk_tx = max(1, cfg.users // 250)
    bulk_news = max(1, cfg.users // 200)
    for org, size in zip(orgs, sizes, strict=True):
        for k in range(size):
            index = len(users)
            name = f"u{index:05d}@{org.domain}"
            kind, rate = _size(rng)
            u = User(index, name, org, kind, world.fixed_ip(rng, org.city), rate,
                     phone_share=rng.uniform(0.05, 0.3))
            if k == 0 and bulk_tx and size > 2:
                bulk_tx -= 1
                u.name, u.size, u.tags = f"notify{index:05d}@{org.domain}", "transactional", [
                    "transactional"]
                u.server_ip, u.daily_volume = world.fixed_ip(rng, org.city), rng.randint(1000, 5000)
            elif k == 1 and bulk_news and size > 2:
                bulk_news -= 1
                u.name, u.size, u.tags = f"news{index:05d}@{org.domain}", "newsletter", [
                    "newsletter"]
                u.server_ip, u.daily_volume = world.fixed_ip(rng, org.city), rng.randint(1500, 4000)
            else:
                _habits(rng, u, cfg)
                r = rng.random()
                if r < 0.015:  # long silence, then back (benign look-alike of a dormant account)
                    u.preamble_days = tuple(sorted(-rng.randint(95, 160) for _ in range(5)))
                    u.silent_until = rng.randrange(cfg.warmup_days, cfg.days)
                    u.tags.append("long_silence")
                elif r < 0.035:  # dormant: seen months ago, silent since (victim pool)
                    _make_dormant(rng, cfg, u)
            users.append(u)
    _enough_dormant(rng, cfg, users)
    return Fleet(cfg, orgs, users)


def _make_dormant(rng: random.Random, cfg: SimConfig, u: User) -> None:
    u.preamble_days = tuple(sorted(-rng.randint(95, 200) for _ in range(5)))
    u.silent_until = cfg.days + 1
    u.tags.append("dormant")


def _enough_dormant(rng: random.Random, cfg: SimConfig, users: list[User]) -> None:
    """Two attack kinds in twelve need a dormant victim each: keep a pool big enough."""
    need = cfg.attacks // 6 + 2
    have = sum("dormant" in u.tags for u in users)
    plain = [u for u in users if u.size in ("light", "normal") and not u.preamble_days]
    for u in rng.sample(plain, max(0, min(len(plain), need - have))):
        _make_dormant(rng, cfg, u)
