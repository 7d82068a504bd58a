"""Layer rules, read from the source with `ast` (lazy imports inside functions count too).

Floors, from the ground up; a module may import its own package and floors below it, never above:

    0 relayguard.schemas        the contract
    1 relayguard.stream         the pure core (no Faust, Kafka, clock or I/O modules either)
    2 relayguard.foundation     settings, errors, GeoIP, topics, core params, Kafka helpers
    3 relayguard.agents | relayguard.relay   the two sides, which never import each other
    4 relayguard.roof, bench/   the CLI, demo, replay, operator commands, benchmarks

The relay side also runs without Faust. The negative cases at the end run the same checker on
synthetic modules, so a rule that stopped biting would fail here.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FLOORS = {
    "relayguard.schemas": 0,
    "relayguard.stream": 1,
    "relayguard.foundation": 2,
    "relayguard.agents": 3,
    "relayguard.relay": 3,
    "relayguard.roof": 4,
    "relayguard": 4,  # relayguard/__main__.py is the roof's front door
    "bench": 4,
}
ROOF = max(FLOORS.values())  # the top floor's parts may use each other
SIDES = {"relayguard.agents", "relayguard.relay"}
# Source folders as they sit in the repo, and the package each is installed as.
SOURCE_DIRS = {
    "schemas": "relayguard.schemas",
    "stream": "relayguard.stream",
    "agents": "relayguard.agents",
    "relay": "relayguard.relay",
    "relayguard/foundation": "relayguard.foundation",
    "relayguard/roof": "relayguard.roof",
    "bench": "bench",
}
CORE_FORBIDDEN = {"faust", "mode", "aiokafka", "time", "socket", "asyncio", "subprocess",
                  "random", "os", "urllib", "requests", "geoip2"}
CLOCK_CALLS = {"now", "utcnow", "today", "time", "monotonic", "perf_counter"}
RELAY_FORBIDDEN = {"faust", "mode"}


@dataclass(frozen=True)
class Module:
    name: str  # dotted, as installed
    path: Path
    is_package: bool = False


def package_of(name: str) -> str:
    """The floor package a dotted module name belongs to (longest match)."""
    best = ""
    for pkg in FLOORS:
        if (name == pkg or name.startswith(pkg + ".")) and len(pkg) > len(best):
            best = pkg
    return best


def imported_modules(mod: Module) -> list[tuple[int, str]]:
    """(line, absolute dotted name) of everything `mod` imports; relative imports resolved."""
    tree = ast.parse(mod.path.read_text(), str(mod.path))
    here = mod.name.split(".") if mod.is_package else mod.name.split(".")[:-1]
    out: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = here[: len(here) - node.level + 1]
                prefix = ".".join(base + ([node.module] if node.module else []))
            else:
                prefix = node.module or ""
            # `from relayguard import agents` imports relayguard.agents
            out += [(node.lineno, f"{prefix}.{a.name}") for a in node.names]
            out.append((node.lineno, prefix))
    return out


def layer_violations(mod: Module) -> list[str]:
    own = package_of(mod.name)
    problems = []
    for line, target in imported_modules(mod):
        if not (target == "relayguard" or target.startswith(("relayguard.", "bench."))):
            continue
        other = package_of(target)
        if not other or other == own or other == "relayguard":
            continue
        where = f"{mod.path.name}:{line} ({mod.name}) imports {target}"
        if own in SIDES and other in SIDES:
            problems.append(f"{where}: agents and relay never import each other")
        elif FLOORS[other] >= FLOORS[own] and FLOORS[own] < ROOF:
            problems.append(f"{where}: floor {FLOORS[own]} may not import floor {FLOORS[other]}")
    return problems


def top_level_imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def clock_calls(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), str(path))
    return [f"{path.name}:{n.lineno}" for n in ast.walk(tree)
            if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute)
            and n.func.attr in CLOCK_CALLS]


def modules_under(folder: Path, package: str) -> list[Module]:
    found = []
    for path in sorted(folder.rglob("*.py")):
        parts = list(path.relative_to(folder).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        if is_package:
            parts = parts[:-1]
        found.append(Module(".".join([package, *parts]), path, is_package))
    return found


ALL = [m for d, pkg in SOURCE_DIRS.items() for m in modules_under(ROOT / d, pkg)]
ALL += [Module("relayguard", ROOT / "relayguard" / "__init__.py", True),
        Module("relayguard.__main__", ROOT / "relayguard" / "__main__.py")]
CORE = [m for m in ALL if package_of(m.name) == "relayguard.stream"]
RELAY = [m for m in ALL if package_of(m.name) == "relayguard.relay"]


@pytest.mark.parametrize("mod", ALL, ids=lambda m: m.name)
def test_imports_only_point_down(mod: Module) -> None:
    problems = layer_violations(mod)
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("mod", CORE, ids=lambda m: m.name)
def test_core_is_pure(mod: Module) -> None:
    bad = top_level_imports(mod.path) & CORE_FORBIDDEN
    assert not bad, f"{mod.name} imports {sorted(bad)}"
    assert not clock_calls(mod.path), f"clock read in {clock_calls(mod.path)}"


@pytest.mark.parametrize("mod", RELAY, ids=lambda m: m.name)
def test_relay_side_needs_no_faust(mod: Module) -> None:
    bad = top_level_imports(mod.path) & RELAY_FORBIDDEN
    assert not bad, f"{mod.name} imports {sorted(bad)}"


def test_rules_see_every_floor() -> None:
    seen = {package_of(m.name) for m in ALL}
    assert seen == set(FLOORS), f"no modules found for {set(FLOORS) - seen}"
    assert len(CORE) > 10 and len(RELAY) > 5


# ---- the checker itself, on synthetic modules ------------------------------------------------


def _synthetic(tmp_path: Path, name: str, source: str, is_package: bool = False) -> Module:
    path = tmp_path / (name.replace(".", "_") + ".py")
    path.write_text(source)
    return Module(name, path, is_package)


@pytest.mark.parametrize(("name", "source"), [
    ("relayguard.foundation.settings", "from relayguard.roof.cli import main\n"),
    ("relayguard.foundation.topics", "def f():\n    from relayguard.roof import demo\n"),
    ("relayguard.foundation.geoip", "import relayguard.agents.app\n"),
    ("relayguard.foundation.errors", "from relayguard import relay\n"),
    ("relayguard.relay.producer", "from relayguard.agents.pipeline import Pipeline\n"),
    ("relayguard.relay.producer", "from relayguard import agents\n"),
    ("relayguard.agents.app", "from relayguard.relay.lock_book import LockBook\n"),
    ("relayguard.stream.engine", "from relayguard.foundation.settings import Settings\n"),
    ("relayguard.stream.codec", "from ..foundation import errors\n"),
    ("relayguard.schemas", "from relayguard.stream import codec\n"),
    ("relayguard.agents.pipeline", "import bench.core_bench\n"),
])
def test_checker_refuses_imports_that_run_up_or_across(tmp_path: Path, name: str,
                                                       source: str) -> None:
    assert layer_violations(_synthetic(tmp_path, name, source)), f"{name}: {source!r} passed"


@pytest.mark.parametrize(("name", "source"), [
    ("relayguard.roof.cli", "from relayguard.agents.worker_main import run_worker\n"
                            "from relayguard.relay.hook_cli import hook\n"),
    ("relayguard.relay.producer", "from relayguard.foundation.settings import Settings\n"
                                  "from relayguard.stream.codec import encode_event\n"),
    ("relayguard.agents.app", "from . import pipeline\nfrom .control import Tables\n"),
    ("relayguard.foundation.geoip", "from relayguard.stream.records import Event\n"),
    ("relayguard.stream.codec", "from relayguard import schemas\n"),
])
def test_checker_allows_imports_that_point_down(tmp_path: Path, name: str, source: str) -> None:
    assert layer_violations(_synthetic(tmp_path, name, source)) == []
