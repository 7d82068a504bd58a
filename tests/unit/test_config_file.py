"""The shipped example configuration loads, and config mistakes are named precisely."""

from __future__ import annotations

from pathlib import Path

import pytest

from relayguard.foundation.core_params import build_core_params
from relayguard.foundation.errors import ConfigError
from relayguard.foundation.settings import load_settings

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "relayguard.toml"


def test_example_config_loads(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RELAYGUARD_CONFIG_FILE", str(EXAMPLE))
    settings = load_settings()
    assert settings.partitions == 8
    params = build_core_params(settings)
    assert params.policy.for_detector("volume").ttl_seconds == 3600
    assert "monitoring@example.com" in params.policy.allow_users


def test_env_overrides_file(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RELAYGUARD_CONFIG_FILE", str(EXAMPLE))
    monkeypatch.setenv("RELAYGUARD_PARTITIONS", "2")
    assert load_settings().partitions == 2


def test_bad_setting_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RELAYGUARD_PARTITIONS", "many")
    with pytest.raises(ConfigError, match="RELAYGUARD_PARTITIONS"):
        load_settings()


def test_unknown_detector_setting_is_named(tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[detectors.auth_failures]\nmax_fialures = 3\n")
    monkeypatch.setenv("RELAYGUARD_CONFIG_FILE", str(bad))
    with pytest.raises(ConfigError, match="max_fialures"):
        build_core_params(load_settings())


def test_missing_config_file_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RELAYGUARD_CONFIG_FILE", "/nonexistent/relayguard.toml")
    with pytest.raises(ConfigError, match="no such file"):
        load_settings()
