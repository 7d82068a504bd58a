"""The one rule that turns a user name as a relay, a log or an operator wrote it into the name
relayguard keys everything by (events, the worker's per-user state, the lock book, lock
commands). Pure: no I/O, no settings; callers pass the mode (RELAYGUARD_USER_NAMES).

Every mode strips surrounding whitespace and NFC-normalises (the same name typed as `é` or as
`e` + combining accent is one name). Then:

- `lower-addresses` (default): lower-case names that look like mail addresses or login names,
  i.e. `local` or `local@domain` made of letters, digits and the characters an address's
  local part may hold unquoted (`.!#$%&'*+/=?^_`{|}~-`), domain labels of letters, digits and
  `-` (or an address literal `[...]`). Most SASL backends accept any case for these, so a lock on
  `alice` must also hold `ALICE` and `Alice@Example.COM`. Anything else (a space, a quote, a
  backslash as in `EXAMPLE\\alice`, a comma as in an LDAP DN) is kept as written.
- `lower`: lower-case every name.
- `exact`: keep case: for backends where `alice` and `Alice` are two accounts.

Lower-casing is `str.lower()` (then NFC again), the same on every host. The mode must be the same
on every relay, worker and operator host: a lock is looked up under the canonical name.
"""

from __future__ import annotations

import ipaddress
import re
import unicodedata
from dataclasses import replace
from typing import Literal, get_args

from relayguard.stream.records import Event, LoginEvent

UserNameMode = Literal["exact", "lower-addresses", "lower"]
USER_NAME_MODES: tuple[str, ...] = get_args(UserNameMode)
DEFAULT_USER_NAMES: UserNameMode = "lower-addresses"

# \w is Unicode letters, digits and `_`; the rest is RFC 5322 atext besides them.
_LOCAL = r"[\w.!#$%&'*+/=?^`{|}~-]+"
_DOMAIN = r"(?:[^\W_](?:[\w-]*[^\W_])?(?:\.[^\W_](?:[\w-]*[^\W_])?)*\.?|\[[0-9A-Za-z.:-]+\])"
_ADDRESS_LIKE = re.compile(rf"{_LOCAL}(?:@{_DOMAIN})?")


def looks_like_address(name: str) -> bool:
    """True for `alice`, `alice.smith+tag`, `Alice@Example.COM`, `bob@[192.0.2.1]`."""
    return _ADDRESS_LIKE.fullmatch(name) is not None


def canonical_user(name: str, mode: UserNameMode = DEFAULT_USER_NAMES) -> str:
    """The canonical form of one user name (may be "" if it was only whitespace)."""
    name = unicodedata.normalize("NFC", name.strip())
    if mode == "exact" or not name:
        return name
    if mode == "lower" or (mode == "lower-addresses" and looks_like_address(name)):
        lowered = name.lower()
        return lowered if lowered.isascii() else unicodedata.normalize("NFC", lowered)
    if mode != "lower-addresses":
        raise ValueError(f"user name mode {mode!r} is not one of {', '.join(USER_NAME_MODES)}")
    return name


def canonical_user_or_none(name: str | None, mode: UserNameMode = DEFAULT_USER_NAMES
                           ) -> str | None:
    """As `canonical_user`, with None for a missing or blank name."""
    if name is None:
        return None
    return canonical_user(name, mode) or None


def canonical_subject(kind: str, subject: str, mode: UserNameMode = DEFAULT_USER_NAMES) -> str:
    """A lock subject in canonical form: users by `canonical_user`, IPs compressed (so
    `2001:DB8::1` and `2001:db8:0::1` match); a subject that is not an IP stays as written."""
    if kind == "user":
        return canonical_user(subject, mode)
    if kind == "ip":
        try:
            return ipaddress.ip_address(subject.strip().strip("[]")).compressed
        except ValueError:
            return subject
    return subject


def canonical_event(event: Event, mode: UserNameMode = DEFAULT_USER_NAMES) -> Event:
    """The event with its user name in canonical form (the same object if it already was).
    A login whose name is blank becomes user=None; a send event keeps a blank name as sent."""
    user = event.user
    if user is None:
        return event
    canon = canonical_user(user, mode)
    if canon == user:
        return event
    if not canon:
        return replace(event, user=None) if isinstance(event, LoginEvent) else event
    return replace(event, user=canon)


def check_mode(mode: str) -> UserNameMode:
    """`mode` as a UserNameMode, or ValueError naming the choices."""
    if mode not in USER_NAME_MODES:
        raise ValueError(f"user name mode {mode!r} is not one of {', '.join(USER_NAME_MODES)}")
    return mode  # type: ignore[return-value]
