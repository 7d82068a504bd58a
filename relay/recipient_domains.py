"""Distinct recipient domains of the message in progress on one policy connection. Pure, sans I/O.

Postfix asks the policy service at every RCPT TO (attribute `recipient`) and at END-OF-MESSAGE,
all with the same `instance` for one message, over one connection (an smtpd process handles one
session at a time). The send event then carries `recipient_domains` (the first 32 distinct
lowercase domains, first seen first) and `recipient_domain_count` (how many distinct domains).

Attribute values are hostile, so memory is bounded whatever arrives: one message is tracked per
connection (a new `instance` forgets the old one, END-OF-MESSAGE forgets it too), at most
MAX_LISTED_DOMAINS names are kept, and distinct domains beyond them are counted as 64-bit string
hashes in a set of at most `max_counted` entries (Postfix's smtpd_recipient_limit, 1,000 by
default, bounds a real message's recipients anyway). Python's str hash is keyed per process
(SipHash), so a sender cannot make domains collide on purpose; a chance collision undercounts by
one in about 2^64.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from dataclasses import dataclass

MAX_LISTED_DOMAINS = 32  # the send event schema's maxItems
MAX_DOMAIN_CHARS = 253
DEFAULT_MAX_COUNTED = 1000  # Postfix's default smtpd_recipient_limit
MAX_COUNTED = 100_000  # the schema's maximum for recipient_domain_count
DOMAIN_CACHE_ENTRIES = 4096
# no whitespace, controls or address punctuation: what is left may be a domain name, an
# internationalised one, or an address literal like [192.0.2.1] / [IPv6:2001:db8::1]
_DOMAIN = re.compile(r'[^\s\x00-\x1f\x7f@<>"\\,;()]{1,253}')
# bytes one tracker holds at most: the listed names (4 bytes a character in the worst case,
# plus the str object) and the counted hashes (int object plus set slots at the worst fill)
TRACKER_BYTES_BOUND_PER_COUNTED = 32 + 48
TRACKER_BYTES_BOUND_FIXED = MAX_LISTED_DOMAINS * (MAX_DOMAIN_CHARS * 4 + 80) + 1024


@dataclass(frozen=True, slots=True)
class RecipientDomains:
    """The summary one send event carries."""

    names: tuple[str, ...]  # at most MAX_LISTED_DOMAINS, first seen first
    count: int  # distinct domains, >= len(names), at most the tracker's max_counted


def tracker_bytes_bound(max_counted: int = DEFAULT_MAX_COUNTED) -> int:
    return TRACKER_BYTES_BOUND_FIXED + max_counted * TRACKER_BYTES_BOUND_PER_COUNTED


def recipient_domain(recipient: str) -> str | None:
    """`Bob@Example.COM.` -> `example.com`; None for no domain or one that cannot be a domain."""
    at = recipient.rfind("@")
    if at < 0:
        return None
    domain = recipient[at + 1:]
    if len(domain) > MAX_DOMAIN_CHARS + 1:  # too long even without a root dot
        return None
    return _domain(domain)


@functools.lru_cache(maxsize=DOMAIN_CACHE_ENTRIES)
def _domain(domain: str) -> str | None:
    """The checks and folding of `recipient_domain`, once per spelling: the same few domains
    recur in every message (at most DOMAIN_CACHE_ENTRIES of at most 254 characters cached)."""
    if domain.endswith("."):
        domain = domain[:-1]  # the root label: example.com. is example.com
    if not _DOMAIN.fullmatch(domain):
        return None
    domain = domain.lower()
    if not domain.isascii():
        domain = unicodedata.normalize("NFC", domain)
        if len(domain) > MAX_DOMAIN_CHARS:  # lower() can lengthen some letters
            return None
    return domain


class RecipientTracker:
    """Feed it every accepted RCPT request's `instance` and `recipient`; take the summary at
    END-OF-MESSAGE."""

    __slots__ = ("_seen", "instance", "max_counted", "names")

    def __init__(self, max_counted: int = DEFAULT_MAX_COUNTED) -> None:
        if not 1 <= max_counted <= MAX_COUNTED:
            raise ValueError(f"max_counted must be 1..{MAX_COUNTED}, not {max_counted}")
        self.max_counted = max_counted
        self.instance: str | None = None
        self.names: list[str] = []
        self._seen: set[int] = set()

    def rcpt(self, instance: str | None, recipient: str | None) -> None:
        """One recipient Postfix asked about (and we did not refuse) in message `instance`."""
        if not instance:
            return  # no instance (Postfix before 2.1): nothing ties it to END-OF-MESSAGE
        if instance != self.instance:
            self.forget()
            self.instance = instance
        if not recipient:
            return
        domain = recipient_domain(recipient)
        if domain is None:
            return
        h = hash(domain)
        seen = self._seen
        if h in seen or len(seen) >= self.max_counted:
            return
        seen.add(h)
        if len(self.names) < MAX_LISTED_DOMAINS:
            self.names.append(domain)

    def finish(self, instance: str | None) -> RecipientDomains | None:
        """The summary of message `instance` (None if no RCPT of it was seen here), forgotten."""
        if not instance or instance != self.instance:
            if self.instance is not None and instance:
                self.forget()  # another message ended: ours will not come back
            return None
        summary = RecipientDomains(tuple(self.names), len(self._seen))
        self.forget()
        return summary

    def forget(self) -> None:
        self.instance = None
        if self.names:
            self.names = []
        if self._seen:
            self._seen = set()  # a fresh set: clear() would keep a big table allocated
