"""The simulator's world: a table of cities and the synthetic networks that "are" in them.

Every network is a private (RFC 1918) or shared (RFC 6598) range, located only in the City
database the simulator writes for itself, so nothing here claims to locate a real address:

- fixed lines (homes, offices, hotels, residential proxies): two ISPs per city,
  10.(2i).0.0/16 and 10.(2i+1).0.0/16 for the i-th city, accuracy radius 20-50 km;
- mobile carriers: one per country, 100.(64+k).0.0/16, in four /18 hubs placed in the
  country's cities (phones hop between hubs), radius 100 km for two hubs, 500 km for two;
- data centres (servers, VPN exits, attackers' VPS): 172.(16+j).0.0/16, radius 10 km.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from functools import cache

from relayguard.roof.demo_geodb import Place


@dataclass(frozen=True)
class City:
    name: str
    country: str
    country_name: str
    lat: float
    lon: float
    utc_offset_h: float  # standard time; the simulator ignores daylight saving


CITIES: tuple[City, ...] = (
    City("Berlin", "DE", "Germany", 52.52, 13.405, 1),
    City("Munich", "DE", "Germany", 48.137, 11.575, 1),
    City("Hamburg", "DE", "Germany", 53.551, 9.994, 1),
    City("Frankfurt", "DE", "Germany", 50.11, 8.68, 1),
    City("London", "GB", "United Kingdom", 51.507, -0.128, 0),
    City("Manchester", "GB", "United Kingdom", 53.48, -2.24, 0),
    City("Edinburgh", "GB", "United Kingdom", 55.95, -3.19, 0),
    City("Paris", "FR", "France", 48.857, 2.352, 1),
    City("Lyon", "FR", "France", 45.76, 4.84, 1),
    City("Marseille", "FR", "France", 43.30, 5.37, 1),
    City("Amsterdam", "NL", "Netherlands", 52.37, 4.895, 1),
    City("Rotterdam", "NL", "Netherlands", 51.92, 4.48, 1),
    City("Madrid", "ES", "Spain", 40.42, -3.70, 1),
    City("Barcelona", "ES", "Spain", 41.39, 2.17, 1),
    City("Rome", "IT", "Italy", 41.90, 12.50, 1),
    City("Milan", "IT", "Italy", 45.46, 9.19, 1),
    City("Warsaw", "PL", "Poland", 52.23, 21.01, 1),
    City("Krakow", "PL", "Poland", 50.06, 19.94, 1),
    City("Stockholm", "SE", "Sweden", 59.33, 18.07, 1),
    City("Gothenburg", "SE", "Sweden", 57.71, 11.97, 1),
    City("Zurich", "CH", "Switzerland", 47.38, 8.54, 1),
    City("Geneva", "CH", "Switzerland", 46.20, 6.14, 1),
    City("Vienna", "AT", "Austria", 48.21, 16.37, 1),
    City("Graz", "AT", "Austria", 47.07, 15.44, 1),
    City("New York", "US", "United States", 40.713, -74.006, -5),
    City("Chicago", "US", "United States", 41.88, -87.63, -6),
    City("San Francisco", "US", "United States", 37.77, -122.42, -8),
    City("Dallas", "US", "United States", 32.78, -96.80, -6),
    City("Toronto", "CA", "Canada", 43.65, -79.38, -5),
    City("Montreal", "CA", "Canada", 45.50, -73.57, -5),
    City("Sao Paulo", "BR", "Brazil", -23.55, -46.63, -3),
    City("Rio de Janeiro", "BR", "Brazil", -22.91, -43.17, -3),
    City("Mexico City", "MX", "Mexico", 19.43, -99.13, -6),
    City("Tokyo", "JP", "Japan", 35.68, 139.69, 9),
    City("Osaka", "JP", "Japan", 34.69, 135.50, 9),
    City("Singapore", "SG", "Singapore", 1.352, 103.82, 8),
    City("Mumbai", "IN", "India", 19.08, 72.88, 5.5),
    City("Bangalore", "IN", "India", 12.97, 77.59, 5.5),
    City("Sydney", "AU", "Australia", -33.87, 151.21, 11),
    City("Melbourne", "AU", "Australia", -37.81, 144.96, 11),
    City("Johannesburg", "ZA", "South Africa", -26.20, 28.05, 2),
    City("Lagos", "NG", "Nigeria", 6.52, 3.38, 1),
    City("Moscow", "RU", "Russia", 55.76, 37.62, 3),
    City("Kyiv", "UA", "Ukraine", 50.45, 30.52, 2),
    City("Istanbul", "TR", "Turkey", 41.01, 28.98, 3),
    City("Hanoi", "VN", "Vietnam", 21.03, 105.85, 7),
    City("Shanghai", "CN", "China", 31.23, 121.47, 8),
    City("Seoul", "KR", "South Korea", 37.57, 126.98, 9),
    City("Dubai", "AE", "United Arab Emirates", 25.20, 55.27, 4),
)
# Where the fleet's organisations are (a European relay operator with some North American
# customers), with weights.
HOME_COUNTRIES: tuple[tuple[str, int], ...] = (
    ("DE", 30), ("GB", 14), ("FR", 12), ("NL", 8), ("ES", 6), ("IT", 6), ("PL", 5), ("SE", 4),
    ("CH", 4), ("AT", 4), ("US", 5), ("CA", 2),
)
# Data-centre cities, in the order of their 172.(16+j) ranges (16 of them: all of 172.16/12).
DATACENTRES: tuple[str, ...] = (
    "Frankfurt", "Amsterdam", "London", "Paris", "New York", "Dallas", "San Francisco",
    "Singapore", "Tokyo", "Sao Paulo", "Mumbai", "Sydney", "Moscow", "Johannesburg", "Toronto",
    "Stockholm",
)
# Where attackers come from when they come "from abroad" (residential proxies and VPS).
ATTACK_COUNTRIES: tuple[str, ...] = ("NG", "RU", "VN", "BR", "CN", "IN", "US", "UA", "TR", "MX",
                                     "KR", "ZA", "AE", "JP", "SG", "AU")

CITY_BY_NAME = {c.name: c for c in CITIES}
COUNTRIES: tuple[str, ...] = tuple(dict.fromkeys(c.country for c in CITIES))


def cities_of(country: str) -> tuple[City, ...]:
    return tuple(c for c in CITIES if c.country == country)


def city_index(city: City) -> int:
    return CITIES.index(city)


def _radius(city: City) -> int:
    return 20 if city_index(city) % 3 == 0 else 50


@cache
def places() -> tuple[Place, ...]:
    """Every network of the world as City-database records."""
    out: list[Place] = []
    for i, c in enumerate(CITIES):
        for isp in (0, 1):
            out.append(Place(f"10.{2 * i + isp}.0.0/16", c.country, c.country_name, c.name,
                             c.lat, c.lon, _radius(c)))
    for k, country in enumerate(COUNTRIES):
        hubs = cities_of(country)
        for h in range(4):
            c = hubs[h % len(hubs)]
            # Carrier ranges: two hubs located to ~100 km, two only roughly (500 km).
            out.append(Place(f"100.{64 + k}.{64 * h}.0/18", c.country, c.country_name, c.name,
                             c.lat, c.lon, 100 if h < 2 else 500))
    for j, name in enumerate(DATACENTRES):
        c = CITY_BY_NAME[name]
        out.append(Place(f"172.{16 + j}.0.0/16", c.country, c.country_name, c.name,
                         c.lat, c.lon, 10))
    return tuple(out)


def fixed_ip(rng: random.Random, city: City, isp: int | None = None) -> str:
    """An address on one of the city's two fixed-line ISPs."""
    isp = rng.randrange(2) if isp is None else isp
    return f"10.{2 * city_index(city) + isp}.{rng.randrange(256)}.{rng.randrange(1, 255)}"


def mobile_ip(rng: random.Random, country: str, hub: int | None = None) -> str:
    """An address of the country's carrier (carrier-grade NAT: many phones share it)."""
    k = COUNTRIES.index(country)
    hub = rng.randrange(4) if hub is None else hub
    return f"100.{64 + k}.{64 * hub + rng.randrange(64)}.{rng.randrange(1, 255)}"


def datacentre_ip(rng: random.Random, city_name: str) -> str:
    j = DATACENTRES.index(city_name)
    return f"172.{16 + j}.{rng.randrange(256)}.{rng.randrange(1, 255)}"


def datacentre_in(country: str) -> str | None:
    for name in DATACENTRES:
        if CITY_BY_NAME[name].country == country:
            return name
    return None


def distance_km(a: City, b: City) -> float:
    p1, p2 = math.radians(a.lat), math.radians(b.lat)
    dp, dl = p2 - p1, math.radians(b.lon - a.lon)
    h = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * 6371.0 * math.asin(math.sqrt(min(1.0, h)))


def flight_hours(a: City, b: City) -> float:
    """Gate to gate at airliner speed plus taxi and climb; under 300 km people take the train."""
    d = distance_km(a, b)
    return 1.0 + d / 800.0 if d >= 300 else d / 120.0
