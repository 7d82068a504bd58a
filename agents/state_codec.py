"""Core state <-> table bytes. Pickle, because the state is a tree of the core's own frozen
dataclasses and only relayguard workers of the same version read it back."""

from __future__ import annotations

import pickle

from stream.engine import KeyState


def dumps(state: KeyState) -> bytes:
    return pickle.dumps(state, protocol=pickle.HIGHEST_PROTOCOL)


def loads(data: bytes) -> KeyState:
    state = pickle.loads(data)
    if not isinstance(state, KeyState):
        raise TypeError(f"table value is a {type(state).__name__}, not a KeyState")
    return state
