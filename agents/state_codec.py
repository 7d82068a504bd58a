"""Core state <-> table bytes, as data only: MessagePack through msgspec, never pickle.

A table value is `b"rgs" + version byte + MessagePack`. Format 2 (written since issue 12) is
positional: the array `[layout, detectors, *KeyState's other fields]`, each detector the array
`[name, layout, [its state's fields in declaration order]]`, nested dataclasses as arrays too.
Format 1 (still read) was the same values as maps with every field's name, and the names were
about a third of a busy user's bytes (bench/state_codec_bench.py: 2,320 -> 1,534 B mean).

`layout` is a crc32 of the class's field names and types (nested classes spelt out), one per
prefix of its fields: a record written before fields were appended to a class (with defaults)
still decodes, the missing fields from their defaults, as format 1 allowed. Any other change to
a detector's state class (a field removed, renamed, moved or retyped) is recognised, and that
detector's state alone starts afresh for the key (logged once per layout): never read by
position with the wrong layout. A KeyState of an unknown layout is refused as a whole.

Decoding is typed: every class comes from the code, never from the bytes. Allowed are KeyState,
the classes its annotations name (LockState, ...), and per detector name the State class of
that detector in `detectors.registry` (plus the classes *its* annotations name). Each is
mirrored once into a msgspec Struct that refuses unknown fields and checks every field's type
(ints stay ints, floats incl. -inf, bytes, None, tuples, dicts).

Why msgspec: typed MessagePack decoding in C, so the type checks come with the parse; bytes,
-inf and int dict keys are native. orjson was the other candidate: no bytes, -inf turns into
null, dict keys must be strings. Per-detector byte reuse: the worker re-encodes only the
detector states that changed (`DecodedCache.dumps`).

Undecodable bytes (an old pickle, garbage, a planted payload) raise `UndecodableState`, and
nothing in them is ever executed; `DecodedCache.load` turns that into "no state" for the key.
"""

from __future__ import annotations

import collections.abc
import dataclasses
import logging
import types
import typing
import zlib
from collections.abc import Callable
from typing import Any

import msgspec

from relayguard.stream.detectors import registry
from relayguard.stream.engine import KeyState

log = logging.getLogger("relayguard.worker")

VERSION = 2
PREFIX = b"rgs" + bytes([VERSION])
PREFIX_V1 = b"rgs" + bytes([1])  # read, no longer written


class UndecodableState(ValueError):
    """Table bytes that are not a relayguard state record this worker can read."""


# --- class registry and their msgspec mirrors, built from the code at import time -----------

_MIRRORS: dict[type, type] = {}  # format 1: fields by name
_ARRAY_MIRRORS: dict[type, type] = {}  # format 2: fields by position
Convert = Callable[[Any], Any] | None  # mirror value -> core value; None: the value as it is
_CONVERTERS: dict[type, Callable[[Any], Any]] = {}


def _mirror_type(hint: Any, array_like: bool = False) -> Any:
    """The annotation with every core dataclass replaced by its strict mirror Struct (fields
    by name: format 1; by position: format 2)."""
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        return _mirror(hint, array_like)
    origin = typing.get_origin(hint)
    if origin is None or origin is typing.Literal:
        return hint
    args = tuple(_mirror_type(a, array_like) for a in typing.get_args(hint))
    if origin in (typing.Union, types.UnionType):
        return typing.Union[args]  # noqa: UP007 (built from a tuple)
    if origin is collections.abc.Mapping:
        origin = dict
    return origin[args]


def _mirror(cls: type, array_like: bool = False) -> type:
    mirrors = _ARRAY_MIRRORS if array_like else _MIRRORS
    if cls in mirrors:
        return mirrors[cls]
    hints = typing.get_type_hints(cls)
    fields: list[tuple[Any, ...]] = []
    for f in dataclasses.fields(cls):
        kind = _mirror_type(hints[f.name], array_like)
        if f.default is not dataclasses.MISSING:
            fields.append((f.name, kind, f.default))
        elif f.default_factory is not dataclasses.MISSING:
            fields.append((f.name, kind, msgspec.field(default_factory=f.default_factory)))
        else:
            fields.append((f.name, kind))
    # gc=False: mirrors live only until converted, and hold no cycles.
    mirror = msgspec.defstruct(f"{cls.__module__}.{cls.__qualname__}", fields,
                               forbid_unknown_fields=True, frozen=True, gc=False,
                               array_like=array_like)
    mirrors[cls] = mirror
    return mirror


def _walk(hint: Any, on_dataclass: Callable[[type], Callable[[Any], Any]],
          sequence: Callable[[Any], Any]) -> Convert:
    """A converter for values of annotation `hint`: `on_dataclass` handles each dataclass,
    `sequence` builds tuples' replacements (tuple when reading, list when writing). None: the
    value passes as it is (the bulk: tuples of numbers, already type-checked by msgspec)."""
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        return on_dataclass(hint)
    origin = typing.get_origin(hint)
    if origin is None or origin is typing.Literal:
        return None
    args = typing.get_args(hint)
    convs = [_walk(a, on_dataclass, sequence) for a in args]
    if all(c is None for c in convs):
        return None
    if origin in (typing.Union, types.UnionType):
        real = [c for c in convs if c is not None]
        if len(real) != 1 or len(args) != 2 or type(None) not in args:
            raise TypeError(f"state annotation {hint} is not supported by the table codec")
        one = real[0]
        return lambda v: None if v is None else one(v)
    if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
        item = convs[0]
        assert item is not None
        return lambda v: sequence(map(item, v))
    if origin is tuple:
        parts = [c or (lambda x: x) for c in convs]
        return lambda v: sequence(c(x) for c, x in zip(parts, v, strict=True))
    if origin in (dict, collections.abc.Mapping):
        kc, vc = (c or (lambda x: x) for c in convs)
        return lambda v: {kc(k): vc(x) for k, x in v.items()}
    raise TypeError(f"state annotation {hint} is not supported by the table codec")


def _converter(hint: Any) -> Convert:
    """Decoded mirrors -> core dataclasses."""
    return _walk(hint, _dataclass_converter, tuple)


def _wire(hint: Any) -> Convert:
    """Core value -> format 2's wire value: every dataclass as the list of its field values in
    declaration order (msgspec writes a dataclass as a map with its field names, which were
    about 45% of a busy user's bytes)."""
    return _walk(hint, _dataclass_wire, list)


def _field_plan(cls: type, walk: Callable[[Any], Convert]) -> tuple[tuple[str, Convert], ...]:
    hints = typing.get_type_hints(cls)
    return tuple((f.name, walk(hints[f.name])) for f in dataclasses.fields(cls))


def _dataclass_converter(cls: type) -> Callable[[Any], Any]:
    if cls in _CONVERTERS:
        return _CONVERTERS[cls]
    convert = _CONVERTERS[cls] = _generated("convert", "cls(", ")", _field_plan(cls, _converter),
                                            cls=cls)
    return convert


_WIRES: dict[type, Callable[[Any], Any]] = {}


def _dataclass_wire(cls: type) -> Callable[[Any], Any]:
    if cls in _WIRES:
        return _WIRES[cls]
    to_wire = _WIRES[cls] = _generated("to_wire", "[", "]", _field_plan(cls, _wire))
    return to_wire


def _generated(name: str, opening: str, closing: str,
               plan: tuple[tuple[str, Convert], ...], **scope: Any) -> Callable[[Any], Any]:
    """`lambda v: opening v.a, c1(v.b), ... closing` compiled once per class: the same values
    as a loop over the plan with getattr, at a fraction of its cost (it ran for every changed
    detector state on every table write; py-spy: 6.6% of the worker's time)."""
    parts = []
    for i, (field_name, conv) in enumerate(plan):
        if not field_name.isidentifier():
            raise TypeError(f"state field {field_name!r} is not an identifier")
        if conv is None:
            parts.append(f"v.{field_name}")
        else:
            scope[f"_c{i}"] = conv
            parts.append(f"_c{i}(v.{field_name})")
    src = f"def {name}(v):\n    return {opening}{', '.join(parts)}{closing}\n"
    exec(src, scope)
    fn: Callable[[Any], Any] = scope[name]
    return fn


def _layout(hint: Any) -> str:
    """A stable text of an annotation's shape, nested dataclasses spelt out field by field."""
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        hints = typing.get_type_hints(hint)
        inner = ",".join(f"{f.name}:{_layout(hints[f.name])}" for f in dataclasses.fields(hint))
        return f"{hint.__qualname__}{{{inner}}}"
    origin = typing.get_origin(hint)
    if origin is None:
        return getattr(hint, "__qualname__", None) or repr(hint)
    if origin is typing.Literal:
        return repr(hint)
    name = "Union" if origin in (typing.Union, types.UnionType) else getattr(
        origin, "__qualname__", repr(origin))
    return f"{name}[{','.join(_layout(a) for a in typing.get_args(hint))}]"


def _prefix_fingerprints(name: str, fields: list[tuple[str, Any]]) -> dict[int, int]:
    """crc32 of the layout of the first k fields -> k, for k = 0..len(fields). A record names
    the layout it was written with; a reader whose class only appended fields (with defaults)
    finds the writer's k here and decodes the k values it has, the rest from the defaults.
    Any other change (a field renamed, removed, moved or retyped, a nested class changed) finds
    nothing, and the record is never read by position with the wrong layout."""
    out: dict[int, int] = {}
    text = name
    out[zlib.crc32(text.encode())] = 0
    for k, (field_name, hint) in enumerate(fields, 1):
        text += f";{field_name}:{_layout(hint)}"
        out[zlib.crc32(text.encode())] = k
    return out


def _class_fields(cls: type, skip: str | None = None) -> list[tuple[str, Any]]:
    hints = typing.get_type_hints(cls)
    return [(f.name, hints[f.name]) for f in dataclasses.fields(cls) if f.name != skip]


def _detector_state_classes() -> dict[str, type]:
    """Detector name -> the class of its state, from the registry (never from data)."""
    return {spec.name: type(spec.initial_state()) for spec in registry.ALL}


STATE_CLASSES: dict[str, type] = _detector_state_classes()
_DETECTOR_DECODERS: dict[str, tuple[Callable[[Any], Any], msgspec.msgpack.Decoder[Any]]] = {
    name: (_dataclass_converter(cls), msgspec.msgpack.Decoder(_mirror(cls)))
    for name, cls in STATE_CLASSES.items()}
# The envelope: KeyState's own fields, detectors as (name, that detector's raw bytes).
_KEYSTATE_HINTS = typing.get_type_hints(KeyState)
_OUTER_FIELDS = tuple(f.name for f in dataclasses.fields(KeyState) if f.name != "detectors")
_Envelope = msgspec.defstruct(
    "KeyStateEnvelope",
    [("detectors", tuple[tuple[str, msgspec.Raw], ...], ())]
    + [(f.name, _mirror_type(_KEYSTATE_HINTS[f.name]),
        f.default if f.default is not dataclasses.MISSING
        else msgspec.field(default_factory=f.default_factory))  # type: ignore[arg-type]
       for f in dataclasses.fields(KeyState) if f.name != "detectors"],
    forbid_unknown_fields=True, frozen=True)
_ENVELOPE_DECODER: msgspec.msgpack.Decoder[Any] = msgspec.msgpack.Decoder(_Envelope)
_OUTER_PLAN = tuple((n, _converter(_KEYSTATE_HINTS[n])) for n in _OUTER_FIELDS)
_ENCODER = msgspec.msgpack.Encoder()

# Format 2 (written since issue 12): the same values by position. The envelope is the array
# [layout fingerprint, detectors, *KeyState's other fields]; each detector is
# [name, layout fingerprint, its state's array].
_DETECTOR_FPS: dict[str, tuple[int, dict[int, int]]] = {}
for _name, _cls in STATE_CLASSES.items():
    _fps = _prefix_fingerprints(_cls.__qualname__, _class_fields(_cls))
    _DETECTOR_FPS[_name] = (next(fp for fp, k in _fps.items() if k == len(_fps) - 1), _fps)
_DETECTOR_DECODERS_2: dict[str, tuple[Callable[[Any], Any], msgspec.msgpack.Decoder[Any],
                                      Callable[[Any], Any]]] = {
    name: (_dataclass_converter(cls), msgspec.msgpack.Decoder(_mirror(cls, array_like=True)),
           _dataclass_wire(cls))
    for name, cls in STATE_CLASSES.items()}
_OUTER_FPS = _prefix_fingerprints("KeyState", _class_fields(KeyState, skip="detectors"))
_OUTER_FP = next(fp for fp, k in _OUTER_FPS.items() if k == len(_OUTER_FIELDS))
_OUTER_WIRE = tuple((n, _wire(_KEYSTATE_HINTS[n])) for n in _OUTER_FIELDS)
_Envelope2 = msgspec.defstruct(
    "KeyStateEnvelope2",
    [("layout", int), ("detectors", tuple[tuple[str, int, msgspec.Raw], ...], ())]
    + [(f.name, _mirror_type(_KEYSTATE_HINTS[f.name], array_like=True),
        f.default if f.default is not dataclasses.MISSING
        else msgspec.field(default_factory=f.default_factory))  # type: ignore[arg-type]
       for f in dataclasses.fields(KeyState) if f.name != "detectors"],
    forbid_unknown_fields=True, frozen=True, array_like=True)
_ENVELOPE2_DECODER: msgspec.msgpack.Decoder[Any] = msgspec.msgpack.Decoder(_Envelope2)
_dropped_layouts: set[tuple[str, int]] = set()  # (detector, layout) already logged


# --- encode / decode ---------------------------------------------------------------------

# detector name -> (its state object, that state's item of the envelope: (name, layout, bytes))
Blobs = dict[str, tuple[Any, tuple[str, int, msgspec.Raw]]]
_DETECTOR_WIRES: dict[str, tuple[int, Callable[[Any], Any]]] = {
    name: (_DETECTOR_FPS[name][0], entry[2]) for name, entry in _DETECTOR_DECODERS_2.items()}
_outer_values = _generated("outer_values", "[", "]", _OUTER_WIRE)  # KeyState's other fields


def _dumps(state: KeyState, previous: Blobs) -> tuple[bytes, Blobs]:
    blobs: Blobs = {}
    for name, det in state.detectors:
        hit = previous.get(name)
        # Frozen values: the very same object means the very same bytes (and envelope item).
        if hit is None or hit[0] is not det:
            wire = _DETECTOR_WIRES.get(name)
            if wire is None:
                raise TypeError(f"no state class registered for detector {name!r}")
            hit = (det, (name, wire[0], msgspec.Raw(_ENCODER.encode(wire[1](det)))))
        blobs[name] = hit
    outer: list[Any] = [_OUTER_FP, [item for _, item in blobs.values()], *_outer_values(state)]
    return PREFIX + _ENCODER.encode(outer), blobs


def _dumps_v1(state: KeyState) -> bytes:
    """Format 1 (fields by name), as workers before issue 12 wrote it: still read; written
    only by tests and the benches that compare the two."""
    outer: dict[str, Any] = {"detectors": [(n, msgspec.Raw(_ENCODER.encode(d)))
                                           for n, d in state.detectors]}
    for name in _OUTER_FIELDS:
        outer[name] = getattr(state, name)
    return PREFIX_V1 + _ENCODER.encode(outer)


def dumps(state: KeyState) -> bytes:
    return _dumps(state, {})[0]


def loads(data: bytes) -> KeyState:
    """Decode table bytes; raises UndecodableState for anything else (executes nothing)."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise UndecodableState(f"table value is {type(data).__name__}, not bytes")
    if data[:3] != PREFIX[:3]:
        raise UndecodableState("not a relayguard state record (an old worker's pickle, or "
                               f"foreign bytes starting {bytes(data[:8])!r})")
    if data[3:4] == PREFIX[3:4]:
        return _loads_v2(data)
    if data[3:4] != PREFIX_V1[3:4]:
        raise UndecodableState(f"state format version {data[3] if len(data) > 3 else None} "
                               f"is not {VERSION} or 1 (written by another relayguard version)")
    try:
        env = _ENVELOPE_DECODER.decode(memoryview(data)[4:])
        detectors = []
        seen: set[str] = set()
        for name, raw in env.detectors:
            entry = _DETECTOR_DECODERS.get(name)
            if entry is None:
                raise UndecodableState(f"unknown detector state {name[:60]!r}")
            if name in seen:
                raise UndecodableState(f"detector state {name!r} twice")
            seen.add(name)
            convert, decoder = entry
            detectors.append((name, convert(decoder.decode(raw))))
        values = {n: getattr(env, n) if c is None else c(getattr(env, n)) for n, c in _OUTER_PLAN}
    except (msgspec.MsgspecError, ValueError, TypeError, RecursionError) as exc:
        if isinstance(exc, UndecodableState):
            raise
        raise UndecodableState(f"malformed state record: {exc}") from None
    return KeyState(detectors=tuple(detectors), **values)


def _loads_v2(data: bytes | bytearray | memoryview) -> KeyState:
    try:
        env = _ENVELOPE2_DECODER.decode(memoryview(data)[4:])
        if env.layout not in _OUTER_FPS:
            raise UndecodableState("state written with another KeyState layout (by another "
                                   "relayguard version)")
        detectors = []
        seen: set[str] = set()
        for name, layout, raw in env.detectors:
            entry = _DETECTOR_DECODERS_2.get(name)
            if entry is None:
                raise UndecodableState(f"unknown detector state {name[:60]!r}")
            if name in seen:
                raise UndecodableState(f"detector state {name!r} twice")
            seen.add(name)
            if layout not in _DETECTOR_FPS[name][1]:
                _drop_layout(name, layout)
                continue
            convert, decoder, _ = entry
            detectors.append((name, convert(decoder.decode(raw))))
        values = {n: getattr(env, n) if c is None else c(getattr(env, n)) for n, c in _OUTER_PLAN}
    except (msgspec.MsgspecError, ValueError, TypeError, RecursionError) as exc:
        if isinstance(exc, UndecodableState):
            raise
        raise UndecodableState(f"malformed state record: {exc}") from None
    return KeyState(detectors=tuple(detectors), **values)


def _drop_layout(name: str, layout: int) -> None:
    """A detector state written with a layout this code cannot read by position (a field
    removed, renamed, moved or retyped since): that detector starts afresh for this key; the
    engine's own fields, the lock and the other detectors are kept. Logged once per layout."""
    if (name, layout) not in _dropped_layouts:
        _dropped_layouts.add((name, layout))
        log.warning("state of detector %s written with another layout (%08x): it starts "
                    "afresh for every key that has one", name, layout)


# --- the worker's cache ------------------------------------------------------------------

OnUndecodable = Callable[[str, str, UndecodableState], None]


def log_undecodable(kind: str, key: str, exc: UndecodableState) -> None:
    log.error("state of %s %r is unreadable and was dropped (%s); the %s starts afresh",
              kind, key[:200], exc, kind)


class DecodedCache:
    """Recently decoded states, valid only while the table still holds equal bytes (so a
    rebalance or recovery that replaced the value is never missed). Equality, not identity:
    a RocksDB store hands out a new bytes object on every read."""

    def __init__(self, size: int = 8192, on_undecodable: OnUndecodable = log_undecodable
                 ) -> None:
        self.size = size
        self.on_undecodable = on_undecodable
        self._items: dict[tuple[str, str], tuple[bytes, KeyState]] = {}
        self._blobs: dict[tuple[str, str], Blobs] = {}

    def dumps(self, kind: str, key: str, state: KeyState) -> bytes:
        """Like `dumps`, reusing the bytes of detector states unchanged since the last call."""
        stored, blobs = _dumps(state, self._blobs.get((kind, key), {}))
        self._blobs[(kind, key)] = blobs
        return stored

    def load(self, kind: str, key: str, stored: bytes | None) -> KeyState | None:
        """The state for `stored` (None: no state). Bytes that cannot be decoded give an empty
        state, reported once through `on_undecodable` and then remembered as empty."""
        if stored is None:
            return None
        hit = self._items.get((kind, key))
        if hit is not None and (hit[0] is stored or hit[0] == stored):
            return hit[1]
        try:
            return loads(stored)
        except UndecodableState as exc:
            self.on_undecodable(kind, key, exc)
            empty = KeyState()
            self.remember(kind, key, stored, empty)
            return empty

    def peek(self, kind: str, key: str) -> KeyState | None:
        """The state last stored or loaded for the key, without asking the table: only for a
        caller that knows the table has not changed underneath since (see `Pipeline.trust`)."""
        hit = self._items.get((kind, key))
        return None if hit is None else hit[1]

    def clear(self) -> None:
        self._items.clear()
        self._blobs.clear()

    def remember(self, kind: str, key: str, stored: bytes, state: KeyState) -> None:
        items = self._items
        items.pop((kind, key), None)
        if len(items) >= self.size:
            oldest = next(iter(items))  # dicts keep insertion order
            del items[oldest]
            self._blobs.pop(oldest, None)
        items[(kind, key)] = (stored, state)
