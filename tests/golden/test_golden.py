"""Golden scenarios per detector (tests/golden/<detector>.json), run through the same core loop as
`relayguard replay`. Every detector in the registry must have a file with at least one case
that fires and one benign case."""

from __future__ import annotations

from typing import Any

import pytest

from relayguard.stream.detectors import registry
from tests.golden.runner import GOLDEN_DIR, all_files, check_case, load


def _cases() -> list[Any]:
    out = []
    for path in all_files():
        data = load(path)
        for case in data["cases"]:
            out.append(pytest.param(data["detector"], case, id=f"{path.stem}:{case['name']}"))
    return out


@pytest.mark.parametrize(("detector", "case"), _cases())
def test_golden_case(detector: str, case: dict[str, Any]) -> None:
    assert case.get("why"), "every golden case says why in one line"
    problems = check_case(detector, case)
    assert not problems, f"{case['name']} ({case['why']}):\n  " + "\n  ".join(problems)


@pytest.mark.parametrize("name", [spec.name for spec in registry.ALL])
def test_every_detector_has_a_golden_file(name: str) -> None:
    path = GOLDEN_DIR / f"{name}.json"
    assert path.is_file(), f"detector {name} has no golden file {path}"
    data = load(path)
    assert data["detector"] == name
    cases = data["cases"]
    assert any(c.get("expect") for c in cases), f"{path.name}: no case where {name} fires"
    assert any(c.get("silent") or not c.get("expect") for c in cases), (
        f"{path.name}: no benign case where {name} stays silent"
    )


def test_golden_files_are_all_known_detectors() -> None:
    for path in all_files():
        assert load(path)["detector"] in registry.BY_NAME, f"{path.name}: unknown detector"


def test_runner_reports_wrong_expectations() -> None:
    """The runner itself: a wrong count, a wrong evidence value and a noisy benign case fail."""
    fires = {"t": 0, "type": "send", "user": "a@example.com", "repeat": 11, "every": 1}
    base = {"name": "x", "why": "x", "events": [fires]}
    assert check_case("volume", {**base, "expect": [{"evidence": {"count": 11}}]}) == []
    assert check_case("volume", {**base, "expect": []})
    assert check_case("volume", {**base, "expect": [{"evidence": {"count": 12}}]})
    assert check_case("volume", {**base, "expect": [{"subject": "b@example.com"}]})
    assert check_case("volume", {**base, "silent": True})
    assert check_case("volume", {**base, "expect": [{}], "expect_commands": []})
