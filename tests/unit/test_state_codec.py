"""Table bytes round-trip to equal core states, the decoded cache never serves stale state, and
bytes that are not a state record this worker wrote are refused without running anything."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import pickle
from pathlib import Path

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

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
    # Equal bytes, another object (as every RocksDB read gives): still the cached state.
    assert cache.load("user", "u", bytes(bytearray(stored))) is state
    other = state_codec.dumps(dataclasses.replace(state, late_events=state.late_events + 1))
    assert cache.load("user", "u", other) is not state  # replaced value: decoded afresh
    assert cache.load("user", "u", other) == dataclasses.replace(
        state, late_events=state.late_events + 1)
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


class _Planted:
    """Unpickling this creates a file: what an attacker with changelog write access plants."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, ...]:
        return (os.mkdir, (str(self.marker),))


def _record(outer: dict[str, object]) -> bytes:
    return state_codec.PREFIX_V1 + msgspec.msgpack.encode(outer)


def test_planted_pickle_and_old_pickles_are_refused_without_running(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    planted = pickle.dumps(_Planted(marker))
    old_format = pickle.dumps(("relayguard.keystate.v1", 0.0, (), None, b"", 0))
    for data in (planted, old_format, pickle.dumps({"not": "a state"})):
        with pytest.raises(state_codec.UndecodableState):
            state_codec.loads(data)
    assert not marker.exists()


@pytest.mark.parametrize("data", [
    b"", b"rgs", b"rgs\x03" + msgspec.msgpack.encode({}),  # empty, truncated, other version
    b"rgs\x01\xc1", b"rgs\x01" + b"\x92" * 5,  # malformed MessagePack
    _record({"watermark": 1.0, "surprise": 1}),  # unknown field
    _record({"late_events": 1.5}),  # float where the core has an int
    _record({"watermark": "soon"}),
    _record({"recent_event_ids": "not bytes"}),
    _record({"lock": {"locked": 1}}),  # int where the core has a bool
    _record({"lock": {"locked": True, "admin": True}}),  # unknown field one level down
    _record({"detectors": [["no_such_detector", {}]]}),  # unknown class name
    _record({"detectors": [["volume", {}], ["volume", {}]]}),
    _record({"detectors": [["volume", {"counts": [[[1, 2.5]]]}]]}),  # float in int buckets
    _record({"detectors": [["volume", {"watermark": 1.0, "extra": 2}]]}),
    _record({"detectors": [["impossible_travel", {"last": {"time": 1.0, "ip": "x"}}]]}),
])
def test_malformed_records_are_refused(data: bytes) -> None:
    with pytest.raises(state_codec.UndecodableState):
        state_codec.loads(data)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_any_bytes_either_decode_or_are_refused(tail: bytes) -> None:
    for data in (tail, state_codec.PREFIX + tail):
        with contextlib.suppress(state_codec.UndecodableState):
            assert isinstance(state_codec.loads(data), engine.KeyState)


def test_old_records_without_a_new_field_decode_with_its_default() -> None:
    """A field added to the core later is simply absent from older bytes."""
    assert state_codec.loads(_record({"watermark": 5.0})) == engine.KeyState(watermark=5.0)


def test_values_of_every_core_kind_survive() -> None:
    state = engine.KeyState(watermark=float("-inf"), recent_event_ids=b"\x00\xff" * 8,
                            late_events=3)
    back = state_codec.loads(state_codec.dumps(state))
    assert back == state and back.watermark == float("-inf")
    assert isinstance(back.recent_event_ids, bytes)


def test_every_registered_detector_has_a_state_class() -> None:
    from relayguard.stream.detectors import registry

    assert set(state_codec.STATE_CLASSES) == {s.name for s in registry.ALL}
    for spec in registry.ALL:  # every initial state round-trips on its own too
        state = engine.KeyState(detectors=((spec.name, spec.initial_state()),))
        assert state_codec.loads(state_codec.dumps(state)) == state


def test_cache_turns_undecodable_into_one_report_and_empty_state() -> None:
    reports: list[tuple[str, str]] = []
    cache = state_codec.DecodedCache(on_undecodable=lambda k, key, exc: reports.append((k, key)))
    bad = pickle.dumps({"x": 1})
    assert cache.load("user", "mallory", bad) == engine.KeyState()
    assert cache.load("user", "mallory", bad) == engine.KeyState()
    assert reports == [("user", "mallory")]


# ---- format 2 (fields by position, issue 12) against format 1 (fields by name) ---------------

def test_format_1_records_still_decode_and_format_2_is_smaller() -> None:
    state = busy_state()
    old = state_codec._dumps_v1(state)
    new = state_codec.dumps(state)
    assert old[:4] == b"rgs\x01" and new[:4] == b"rgs\x02"
    assert state_codec.loads(old) == state == state_codec.loads(new)
    assert len(new) < 0.75 * len(old)  # the field names were a third or more of the bytes


def _v2(detectors: list[tuple[str, int, object]], outer_layout: int | None = None) -> bytes:
    fields = [getattr(engine.KeyState(), n) for n in state_codec._OUTER_FIELDS]
    wired = [v if w is None else w(v) for (_, w), v in zip(state_codec._OUTER_WIRE, fields,
                                                           strict=True)]
    layout = state_codec._OUTER_FP if outer_layout is None else outer_layout
    return state_codec.PREFIX + msgspec.msgpack.encode(
        [layout, [(n, fp, msgspec.Raw(msgspec.msgpack.encode(v))) for n, fp, v in detectors],
         *wired])


def _layouts(name: str) -> dict[int, int]:
    return state_codec._DETECTOR_FPS[name][1]


def test_a_detector_state_written_before_fields_were_appended_decodes_with_defaults() -> None:
    state = busy_state()
    det = dict(state.detectors)
    name = next(n for n, d in state.detectors
                if len(dataclasses.fields(d)) >= 2 and d != type(d)())  # a non-trivial one
    d = det[name]
    wire = state_codec._DETECTOR_DECODERS_2[name][2](d)
    k = len(wire) - 1  # as if the last field had been added after this record was written
    older = next(fp for fp, n in _layouts(name).items() if n == k)
    back = state_codec.loads(_v2([(name, older, wire[:k])]))
    last = dataclasses.fields(d)[-1]
    default = (last.default if last.default is not dataclasses.MISSING
               else last.default_factory())  # type: ignore[operator]
    assert dict(back.detectors)[name] == dataclasses.replace(d, **{last.name: default})


def test_a_detector_state_of_an_unknown_layout_is_dropped_alone() -> None:
    state = busy_state()
    names = [n for n, _ in state.detectors]
    wires = {n: state_codec._DETECTOR_DECODERS_2[n][2](d) for n, d in state.detectors}
    unknown = next(x for x in range(1, 1000) if x not in _layouts(names[0]))
    entries = [(n, unknown if n == names[0] else state_codec._DETECTOR_FPS[n][0], wires[n])
               for n in names]
    back = state_codec.loads(_v2(entries))
    assert [n for n, _ in back.detectors] == names[1:]
    assert dict(back.detectors) == {n: d for n, d in state.detectors if n != names[0]}


def test_a_keystate_of_an_unknown_layout_is_refused() -> None:
    bad = next(x for x in range(1, 1000) if x not in state_codec._OUTER_FPS)
    with pytest.raises(state_codec.UndecodableState, match="KeyState layout"):
        state_codec.loads(_v2([], outer_layout=bad))


def _volume_fp() -> int:
    return state_codec._DETECTOR_FPS["volume"][0]


@pytest.mark.parametrize("data", [
    state_codec.PREFIX + msgspec.msgpack.encode({"watermark": 1.0}),  # a map, not an array
    state_codec.PREFIX + msgspec.msgpack.encode(["x"]),  # layout not an int
    state_codec.PREFIX + msgspec.msgpack.encode([0, [], "soon"]),  # watermark not a float
    _v2([("no_such_detector", 1, [])]),
    _v2([("volume", _volume_fp(), []), ("volume", _volume_fp(), [])]),
    _v2([("volume", _volume_fp(), ["not", "a", "volume", "state", "at", "all"])]),
    _v2([("volume", _volume_fp(), {"watermark": 1.0})]),  # format 1's map inside format 2
])
def test_malformed_format_2_records_are_refused(data: bytes) -> None:
    with pytest.raises(state_codec.UndecodableState):
        state_codec.loads(data)
