"""Registry contracts: names, modules documented, per-IP detectors only read what the by-IP
stream carries, and every detector is pure with respect to its inputs."""

from __future__ import annotations

import importlib
import pickle

from relayguard.stream.detectors import registry
from relayguard.stream.records import Event, GeoPoint, LoginEvent, SendEvent

T0 = 1_796_000_000.0
GEO = GeoPoint(52.52, 13.405, 20.0, "DE", "Berlin")
SAMPLES: list[Event] = [
    SendEvent("s1", T0, "r1", "a@x", "192.0.2.1", "a@x", 5, 100),
    LoginEvent("l1", T0 + 1, "r1", "a@x", "192.0.2.1", True, None, "PLAIN", geo=GEO),
    LoginEvent("l2", T0 + 2, "r1", "a@x", "192.0.2.1", False, failure_reason="bad_credentials"),
    LoginEvent("l3", T0 + 3, "r1", None, "192.0.2.1", False, failure_reason="other"),
]


def test_names_unique_and_modules_cite_sources() -> None:
    assert len(registry.BY_NAME) == len(registry.ALL)
    for spec in registry.ALL:
        module = importlib.import_module(spec.step.__module__)
        assert module.__doc__ and len(module.__doc__) > 200, f"{spec.name}: document defaults"
        assert spec.description


def test_ip_detectors_ignore_events_the_ip_stream_does_not_carry() -> None:
    for spec in registry.ALL:
        if spec.key_kind != "ip":
            continue
        params = spec.params_type()
        for ev in SAMPLES:
            if registry.needs_ip_state(ev):
                continue
            state = spec.initial_state()
            new, found = spec.step(params, state, ev)
            assert found == [] and new == state, f"{spec.name} reads {type(ev).__name__}"


def test_step_does_not_mutate_its_input_state() -> None:
    for spec in registry.ALL:
        params = spec.params_type()
        state = spec.initial_state()
        for ev in SAMPLES * 3:
            before = pickle.dumps(state)
            new, _ = spec.step(params, state, ev)
            assert pickle.dumps(state) == before, spec.name
            state = new
