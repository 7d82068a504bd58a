"""One honest user's traffic, day by day, as a generator of events in time order.

A day is drawn at a time (into a small per-user heap, since sessions, retries and an outbox flush
after a flight are drawn out of order) and released once no later draw can precede it, so a
three-week fleet streams through with one day per user in memory.
"""

from __future__ import annotations

import heapq
import math
import random
from collections.abc import Iterator

from relayguard.roof.simulate import mail, world
from relayguard.roof.simulate.events import RELAYS, Emitter, Timed
from relayguard.roof.simulate.fleet import DAY, SimConfig, Trip, User

HOUR = 3600.0


def _poisson(rng: random.Random, lam: float) -> int:
    if lam <= 0:
        return 0
    if lam > 30:  # normal approximation: cheap and good enough for counts this size
        return max(0, round(rng.gauss(lam, math.sqrt(lam))))
    limit, k, p = math.exp(-lam), 0, 1.0
    while True:
        p *= rng.random()
        if p <= limit:
            return k
        k += 1


def _recipients(rng: random.Random) -> int:
    r = rng.random()
    if r < 0.7:
        return 1
    if r < 0.95:
        return rng.randint(2, 5)
    return rng.randint(6, 30)


def _size(rng: random.Random) -> int:
    return int(min(20_000_000, rng.lognormvariate(10.0, 1.2)))


class UserTraffic:
    def __init__(self, user: User, cfg: SimConfig) -> None:
        self.u = user
        self.cfg = cfg
        self.rng = random.Random(f"user:{cfg.seed}:{user.index}")
        self.emit = Emitter(f"u{user.index:05d}", cfg.password_hashes)
        self.hub = self.rng.randrange(4)
        self.heap: list[Timed] = []
        self.relay = self.rng.choice(RELAYS)
        # Recipients, envelope senders and bounces draw from a generator of their own, so the
        # times and sessions above are the same as without them (see mail.py).
        self.mrng = random.Random(f"mail:{cfg.seed}:{user.index}")
        colleagues = [f"org{i:03d}.example" for i in self.mrng.sample(range(cfg.orgs),
                                                                       min(cfg.orgs, 4))]
        self.domain = user.name.split("@")[1]
        self.corr = mail.Correspondents(self.mrng, self.domain, colleagues)
        # One in ten writes now and then as an alias of the own domain (info@, a shared box).
        self.alias = (f"{self.mrng.choice(('info', 'office', 'sales', 'team'))}@{self.domain}"
                      if self.mrng.random() < 0.1 else None)
        # At the airport and in the air nothing is sent, whatever day's draw it came from.
        self.in_air = [self._flight_window(trip, trip_day) for trip in user.trips
                       for trip_day in (trip.depart_day, trip.return_day)]

    # --- helpers -------------------------------------------------------------------------
    def _push(self, item: Timed) -> None:
        if any(a <= item[0] <= b for a, b in self.in_air):
            return
        heapq.heappush(self.heap, item)

    def _flight_window(self, trip: Trip, day: int) -> tuple[float, float]:
        out = day == trip.depart_day
        origin, dest = (self.u.org.city, trip.dest) if out else (trip.dest, self.u.org.city)
        leave = self._day_start(day, origin.utc_offset_h) + trip.depart_hour * HOUR
        return leave - 1.5 * HOUR, leave + (world.flight_hours(origin, dest) + 0.3) * HOUR

    def _mail(self, t: float, relay: str, ip: str, recipients: int, size: int,
              tls: bool = True, kind: str = "personal") -> None:
        """A send event with its RCPT summary and envelope sender, and the delivery outcomes
        of the recipients that bounced (the log follower reports those)."""
        m, u = self.mrng, self.u
        if kind == "list":
            domains, rate = self.corr.list_post(recipients), mail.LIST_BOUNCE
            count = max(len(domains), min(recipients, len(self.corr.list_members)))
        elif kind == "bulk":
            domains, rate = mail.distinct(mail.subscriber(m) for _ in range(min(recipients,
                                                                              200))), \
                mail.BULK_BOUNCE
            # Beyond 200 recipients the draw is sampled: scale the distinct count up.
            count = max(len(domains), len(domains) * recipients // 200)
        else:
            domains, rate = self.corr.message(recipients), mail.HONEST_BOUNCE
            count = len(domains)
        if u.size == "newsletter":
            sender = f"bounce+{m.randrange(16**6):06x}@{self.domain}"  # VERP: one per message
        elif u.size == "transactional":
            sender = f"noreply@{self.domain}"
        elif self.alias and m.random() < 0.2:
            sender = self.alias
        else:
            sender = u.name
        item = self.emit.send(t, relay, u.name, ip, recipients, size, sender, tls,
                              mail.fields(domains, count))
        self._push(item)
        queue_id = item[2]["queue_id"]
        for status, dsn, domain in mail.bounces(m, domains, recipients, rate):
            later = m.uniform(2, 60) if status == "bounced" else m.uniform(60, 900)
            self._push(self.emit.delivery(t + later, relay, u.name, queue_id, status, dsn,
                                          domain))

    def _relay(self) -> str:
        return self.relay if self.rng.random() < 0.8 else self.rng.choice(RELAYS)

    def _day_start(self, day: int, offset_h: float) -> float:
        return self.cfg.start + day * DAY - offset_h * HOUR

    def _phone_ip(self, country: str) -> str:
        if self.rng.random() < (0.4 if "mobile_hopper" in self.u.tags else 0.15):
            self.hub = self.rng.randrange(4)  # the carrier moved the phone to another hub
        return world.mobile_ip(self.rng, country, self.hub)

    def session(self, t: float, ip: str, sends: int, tls: bool = True,
                mechanism: str = "PLAIN", typo: bool = False) -> float:
        """Login (after a typo, perhaps) and `sends` messages; returns the end time."""
        u, rng, relay = self.u, self.rng, self._relay()
        if typo:
            self._push(self.emit.login(t - rng.uniform(3, 12), relay, u.name, ip, ok=False,
                                       tls=tls, mechanism=mechanism, secret=f"typo{rng.random()}"))
        self._push(self.emit.login(t, relay, u.name, ip, tls=tls, mechanism=mechanism))
        for _ in range(sends):
            t += rng.uniform(2, 45)
            self._mail(t, relay, ip, _recipients(rng), _size(rng), tls)
        return t

    # --- a day ---------------------------------------------------------------------------
    def _where(self, day: int) -> tuple[world.City, str | None]:
        """The city the user is in on `day` and the hotel IP when away."""
        trip = self.u.trip_on(day)
        if trip and trip.depart_day < day < trip.return_day:
            return trip.dest, trip.hotel_ip
        return self.u.org.city, None

    def day(self, day: int) -> None:
        u, rng = self.u, self.rng
        if not u.active_on(day):
            return
        if u.size == "transactional":
            self._transactional(day)
            return
        if u.size == "newsletter":
            self._newsletter(day)
            return
        city, hotel = self._where(day)
        trip = u.trip_on(day)
        start = self._day_start(day, city.utc_offset_h)
        workday = self.cfg.weekday(day) < 5 and day not in u.org.holidays
        flight: tuple[float, float] | None = None
        if trip and day in (trip.depart_day, trip.return_day):
            flight = self._flight(trip, day)
        lam = u.rate * (1.0 if workday else 0.12) * (0.6 if hotel else 1.0)
        for _ in range(_poisson(rng, lam)):
            hour = rng.gauss(12.5, 2.8) if workday else rng.uniform(9, 22)
            t = start + min(23.9, max(6.0, hour)) * HOUR
            here = hotel
            if flight and trip:
                if flight[0] <= t <= flight[1]:
                    continue  # at the airport or in the air
                away = t > flight[1] if day == trip.depart_day else t < flight[0]
                here = trip.hotel_ip if away else None
            self._one_session(t, here, workday, 8.0 <= hour < 18.0)
        if u.mailing_list and workday and rng.random() < 0.25:
            t = start + rng.uniform(9, 16) * HOUR
            relay = self._relay()
            ip = u.org.office_ip
            self._push(self.emit.login(t, relay, u.name, ip))
            self._mail(t + rng.uniform(5, 40), relay, ip, rng.randint(30, 300), _size(rng),
                       kind="list")
        if u.stale_phone and u.stale_phone[0] <= day < u.stale_phone[1]:
            self._stale_phone(start, workday, hotel)
        if u.new_phone_day == day:
            self._new_phone(start + rng.uniform(9, 21) * HOUR)

    def _one_session(self, t: float, hotel: str | None, workday: bool,
                     office_hours: bool) -> None:
        u, rng = self.u, self.rng
        phone = rng.random() < u.phone_share
        if phone:
            # Abroad, a roaming phone still exits through the home carrier.
            at_office = workday and office_hours and not hotel and rng.random() < 0.5
            ip = u.org.office_ip if at_office else self._phone_ip(u.country)
        elif hotel:
            ip = hotel
        elif u.org.vpn_ip and rng.random() < u.vpn_share:
            ip = u.org.vpn_ip  # VPN on: the corporate exit, often in another country
        elif workday and office_hours and not u.works_from_home:
            ip = u.org.office_ip
        else:
            ip = u.home_ip
        sends = 1 + int(rng.expovariate(0.3 if u.size == "heavy" else 0.8))
        plain = u.plaintext and not phone
        self.session(t, ip, sends, tls=not plain, mechanism="LOGIN" if plain else "PLAIN",
                     typo=rng.random() < 0.01)

    def _flight(self, trip: Trip, day: int) -> tuple[float, float]:
        """Flush the outbox on landing; returns the window with nothing but the flight."""
        u, rng = self.u, self.rng
        leave, landed = self._flight_window(trip, day)
        arrived_ip = trip.hotel_ip if day == trip.depart_day else u.home_ip
        t = landed + rng.uniform(0.0, 0.7) * HOUR + 1
        self.session(t, arrived_ip, rng.randint(3, 15))  # the queued outbox goes at once
        return leave, t - 1

    def _stale_phone(self, start: float, workday: bool, hotel: str | None) -> None:
        """An old device with the previous password retries its queued outbox every 5-20
        minutes, all day (one or two tries each time)."""
        u, rng = self.u, self.rng
        t = start + rng.uniform(7, 9) * HOUR
        end = start + 22 * HOUR
        while t < end:
            hour = (t - start) / HOUR
            if hotel:
                ip = hotel
            elif workday and 8 <= hour < 18 and not u.works_from_home:
                ip = u.org.office_ip  # on the office Wi-Fi: the office NAT takes the blame
            else:
                ip = u.home_ip
            for k in range(rng.choice((1, 1, 2))):
                self._push(self.emit.login(t + 2 * k, self._relay(), u.name, ip, ok=False,
                                           secret=f"old-password-of-{u.name}"))
            t += rng.uniform(5, 20) * 60

    def _new_phone(self, t: float) -> None:
        """Setting up a new phone: a few wrong tries while typing the password, then it works."""
        u, rng = self.u, self.rng
        ip = self._phone_ip(u.country)
        relay = self._relay()
        for k in range(rng.randint(2, 4)):
            self._push(self.emit.login(t + 25 * k, relay, u.name, ip, ok=False,
                                       secret=f"setup{k}-{u.name}"))
        self.session(t + 120 + rng.uniform(0, 60), ip, 1)

    def _transactional(self, day: int) -> None:
        """Order confirmations, password resets: every few minutes, day and night, a batch."""
        u, rng = self.u, self.rng
        start = self._day_start(day, u.org.city.utc_offset_h)
        slots = 144
        for s in range(slots):
            hour = s / 6
            shape = 0.3 + 0.7 * math.exp(-((hour - 14) ** 2) / 30)  # busier in the afternoon
            n = _poisson(rng, u.daily_volume / slots * shape * 1.6)
            if n == 0:
                continue
            t = start + s * 600 + rng.uniform(0, 60)
            relay = self._relay()
            assert u.server_ip is not None
            self._push(self.emit.login(t, relay, u.name, u.server_ip))
            step = 540 / n
            for k in range(n):
                self._mail(t + 1 + k * step, relay, u.server_ip, 1, rng.randint(4_000, 40_000),
                           kind="bulk")

    def _newsletter(self, day: int) -> None:
        """Two campaigns a week in steady batches (one recipient per message), plus a list post."""
        u, rng = self.u, self.rng
        if self.cfg.weekday(day) not in (1, 3):  # Tuesdays and Thursdays
            return
        start = self._day_start(day, u.org.city.utc_offset_h) + rng.uniform(9, 10) * HOUR
        assert u.server_ip is not None
        left, t = u.daily_volume, start
        while left > 0:  # a connection per batch of 50, ~5 messages a minute
            relay = self._relay()
            self._push(self.emit.login(t, relay, u.name, u.server_ip))
            for _ in range(min(50, left)):
                t += rng.uniform(8, 16)
                self._mail(t, relay, u.server_ip, 1, rng.randint(20_000, 80_000), kind="bulk")
            left -= 50
            t += rng.uniform(5, 30)
        t += rng.uniform(600, 3600)
        self._push(self.emit.login(t, self.relay, u.name, u.server_ip))
        self._mail(t + 3, self.relay, u.server_ip, rng.randint(500, 3000),
                   rng.randint(20_000, 80_000), kind="bulk")

    # --- the stream ----------------------------------------------------------------------
    def preamble(self) -> None:
        """A few ordinary days months ago (dormant accounts and long silences need a past)."""
        for day in self.u.preamble_days:
            start = self._day_start(day, self.u.org.city.utc_offset_h)
            self.session(start + self.rng.uniform(9, 17) * HOUR, self.u.home_ip, 1)

    def events(self) -> Iterator[Timed]:
        self.preamble()
        for day in range(self.cfg.days):
            self.day(day)
            # Nothing drawn from the next day on can start before its earliest local midnight.
            release = self.cfg.start + (day + 1) * DAY - 14 * HOUR
            while self.heap and self.heap[0][0] < release:
                item = heapq.heappop(self.heap)
                if item[0] < self.cfg.end:
                    yield item
        while self.heap:
            item = heapq.heappop(self.heap)
            if item[0] < self.cfg.end:
                yield item
