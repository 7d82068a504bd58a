"""Dead-letter records: the reason, a readable detail and the original bytes, untouched."""

from __future__ import annotations

import base64
from typing import Any

from relayguard.stream.timefmt import to_rfc3339


def dead_letter_record(
    raw: bytes, reason: str, detail: str, topic: str, partition: int, offset: int, now: float
) -> dict[str, Any]:
    return {
        "type": "dead_letter",
        "reason": reason,
        "error": detail[:2000],
        "payload_b64": base64.b64encode(raw).decode("ascii"),
        "payload_size": len(raw),
        "source_topic": topic,
        "source_partition": partition,
        "source_offset": offset,
        "rejected_at": to_rfc3339(now),
    }
