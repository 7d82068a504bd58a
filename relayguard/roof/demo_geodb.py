"""Build a small City-format database for the demo and tests when no real one is configured.

The networks are the RFC 5737 / RFC 3849 documentation ranges, so nothing here pretends to locate
real addresses.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from mmdb_writer import MMDBWriter
from netaddr import IPSet


@dataclass(frozen=True)
class Place:
    network: str
    country: str
    country_name: str
    city: str
    latitude: float
    longitude: float
    radius_km: int


DEMO_PLACES: tuple[Place, ...] = (
    Place("192.0.2.0/26", "DE", "Germany", "Berlin", 52.52, 13.405, 20),
    Place("192.0.2.64/26", "DE", "Germany", "Potsdam", 52.39, 13.065, 20),
    Place("192.0.2.128/26", "GB", "United Kingdom", "London", 51.507, -0.128, 10),
    Place("192.0.2.192/26", "US", "United States", "New York", 40.713, -74.006, 10),
    Place("198.51.100.0/25", "AU", "Australia", "Sydney", -33.869, 151.209, 20),
    Place("198.51.100.128/25", "BR", "Brazil", "Sao Paulo", -23.551, -46.633, 50),
    Place("203.0.113.0/25", "NL", "Netherlands", "Amsterdam", 52.37, 4.895, 20),
    Place("203.0.113.128/25", "SG", "Singapore", "Singapore", 1.352, 103.82, 10),
    Place("2001:db8::/48", "FR", "France", "Paris", 48.857, 2.352, 20),
)


def write_city_db(path: Path, places: tuple[Place, ...] = DEMO_PLACES) -> Path:
    writer = MMDBWriter(
        ip_version=6,
        ipv4_compatible=True,
        database_type="GeoIP2-City",
        languages=["en"],
        description="relayguard demo City database (documentation ranges only)",
    )
    for p in places:
        writer.insert_network(
            IPSet([p.network]),
            {
                "country": {"iso_code": p.country, "names": {"en": p.country_name}},
                "city": {"names": {"en": p.city}},
                "location": {
                    "latitude": p.latitude,
                    "longitude": p.longitude,
                    "accuracy_radius": p.radius_km,
                },
            },
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    writer.to_db_file(str(path))
    return path
