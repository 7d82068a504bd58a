"""The table codec before issue 8 (pickle), kept only as the baseline of
bench/state_codec_bench.py. Never used by the worker: unpickling runs code.

Original notes:

Pickle, because the state is a tree of the core's own frozen dataclasses and only relayguard
workers of the same version read it back. Dataclasses are reduced to (class, field values):
the stock reduction of slotted dataclasses calls `dataclasses.fields()` per object, which made
(de)serialising half the worker's per-event cost. Each detector's state is pickled on its own,
so `DecodedCache.dumps` can reuse the bytes of states an event did not change (most of them:
a send leaves the login detectors alone).
"""

from __future__ import annotations

import dataclasses
import io
import pickle
from typing import Any

from relayguard.stream.engine import KeyState

_FIELDS: dict[type, tuple[str, ...]] = {}


def _field_names(cls: type) -> tuple[str, ...] | None:
    names = _FIELDS.get(cls)
    if names is None and dataclasses.is_dataclass(cls):
        names = _FIELDS[cls] = tuple(f.name for f in dataclasses.fields(cls))
    return names


class _Pickler(pickle.Pickler):
    def reducer_override(self, obj: Any) -> Any:
        cls = type(obj)
        names = None if cls is type else _field_names(cls)
        if names is None:
            return NotImplemented
        return cls, tuple(getattr(obj, n) for n in names)


_FORMAT = "relayguard.keystate.v1"
Blobs = dict[str, tuple[Any, bytes]]  # detector name -> (its state object, that state's bytes)


def _pickle(obj: Any) -> bytes:
    buf = io.BytesIO()
    _Pickler(buf, protocol=pickle.HIGHEST_PROTOCOL).dump(obj)
    return buf.getvalue()


def _dumps(state: KeyState, previous: Blobs) -> tuple[bytes, Blobs]:
    blobs: Blobs = {}
    for name, det in state.detectors:
        hit = previous.get(name)
        # Frozen values: the very same object means the very same bytes.
        blobs[name] = (det, hit[1] if hit is not None and hit[0] is det else _pickle(det))
    parts = tuple((name, blob) for name, (_, blob) in blobs.items())
    outer = (_FORMAT, state.watermark, parts, state.lock, state.recent_event_ids,
             state.late_events, state.applied, state.events_applied)
    return _pickle(outer), blobs


def dumps(state: KeyState) -> bytes:
    return _dumps(state, {})[0]


def loads(data: bytes) -> KeyState:
    outer = pickle.loads(data)
    if not (isinstance(outer, tuple) and outer and outer[0] == _FORMAT):
        raise TypeError(f"table value is not a {_FORMAT} record")
    # The fields issue 8 added (source positions, applied count) ride along, so the baseline
    # round-trips the same state the msgspec codec does.
    _, watermark, parts, lock, ids, late, applied, events_applied = outer
    detectors = tuple((name, pickle.loads(blob)) for name, blob in parts)
    return KeyState(watermark, detectors, lock, ids, late, applied, events_applied)


class DecodedCache:
    """Recently decoded states, valid only while the table still holds the very bytes object
    they came from (so a rebalance or recovery that replaced the value is never missed)."""

    def __init__(self, size: int = 8192) -> None:
        self.size = size
        self._items: dict[tuple[str, str], tuple[bytes, KeyState]] = {}
        self._blobs: dict[tuple[str, str], Blobs] = {}

    def dumps(self, kind: str, key: str, state: KeyState) -> bytes:
        """Like `dumps`, reusing the bytes of detector states unchanged since the last call."""
        stored, blobs = _dumps(state, self._blobs.get((kind, key), {}))
        self._blobs[(kind, key)] = blobs
        return stored

    def load(self, kind: str, key: str, stored: bytes | None) -> KeyState | None:
        if stored is None:
            return None
        hit = self._items.get((kind, key))
        if hit is not None and hit[0] is stored:
            return hit[1]
        return loads(stored)

    def remember(self, kind: str, key: str, stored: bytes, state: KeyState) -> None:
        items = self._items
        items.pop((kind, key), None)
        if len(items) >= self.size:
            oldest = next(iter(items))  # dicts keep insertion order
            del items[oldest]
            self._blobs.pop(oldest, None)
        items[(kind, key)] = (stored, state)
