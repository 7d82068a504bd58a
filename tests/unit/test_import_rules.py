"""Layer rules: the core is pure (no Faust, no Kafka, no clock, no I/O modules) and the relay side
runs without Faust."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CORE_FORBIDDEN = {"faust", "mode", "aiokafka", "agents", "relay", "relayguard", "time", "socket",
                  "asyncio", "subprocess", "random", "os", "urllib", "requests", "geoip2"}
CLOCK_CALLS = {"now", "utcnow", "today", "time", "monotonic", "perf_counter"}
RELAY_FORBIDDEN = {"faust", "mode", "agents"}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def _clock_calls(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), str(path))
    return [f"{path.name}:{n.lineno}" for n in ast.walk(tree)
            if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute)
            and n.func.attr in CLOCK_CALLS]


CORE = sorted((ROOT / "stream").rglob("*.py"))
RELAY = sorted((ROOT / "relay").rglob("*.py"))


@pytest.mark.parametrize("path", CORE, ids=lambda p: str(p.relative_to(ROOT)))
def test_core_is_pure(path: Path) -> None:
    bad = _imports(path) & CORE_FORBIDDEN
    assert not bad, f"{path.relative_to(ROOT)} imports {sorted(bad)}"
    assert not _clock_calls(path), f"clock read in {_clock_calls(path)}"


@pytest.mark.parametrize("path", RELAY, ids=lambda p: str(p.relative_to(ROOT)))
def test_relay_side_needs_no_faust(path: Path) -> None:
    bad = _imports(path) & RELAY_FORBIDDEN
    assert not bad, f"{path.relative_to(ROOT)} imports {sorted(bad)}"


def test_rules_see_files() -> None:
    assert len(CORE) > 10 and len(RELAY) > 5
