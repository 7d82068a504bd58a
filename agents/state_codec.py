"""Core state <-> table bytes.

Pickle, because the state is a tree of the core's own frozen dataclasses and only relayguard
workers of the same version read it back. Dataclasses are reduced to (class, field values):
the stock reduction of slotted dataclasses calls `dataclasses.fields()` per object, which made
(de)serialising half the worker's per-event cost.
"""

from __future__ import annotations

import dataclasses
import io
import pickle
from typing import Any

from stream.engine import KeyState

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


def dumps(state: KeyState) -> bytes:
    buf = io.BytesIO()
    _Pickler(buf, protocol=pickle.HIGHEST_PROTOCOL).dump(state)
    return buf.getvalue()


def loads(data: bytes) -> KeyState:
    state = pickle.loads(data)
    if not isinstance(state, KeyState):
        raise TypeError(f"table value is a {type(state).__name__}, not a KeyState")
    return state


class DecodedCache:
    """Recently decoded states, valid only while the table still holds the very bytes object
    they came from (so a rebalance or recovery that replaced the value is never missed)."""

    def __init__(self, size: int = 8192) -> None:
        self.size = size
        self._items: dict[tuple[str, str], tuple[bytes, KeyState]] = {}

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
            del items[next(iter(items))]  # dicts keep insertion order: drop the oldest
        items[(kind, key)] = (stored, state)
