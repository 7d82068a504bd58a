"""Ingest settings reach the core as frozen params, and bounds that would let one event blind
detection are refused at start."""

from __future__ import annotations

import pytest

from relayguard.foundation.core_params import build_core_params
from relayguard.foundation.errors import ConfigError
from relayguard.foundation.settings import Settings, load_settings
from relayguard.stream.timefmt import TimeBounds


def test_defaults_and_overrides_reach_the_core() -> None:
    assert build_core_params(Settings()).time_bounds == TimeBounds(300.0, 7 * 86400.0)
    s = Settings(max_event_future_seconds=60, max_event_age_seconds=3600)
    assert build_core_params(s).time_bounds == TimeBounds(60.0, 3600.0)


def test_future_bound_beyond_the_lateness_grace_is_refused() -> None:
    with pytest.raises(ConfigError, match="too late"):
        build_core_params(Settings(max_event_future_seconds=3600))


def test_group_timeouts_are_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RELAYGUARD_SESSION_TIMEOUT_SECONDS", "2")
    with pytest.raises(ConfigError, match="SESSION_TIMEOUT_SECONDS"):
        load_settings()
