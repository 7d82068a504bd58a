"""Settings -> frozen core parameters. The only place that knows both shapes.

Detector overrides come from `[detectors.<name>]` tables (TOML) or
RELAYGUARD_DETECTORS__<NAME>__<FIELD> env vars; policy from `[policy]` with per-detector
`[policy.detectors.<name>]`. Volume tiers:

    [detectors.volume.limits]                 # the default level
    messages_1m = 20                          # a number, "unlimited", or "inherit"/-1 (built-in)
    [detectors.volume.windows.recipients_10m] # an extra limit of your own
    measure = "recipients"
    length = 600
    bucket = 60
    limit = 300
    [detectors.volume.plans.bulk]
    recipients_1h = 5000
    [detectors.volume.domains."example.com"]
    plan = "bulk"                             # the domain's plan
    messages_1m = 30
    [detectors.volume.users."alice@example.com"]
    plan = "bulk"                             # the user's plan beats the domain's
    recipients_24h = "unlimited"

A value wins at the most specific level that sets it: user > domain > plan > default. "inherit"
(or -1, iRedAPD's spelling) means "not set here". `policy.allow_networks` are also given to the
geography and shared-credential detectors as networks never judged nor learned (VPN exits,
corporate ranges); add detector-only ones with `[detectors.<name>] ignore_networks = [...]`.
"""

from __future__ import annotations

import dataclasses
import ipaddress
from typing import Any

from relayguard.foundation.errors import ConfigError
from relayguard.foundation.settings import Settings
from relayguard.stream import policy, windows
from relayguard.stream.detectors import registry, volume
from relayguard.stream.detectors.common import IpNetwork
from relayguard.stream.engine import CoreParams, EnabledDetector
from relayguard.stream.timefmt import TimeBounds

DP = policy.DetectorPolicy
# Defaults per detector, with the source of each in the detector's module docstring. Noisy
# detectors (travellers, old clients, mobile NAT) are alert-only; correlation locks.
DEFAULT_POLICY: dict[str, policy.DetectorPolicy] = {
    # Fixed volume limits: throttle for an hour (EOP's BlockUserForToday is the blunt version).
    "volume": DP("throttle", "high", ttl_seconds=3600),
    # fail2ban's default bantime: 10 minutes.
    "auth_failures": DP("throttle", "medium", ttl_seconds=600),
    # Speed above an airliner's after subtracting accuracy radii: lock until an operator unlocks.
    "impossible_travel": DP("lock", "high"),
    # Silent by default (issue 9): measured alert precision on `relayguard simulate` 30%
    # (16 of 53 alerts on attacks); it still feeds correlation as a volume jump.
    "volume_baseline": DP("alert", "medium", silent=True),
    "auth_failures_ip": DP("throttle", "medium", ttl_seconds=600),  # fail2ban bantime
    "password_spray": DP("throttle", "high", ttl_seconds=3600),
    "distributed_guessing": DP("throttle", "high", ttl_seconds=600),
    # Slow guessing from networks the user never got in from (issue 9): throttle for an hour,
    # longer than its guesser's gaps; decided by the simulator's false-lock figure (none).
    "auth_failures_slow": DP("throttle", "high", ttl_seconds=3600),
    "new_country": DP("alert", "low"),
    "too_many_places": DP("alert", "medium"),
    # The detector itself reports once per (user, client) per week; no policy cool-down on top.
    # Silent by default (issue 9): measured alert precision 17% (old mail clients, not
    # compromises); it still feeds correlation as a weak suspicious login.
    "plaintext_auth": DP("alert", "low", cooldown_seconds=0, silent=True),
    "dormant_account": DP("alert", "medium"),
    "shared_credential": DP("alert", "medium"),
    # Only its standalone findings reach policy (departure >= 4 with no suspicious login);
    # the signal-only ones feed correlation. Lock or alert: see docs/detectors.md.
    "sending_profile": DP("lock", "high"),
    "correlation": DP("lock", "critical"),
}
INHERIT = object()


def _window(value: Any, where: str) -> windows.WindowSpec:
    if isinstance(value, windows.WindowSpec):
        return value
    try:
        return windows.WindowSpec(float(value["length"]), float(value["bucket"]))
    except (KeyError, TypeError, ValueError) as exc:
        raise ConfigError(
            f"{where}: want {{length=<s>, bucket=<s>}}, got {value!r} ({exc})"
        ) from None


def _limit_value(value: Any, where: str) -> Any:
    """int >= 0 = a limit; "unlimited"/None = no limit; "inherit"/-1 = not set at this level."""
    if value in ("inherit", -1):
        return INHERIT
    if value in ("unlimited", None):
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ConfigError(
            f"{where}: want a number >= 0, \"unlimited\" or \"inherit\"; got {value!r}"
        )
    return value


def _level(table: Any, names: set[str], where: str) -> tuple[dict[str, int | None], str | None]:
    if not isinstance(table, dict):
        raise ConfigError(f"{where}: want a table of limits, got {table!r}")
    values: dict[str, int | None] = {}
    plan: str | None = None
    for key, raw in table.items():
        if key == "plan":
            plan = str(raw)
            continue
        if key not in names:
            raise ConfigError(f"{where}.{key}: unknown limit; known: {sorted(names)}")
        v = _limit_value(raw, f"{where}.{key}")
        if v is not INHERIT:
            values[key] = v
    return values, plan


def _volume_params(overrides: dict[str, Any]) -> volume.Params:
    unknown = set(overrides) - {"enabled", "limits", "windows", "plans", "domains", "users",
                                *_VOLUME_BULK}
    if unknown:
        raise ConfigError(f"detectors.volume: unknown settings {sorted(unknown)}")
    base = {lim.name: lim for lim in volume.Params().limits}
    for name, spec in overrides.get("windows", {}).items():
        where = f"detectors.volume.windows.{name}"
        measure = spec.get("measure") if isinstance(spec, dict) else None
        if measure not in ("messages", "recipients"):
            raise ConfigError(
                f"{where}.measure: want \"messages\" or \"recipients\", got {measure!r}"
            )
        lim = _limit_value(spec.get("limit", "unlimited"), f"{where}.limit")
        value = None if lim is INHERIT else lim
        base[name] = volume.Limit(name, measure, _window(spec, where), value)
    names = set(base)
    for name, value in overrides.get("limits", {}).items():
        if name not in base:
            raise ConfigError(
                f"detectors.volume.limits.{name}: unknown limit; known: {sorted(base)}"
            )
        v = _limit_value(value, f"detectors.volume.limits.{name}")
        if v is not INHERIT:
            base[name] = dataclasses.replace(base[name], limit=v)
    plans = {}
    for plan, table in overrides.get("plans", {}).items():
        plans[plan], _ = _level(table, names, f"detectors.volume.plans.{plan}")
    domains, domain_plans = {}, {}
    for dom, table in overrides.get("domains", {}).items():
        domains[dom.lower()], p = _level(table, names, f"detectors.volume.domains.{dom}")
        if p is not None:
            domain_plans[dom.lower()] = p
    users, user_plans = {}, {}
    for user, table in overrides.get("users", {}).items():
        users[user], p = _level(table, names, f"detectors.volume.users.{user}")
        if p is not None:
            user_plans[user] = p
    for who, p in [*domain_plans.items(), *user_plans.items()]:
        if p not in plans:
            raise ConfigError(f"detectors.volume: {who} is on plan {p!r}, which is not defined; "
                              f"known plans: {sorted(plans)}")
    tiers = volume.Tiers(users, domains, plans, user_plans, domain_plans)
    bulk: dict[str, Any] = {}
    for key, (kind, low) in _VOLUME_BULK.items():
        if key in overrides:
            raw = overrides[key]
            ok = isinstance(raw, int | float) and not isinstance(raw, bool) and raw >= low \
                and (kind is float or isinstance(raw, int))
            if not ok:
                raise ConfigError(f"detectors.volume.{key}: want a {kind.__name__} >= {low}, "
                                  f"got {raw!r}")
            bulk[key] = kind(raw)
    return volume.Params(limits=tuple(base.values()), tiers=tiers, **bulk)


# learned bulk senders (stream/detectors/volume.py): setting -> (type, lowest value)
_VOLUME_BULK: dict[str, tuple[type, float]] = {
    "bulk_days": (int, 0), "bulk_min_days": (int, 1), "bulk_headroom": (float, 1.0)}


def _networks(value: Any, where: str) -> tuple[IpNetwork, ...]:
    try:
        return tuple(ipaddress.ip_network(n, strict=False) for n in value)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{where}: {exc}") from None


def _rules(default: tuple[Any, ...], value: Any, where: str) -> tuple[Any, ...]:
    rule_type = type(default[0])
    out = []
    for i, item in enumerate(value):
        fields = dict(item)
        if "window" in fields:
            fields["window"] = _window(fields["window"], f"{where}[{i}].window")
        try:
            out.append(rule_type(**fields))
        except TypeError as exc:
            raise ConfigError(f"{where}[{i}]: {exc}") from None
    return tuple(out)


def _detector_params(name: str, cls: type[Any], overrides: dict[str, Any],
                     allow_networks: tuple[IpNetwork, ...]) -> Any:
    if name == "volume":
        return _volume_params(overrides)
    known = {f.name: f for f in dataclasses.fields(cls)}
    defaults = cls()
    values: dict[str, Any] = {}
    if "ignore_networks" in known:
        values["ignore_networks"] = allow_networks
    for key, value in overrides.items():
        where = f"detectors.{name}.{key}"
        if key == "enabled":
            continue
        if key not in known:
            raise ConfigError(f"{where}: unknown setting; known: {sorted(known)}")
        if key == "window":
            values[key] = _window(value, where)
        elif key == "ignore_networks":
            values[key] = allow_networks + _networks(value, where)
        elif key == "rules":
            values[key] = _rules(defaults.rules, value, where)
        elif isinstance(value, list):
            values[key] = tuple(value)
        else:
            values[key] = value
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
    nets = _networks(raw.pop("allow_networks", []), "policy.allow_networks")
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
            raise ConfigError(
                f"detectors.{name}: no such detector; known: {sorted(registry.BY_NAME)}"
            )
    pol = _policy(settings)
    for spec in registry.ALL:
        overrides = settings.detectors.get(spec.name, {})
        if overrides.get("enabled", True) is False:
            continue
        params = _detector_params(spec.name, spec.params_type, overrides, pol.allow_networks)
        enabled.append(EnabledDetector(spec, params))
    bounds = TimeBounds(settings.max_event_future_seconds, settings.max_event_age_seconds)
    grace = CoreParams.__dataclass_fields__["grace_seconds"].default
    if bounds.max_future_seconds > grace:  # type: ignore[operator]
        # An event at the bound moves the key's watermark that far ahead; real events more
        # than `grace` behind it are refused as late, which is the blinding this bound stops.
        raise ConfigError(
            f"max_event_future_seconds={bounds.max_future_seconds:g} is larger than the core's "
            f"lateness grace ({grace} s): one event stamped that far ahead would make real "
            "events count as too late", f"set RELAYGUARD_MAX_EVENT_FUTURE_SECONDS <= {grace}")
    return CoreParams(detectors=tuple(enabled), policy=pol, time_bounds=bounds,
                      user_names=settings.user_names)
