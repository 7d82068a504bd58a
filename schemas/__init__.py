"""The JSON Schemas (2020-12) of every record that crosses a process boundary.

Files sit next to this module so they ship with the package; `load(name)` reads one.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

HERE = Path(__file__).parent
NAMES = ("login-event", "send-event", "delivery-event", "event-batch", "lock-command", "lock-ack",
         "alert", "dead-letter", "control-record", "audit-record")


@cache
def load(name: str) -> dict[str, Any]:
    """The schema called `name` (e.g. "send-event") as a dict."""
    if name not in NAMES:
        raise KeyError(f"no schema {name!r}; known: {', '.join(NAMES)}")
    data: dict[str, Any] = json.loads((HERE / f"{name}.schema.json").read_text())
    return data
