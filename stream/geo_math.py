"""Great-circle distance and the travel speed a pair of logins implies."""

from __future__ import annotations

import math

EARTH_RADIUS_KM = 6371.0088  # IUGG mean radius


def haversine_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance in km between two points given in degrees."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp = p2 - p1
    dl = math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_KM * math.asin(min(1.0, math.sqrt(a)))


def effective_distance_km(distance_km: float, radius1_km: float, radius2_km: float) -> float:
    """Distance less both accuracy radii: the least the user can really have moved."""
    return max(0.0, distance_km - radius1_km - radius2_km)


def implied_speed_kmh(distance_km: float, seconds: float, min_seconds: float = 60.0) -> float:
    """Speed needed to cover the distance in the time. Very short gaps are floored at
    `min_seconds` so two logins in the same second give a large finite speed, not infinity."""
    return distance_km / (max(seconds, min_seconds) / 3600.0)
