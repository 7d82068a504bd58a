"""`evolve(state, field=value)`: `dataclasses.replace` for the core's frozen state classes, at
about a third of its cost.

`replace` looks up the class's fields, builds a keyword dict and runs `__init__` on every call;
the detectors call it several times per event, which made it a tenth of the core's time
(py-spy on bench/core_bench.py). The function generated here per class copies each slot
directly. It is only for plain frozen dataclasses whose every field is an init field and which
have no `__post_init__` (checked when the function is generated): then the result is exactly what
`replace` returns.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")

_UNSET = object()
_EVOLVERS: dict[type, Callable[..., Any]] = {}


def evolve(obj: T, **changes: Any) -> T:
    """A copy of `obj` with `changes`; unknown field names raise TypeError, as `replace` does."""
    cls = type(obj)
    fn = _EVOLVERS.get(cls)
    if fn is None:
        fn = _EVOLVERS[cls] = _make(cls)
    result: T = fn(obj, **changes)
    return result


def _make(cls: type) -> Callable[..., Any]:
    if not dataclasses.is_dataclass(cls) or hasattr(cls, "__post_init__"):
        raise TypeError(f"evolve: {cls.__name__} is not a plain dataclass")
    fields = dataclasses.fields(cls)
    if any(not f.init for f in fields):
        raise TypeError(f"evolve: {cls.__name__} has non-init fields")
    names = [f.name for f in fields]
    params = ", ".join(f"{n}=_UNSET" for n in names)
    body = "".join(f"    _set(new, {n!r}, obj.{n} if {n} is _UNSET else {n})\n" for n in names)
    src = f"def evolve(obj, *, {params}):\n    new = _new(cls)\n{body}    return new\n"
    scope: dict[str, Any] = {"_UNSET": _UNSET, "_new": object.__new__,
                             "_set": object.__setattr__, "cls": cls}
    exec(src, scope)
    fn: Callable[..., Any] = scope["evolve"]
    return fn
