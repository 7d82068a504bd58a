"""The data directory default: a system path for services, the XDG state dir for a person."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from relayguard.foundation.data_dir import default_data_dir
from relayguard.foundation.settings import Settings


def test_root_gets_the_system_directory(tmp_path: Path) -> None:
    assert default_data_dir(0, {}, tmp_path / "nope") == tmp_path / "nope"


def test_systemd_state_directory_wins(tmp_path: Path) -> None:
    env = {"STATE_DIRECTORY": f"{tmp_path}/a:{tmp_path}/b", "XDG_STATE_HOME": "/x"}
    assert default_data_dir(1000, env, tmp_path / "sys") == tmp_path / "a"
    assert default_data_dir(0, {"STATE_DIRECTORY": "relative"}, tmp_path) == tmp_path


def test_service_user_with_writable_system_directory(tmp_path: Path) -> None:
    system = tmp_path / "sys"
    system.mkdir()
    assert default_data_dir(1000, {"HOME": str(tmp_path)}, system) == system


def test_person_gets_xdg_state_home_never_the_working_directory(tmp_path: Path) -> None:
    missing = tmp_path / "no-system-dir"
    env = {"XDG_STATE_HOME": str(tmp_path / "state"), "HOME": str(tmp_path / "home")}
    assert default_data_dir(1000, env, missing) == tmp_path / "state" / "relayguard"
    env = {"XDG_STATE_HOME": "relative/ignored", "HOME": str(tmp_path / "home")}
    assert default_data_dir(1000, env, missing) == tmp_path / "home/.local/state/relayguard"


def test_choice_is_logged_once(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "relayguard.foundation.data_dir")
    env = {"XDG_STATE_HOME": str(tmp_path)}
    default_data_dir(1000, env, tmp_path / "x")
    default_data_dir(1000, env, tmp_path / "x")
    msgs = [r.getMessage() for r in caplog.records]
    assert len(msgs) == 1 and str(tmp_path / "relayguard") in msgs[0]
    assert "RELAYGUARD_DATA_DIR" in msgs[0]


def test_settings_default_is_absolute_and_env_overrides(monkeypatch: pytest.MonkeyPatch,
                                                        tmp_path: Path) -> None:
    monkeypatch.delenv("RELAYGUARD_DATA_DIR", raising=False)
    assert Settings().data_dir.is_absolute()
    monkeypatch.setenv("RELAYGUARD_DATA_DIR", str(tmp_path / "d"))
    assert Settings().data_dir == tmp_path / "d"
