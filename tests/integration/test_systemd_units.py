"""Every unit file under deploy/systemd/ passes `systemd-analyze verify` (systemd's own checker)
with no complaint at all: unknown keys and bad values only print warnings, so any output fails.

verify runs against a private root (`--root`): the system's unit directory copied in (for the
default dependencies such as sysinit.target), and a stub at each ExecStart path, since verify
insists the command exists and relayguard need not be installed where the units expect it."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.fixtures.systemd import systemd_tools  # noqa: F401  (fixture)

pytestmark = pytest.mark.integration

UNITS = Path(__file__).resolve().parents[2] / "deploy" / "systemd"
SYSTEM_UNITS = Path("/usr/lib/systemd/system")
EXEC = re.compile(r"^Exec(?:Start|StartPre|StartPost|Stop|StopPost|Reload)=[-@:+!]*(\S+)", re.M)


def _root(tmp_path: Path, units: list[Path]) -> Path:
    root = tmp_path / "root"
    shutil.copytree(SYSTEM_UNITS, root / SYSTEM_UNITS.relative_to("/"), symlinks=True)
    target = root / "etc" / "systemd" / "system"
    target.mkdir(parents=True)
    for unit in units:
        shutil.copy(unit, target / unit.name)
        for command in EXEC.findall(unit.read_text()):
            assert command.startswith("/"), f"{unit.name}: {command} is not an absolute path"
            stub = root / command.lstrip("/")
            stub.parent.mkdir(parents=True, exist_ok=True)
            stub.write_text("#!/bin/sh\nexit 0\n")
            stub.chmod(0o755)
    return root


def _verify(root: Path, name: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["systemd-analyze", "verify", f"--root={root}", "--man=no", name],
                          capture_output=True, text=True, timeout=120, check=False)


def test_every_unit_verifies_cleanly(tmp_path: Path, systemd_tools: None) -> None:  # noqa: F811
    units = sorted(UNITS.glob("*.service"))
    names = {u.name for u in units}
    ours = {"relayguard-worker.service", "relayguard-hook-tail.service",
            "relayguard-hook-journal.service"}
    assert ours <= names
    root = _root(tmp_path, units)
    for unit in units:
        proc = _verify(root, unit.name)
        assert proc.returncode == 0 and not (proc.stdout + proc.stderr).strip(), (
            f"{unit.name}:\n{proc.stdout}{proc.stderr}")
        if unit.name in ours:  # data in /var/lib/relayguard (relayguard reads STATE_DIRECTORY)
            assert "StateDirectory=relayguard" in unit.read_text(), unit.name


def test_verify_catches_a_broken_unit(tmp_path: Path, systemd_tools: None) -> None:  # noqa: F811
    good = UNITS / "relayguard-worker.service"
    bad = tmp_path / "relayguard-broken.service"
    bad.write_text(good.read_text().replace("Restart=on-failure", "Restart=sometimes\n"
                                            "ExecStrat=/bin/true"))
    proc = _verify(_root(tmp_path, [bad]), bad.name)
    out = proc.stdout + proc.stderr
    assert "restart specifier" in out and "ExecStrat" in out, out
