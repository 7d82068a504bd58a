"""Locate client IPs with a MaxMind-format City database (GeoLite2/GeoIP2 City, DB-IP City Lite).

This is the only I/O the detection path needs besides Kafka, so it stays outside the pure core:
the worker and `replay` enrich login events here, the core only sees `GeoPoint`s.
"""

from __future__ import annotations

import dataclasses
import ipaddress
from functools import lru_cache
from pathlib import Path

import geoip2.database
import geoip2.errors
import maxminddb

from relayguard.foundation.errors import ConfigError
from relayguard.stream.records import Event, GeoPoint, LoginEvent

# MaxMind omits the radius for some records; unknown counts as imprecise, so travel math
# stays careful.
UNKNOWN_RADIUS_KM = 1000.0


class GeoLocator:
    def __init__(self, path: Path) -> None:
        if not path.is_file():
            raise ConfigError(
                f"GeoIP City database {path} does not exist",
                "set RELAYGUARD_GEOIP_CITY_DB to a GeoLite2-City.mmdb or DB-IP City Lite file",
            )
        try:
            self._reader = geoip2.database.Reader(str(path))
        except (maxminddb.InvalidDatabaseError, ValueError) as exc:
            raise ConfigError(f"{path} is not a MaxMind DB file: {exc}") from None
        db_type = self._reader.metadata().database_type
        if "City" not in db_type:
            raise ConfigError(
                f"{path} is a {db_type!r} database; travel detection needs a City database",
                "use GeoLite2-City, GeoIP2-City or DB-IP City Lite",
            )
        self.locate = lru_cache(maxsize=65536)(self._locate)

    def _locate(self, ip: str) -> GeoPoint | None:
        # Private ranges are simply absent from real databases; no special case needed.
        try:
            ipaddress.ip_address(ip)
        except ValueError:
            return None
        try:
            city = self._reader.city(ip)
        except (geoip2.errors.AddressNotFoundError, ValueError):
            return None
        loc = city.location
        if loc.latitude is None or loc.longitude is None:
            return None
        return GeoPoint(
            latitude=loc.latitude,
            longitude=loc.longitude,
            accuracy_radius_km=float(loc.accuracy_radius or UNKNOWN_RADIUS_KM),
            country=city.country.iso_code,
            city=city.city.name,
        )

    def close(self) -> None:
        self._reader.close()


def enrich(event: Event, locator: GeoLocator | None) -> Event:
    """A login event with its client located; other events unchanged."""
    if locator is None or not isinstance(event, LoginEvent) or event.geo is not None:
        return event
    geo = locator.locate(event.client_ip)
    return dataclasses.replace(event, geo=geo) if geo else event
