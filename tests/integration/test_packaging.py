"""The wheel installs one import package, `relayguard`, and its command runs from there.

Builds the wheel from a copy of the source tree (so no build/ litter lands in the checkout),
installs it without dependencies into a fresh virtual environment, and lends that environment
the test venv's third-party packages through a .pth line (whose own .pth files, among them the
editable install's finder, are not processed), so nothing of the checkout is importable there.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import venv
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SKIP = shutil.ignore_patterns(".git", ".venv", "build", "dist", "*.egg-info", "__pycache__",
                              ".mypy_cache", ".ruff_cache", ".pytest_cache", ".hypothesis",
                              ".relayguard")


def _run(cmd: list[str], cwd: Path, env: dict[str, str] | None = None) -> str:
    done = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, f"{cmd} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done.stdout


def _build_wheel(tmp_path: Path) -> Path:
    src = tmp_path / "src"
    shutil.copytree(ROOT, src, symlinks=True, ignore=SKIP)
    out = tmp_path / "wheelhouse"
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(out), "."], src)
    wheels = list(out.glob("relayguard-*.whl"))
    assert len(wheels) == 1, wheels
    return wheels[0]


def _top_level_of_files(names: list[str]) -> set[str]:
    tops = set()
    for name in names:
        first = name.split("/", 1)[0]
        if first.endswith((".dist-info", ".data")):
            continue
        tops.add(first.removesuffix(".py"))
    return tops


def test_wheel_installs_exactly_one_import_package(tmp_path: Path) -> None:
    wheel = _build_wheel(tmp_path)
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        top_level = next(n for n in names if n.endswith(".dist-info/top_level.txt"))
        assert zf.read(top_level).decode().split() == ["relayguard"]
    assert _top_level_of_files(names) == {"relayguard"}
    for needed in ("relayguard/stream/engine.py", "relayguard/agents/app.py",
                   "relayguard/relay/policy_server.py", "relayguard/schemas/alert.schema.json",
                   "relayguard/roof/broker/pom.xml", "relayguard/foundation/settings.py"):
        assert needed in names, f"{needed} missing from the wheel"

    env_dir = tmp_path / "fresh-venv"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    py = env_dir / "bin" / "python"
    _run([str(py), "-m", "pip", "install", "--quiet", "--no-deps", "--no-index", str(wheel)],
         tmp_path)
    site = Path(_run([str(py), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                     tmp_path).strip())
    (site / "test-lent-deps.pth").write_text(sysconfig.get_path("purelib") + "\n")

    installed = [p.relative_to(site).as_posix() for p in site.rglob("*")
                 if p.is_file() and "__pycache__" not in p.parts]
    ours = [n for n in installed if "relayguard" in n.split("/", 1)[0]
            or n.split("/", 1)[0].startswith("relayguard-")]
    assert _top_level_of_files(ours) == {"relayguard"}
    for stray in ("stream", "agents", "relay", "schemas"):
        assert not (site / stray).exists(), f"{stray}/ installed at top level"

    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    where = _run([str(py), "-c", "import relayguard.stream.engine as m; print(m.__file__)"],
                 tmp_path, env)
    assert where.strip().startswith(str(site)), where
    out = _run([str(env_dir / "bin" / "relayguard"), "--help"], tmp_path, env)
    for command in ("worker", "hook", "broker", "demo", "replay", "lock", "unlock", "locks"):
        assert command in out
    assert "Usage: relayguard" in _run([str(py), "-m", "relayguard", "--help"], tmp_path, env)
