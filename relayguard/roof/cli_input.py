"""Operator input checked before any Kafka I/O: subjects and --since values. Bad input is the
operator's to fix, so it is a ConfigError with one clear line."""

from __future__ import annotations

import ipaddress
import re
import time

from relayguard.foundation.errors import ConfigError
from relayguard.stream.records import SubjectKind
from relayguard.stream.timefmt import parse_rfc3339

MAX_SUBJECT = 320  # the schemas' limit (an e-mail address is at most 320 characters)
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


class BadInput(ConfigError):
    whose = "bad input"


def subject(text: str, is_ip: bool) -> tuple[str, SubjectKind]:
    """(subject, kind) or BadInput: an IP must parse as one (stored in canonical form), a user
    must be 1..320 printable characters without spaces."""
    if is_ip:
        try:
            return str(ipaddress.ip_address(text.strip())), "ip"
        except ValueError:
            raise BadInput(f"--ip given, but {text[:80]!r} is not an IPv4 or IPv6 address",
                           "give an address like 192.0.2.1 or 2001:db8::1") from None
    if not text or not text.strip():
        raise BadInput("the user is empty", "give the SASL user name, e.g. alice@example.com")
    if len(text) > MAX_SUBJECT:
        raise BadInput(f"the user is {len(text)} characters long, at most {MAX_SUBJECT} allowed",
                       "give the SASL user name as the relays log it")
    if any(not ch.isprintable() or ch.isspace() for ch in text):
        raise BadInput(f"the user {text[:80]!r} contains spaces or control characters",
                       "give the SASL user name as the relays log it")
    return text, "user"


def since(text: str | None, now: float | None = None) -> float | None:
    """Epoch seconds from '90s', '30m', '2h', '7d', '1w' (ago) or an RFC 3339 time."""
    if text is None:
        return None
    now = time.time() if now is None else now
    m = _DURATION.match(text)
    if m:
        return now - float(m.group(1)) * _UNITS[m.group(2)]
    try:
        return parse_rfc3339(text.strip())
    except (ValueError, OverflowError, TypeError):
        raise BadInput(f"--since {text[:80]!r} is neither a duration nor an RFC 3339 time",
                       "use e.g. --since 2h, --since 30m or --since 2026-11-29T10:00:00Z"
                       ) from None
