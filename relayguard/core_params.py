"""Settings -> frozen core parameters. The only place that knows both shapes.

Detector overrides come from `[detectors.<name>]` tables (TOML) or RELAYGUARD_DETECTORS__<NAME>__<FIELD>
env vars; policy from `[policy]` with per-detector `[policy.detectors.<name>]`.
"""

from __future__ import annotations

import dataclasses
import ipaddress
from typing import Any

from relayguard.errors import ConfigError
from relayguard.settings import Settings
from stream import policy, windows
from stream.detectors import registry, volume
from stream.engine import CoreParams, EnabledDetector

# Defaults per detector, with the source of each in the detector's module docstring.
DEFAULT_POLICY: dict[str, policy.DetectorPolicy] = {
    # Fixed volume limits: throttle for an hour (EOP's BlockUserForToday is the blunt version).
    "volume": policy.DetectorPolicy("throttle", "high", ttl_seconds=3600),
    # fail2ban's default bantime: 10 minutes.
    "auth_failures": policy.DetectorPolicy("throttle", "medium", ttl_seconds=600),
    # Speed above an airliner's after subtracting accuracy radii: lock until an operator unlocks.
    "impossible_travel": policy.DetectorPolicy("lock", "high"),
}


def _window(value: Any, where: str) -> windows.WindowSpec:
    if isinstance(value, windows.WindowSpec):
        return value
    try:
        return windows.WindowSpec(float(value["length"]), float(value["bucket"]))
    except (KeyError, TypeError, ValueError) as exc:
        raise ConfigError(f"{where}: want {{length=<s>, bucket=<s>}}, got {value!r} ({exc})") from None


def _volume_params(overrides: dict[str, Any]) -> volume.Params:
    base = {lim.name: lim for lim in volume.Params().limits}
    for name, value in overrides.get("limits", {}).items():
        if name not in base:
            raise ConfigError(f"detectors.volume.limits.{name}: unknown limit; known: {sorted(base)}")
        limit = None if value in ("unlimited", None, -1) else int(value)
        base[name] = dataclasses.replace(base[name], limit=limit)
    return volume.Params(limits=tuple(base.values()))


def _detector_params(name: str, cls: type[Any], overrides: dict[str, Any]) -> Any:
    if name == "volume":
        return _volume_params(overrides)
    known = {f.name: f for f in dataclasses.fields(cls)}
    values: dict[str, Any] = {}
    for key, value in overrides.items():
        if key == "enabled":
            continue
        if key not in known:
            raise ConfigError(f"detectors.{name}.{key}: unknown setting; known: {sorted(known)}")
        values[key] = _window(value, f"detectors.{name}.{key}") if key == "window" else value
    try:
        return cls(**values)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"detectors.{name}: {exc}") from None


def _policy(settings: Settings) -> policy.PolicyParams:
    raw = dict(settings.policy)
    per = dict(DEFAULT_POLICY)
    for name, value in raw.pop("detectors", {}).items():
        base = per.get(name, policy.DetectorPolicy())
        try:
            per[name] = dataclasses.replace(base, **value)
        except TypeError as exc:
            raise ConfigError(f"policy.detectors.{name}: {exc}") from None
    try:
        nets = tuple(ipaddress.ip_network(n, strict=False) for n in raw.pop("allow_networks", []))
    except ValueError as exc:
        raise ConfigError(f"policy.allow_networks: {exc}") from None
    users = frozenset(raw.pop("allow_users", []))
    dry_run = bool(raw.pop("dry_run", False))
    issuer = str(raw.pop("issuer", f"relayguard-worker:{settings.app_id}"))
    if raw:
        raise ConfigError(f"policy: unknown settings {sorted(raw)}")
    return policy.PolicyParams(per, policy.DetectorPolicy(), dry_run, users, nets, issuer)


def build_core_params(settings: Settings) -> CoreParams:
    enabled: list[EnabledDetector] = []
    for name in settings.detectors:
        if name not in registry.BY_NAME:
            raise ConfigError(f"detectors.{name}: no such detector; known: {sorted(registry.BY_NAME)}")
    for spec in registry.ALL:
        overrides = settings.detectors.get(spec.name, {})
        if overrides.get("enabled", True) is False:
            continue
        enabled.append(EnabledDetector(spec, _detector_params(spec.name, spec.params_type, overrides)))
    return CoreParams(detectors=tuple(enabled), policy=_policy(settings))
