"""Table bytes round-trip to equal core states, and the decoded cache never serves stale state."""

from __future__ import annotations

import pickle

import pytest

from relayguard.agents import state_codec
from relayguard.foundation.core_params import build_core_params
from relayguard.foundation.settings import Settings
from relayguard.stream import engine
from relayguard.stream.records import GeoPoint, LoginEvent, SendEvent


def busy_state() -> engine.KeyState:
    params = build_core_params(Settings())
    state = None
    geo = GeoPoint(52.5, 13.4, 20, "DE", "Berlin")
    for i in range(50):
        e = (LoginEvent(f"l{i}", 1796000000.0 + i * 60, "r", "u", "192.0.2.1", i % 3 != 0,
                        "TLSv1.3", geo=geo) if i % 2 else
             SendEvent(f"s{i}", 1796000000.0 + i * 60, "r", "u", "192.0.2.1", "u@x", 3, 900))
        state = engine.step(params, "user", "u", state, e).state
    assert state is not None
    return state


def test_round_trip_is_equal() -> None:
    state = busy_state()
    assert state_codec.loads(state_codec.dumps(state)) == state


def test_cache_serves_only_the_bytes_it_decoded() -> None:
    state = busy_state()
    cache = state_codec.DecodedCache(size=2)
    stored = state_codec.dumps(state)
    cache.remember("user", "u", stored, state)
    assert cache.load("user", "u", stored) is state
    replaced = bytes(bytearray(stored))  # equal bytes, another object: as after recovery
    assert cache.load("user", "u", replaced) == state
    assert cache.load("user", "u", replaced) is not state
    assert cache.load("user", "u", None) is None


def test_cache_is_bounded() -> None:
    state = engine.KeyState()
    cache = state_codec.DecodedCache(size=2)
    for key in "abc":
        cache.remember("user", key, state_codec.dumps(state), state)
    assert len(cache._items) == 2 and ("user", "a") not in cache._items


def test_cached_dumps_reuses_unchanged_detector_bytes_and_stays_exact() -> None:
    params = build_core_params(Settings())
    cache = state_codec.DecodedCache()
    state = busy_state()
    first = cache.dumps("user", "u", state)
    before = dict(cache._blobs[("user", "u")])
    e = SendEvent("s-next", 1796000000.0 + 3600, "r", "u", "192.0.2.1", "u@x", 1, 900)
    after_send = engine.step(params, "user", "u", state, e).state
    second = cache.dumps("user", "u", after_send)
    blobs = cache._blobs[("user", "u")]
    reused = [n for n in blobs if blobs[n][1] is before[n][1]]
    assert "impossible_travel" in reused and "volume" not in reused  # a send moves volume only
    assert state_codec.loads(first) == state
    assert state_codec.loads(second) == after_send
    assert second == state_codec.dumps(after_send)  # same bytes as without the cache


def test_loads_refuses_foreign_bytes() -> None:
    with pytest.raises(TypeError):
        state_codec.loads(pickle.dumps({"not": "a state"}))
