"""Compact sets of "things this user has used" for learned profiles: 2-byte hashes in a bytes
value, least recently used first, at most `cap` of them.

Why hashes and not the names: 256 recipient domains cost 512 bytes instead of ~5 KB, and state
size is what a worker pays per user (issue 12). The price is a false "known" for a never-seen
thing with probability size / 65,536 (0.4% for a full set of 256): a detector counting new
domains undercounts by that much, it never invents one.
"""

from __future__ import annotations

import hashlib
from functools import lru_cache

WIDTH = 2


@lru_cache(maxsize=65536)
def digest(thing: str) -> bytes:
    return hashlib.blake2b(thing.encode("utf-8", "surrogatepass"), digest_size=WIDTH).digest()


def find(hashes: bytes, h: bytes) -> int:
    """The offset of `h` in `hashes` (aligned to WIDTH), -1 if absent."""
    at = hashes.find(h)
    while at != -1 and at % WIDTH:  # a match straddling two entries is not one
        at = hashes.find(h, at + 1)
    return at


def contains(hashes: bytes, thing: str) -> bool:
    return find(hashes, digest(thing)) != -1


def touch(hashes: bytes, thing: str, cap: int) -> bytes:
    """`hashes` with `thing` as the most recently used entry; the oldest go beyond `cap`."""
    h = digest(thing)
    return touch_found(hashes, h, find(hashes, h), cap)


def touch_found(hashes: bytes, h: bytes, at: int, cap: int) -> bytes:
    """`touch` for a digest `h` already looked up: `at` is `find(hashes, h)`."""
    if at != -1:
        if at == len(hashes) - WIDTH:
            return hashes
        hashes = hashes[:at] + hashes[at + WIDTH:]
    hashes += h
    return hashes[-cap * WIDTH:] if cap > 0 else b""


def size(hashes: bytes) -> int:
    return len(hashes) // WIDTH
