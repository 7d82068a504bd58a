"""Every detector the core knows, by name. Adding a detector = a module + one line here."""

from __future__ import annotations

from stream.detector import AnySpec
from stream.detectors import auth_failures, impossible_travel, volume

ALL: tuple[AnySpec, ...] = (
    volume.SPEC,
    auth_failures.SPEC,
    impossible_travel.SPEC,
)

BY_NAME: dict[str, AnySpec] = {spec.name: spec for spec in ALL}
