"""Signed records, the pure half: the canonical bytes a signature covers, the verifier interface,
and the range checks every verifier applies. The keys and the crypto live in
`relayguard.foundation.signing`; this module never reads a clock (`now` is passed in).

Wire form: the record's own JSON object plus one field,

    "signature": {"alg": "ed25519", "key_id": "ed25519:<16 hex>", "sig": "<base64url>"}

and the signature covers `canonical(record)`: a fixed domain prefix, then the object without
its `signature` field as orjson with sorted keys (recursively). A verifier re-derives those bytes
from the parsed JSON, which orjson makes exact: strings, 64-bit integers and floats survive a
loads/dumps round trip unchanged.
"""

from __future__ import annotations

from typing import Any, Protocol

import orjson

SIGNATURE_FIELD = "signature"
DOMAIN = b"relayguard-signed-record-v1\n"  # a signature over anything else never verifies here
MAX_VERSION = 2**53 - 1  # versions stay exact in every JSON reader (doubles)
# A lock may last at most this long (10 years): bounds expires_at so no signed record can hold a
# time that later fails to print (year 10000) or outlive every operator.
MAX_TTL_SECONDS = 10 * 366 * 86400.0


class Refused(Exception):
    """A record that is well formed but not to be trusted. `reason` is a metric label."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


class Verifier(Protocol):
    """Checks a signature object over `payload`; raises Refused ('unknown_key', 'bad_signature')."""

    def verify(self, payload: bytes, signature: dict[str, Any]) -> None: ...


class Signer(Protocol):
    def signature(self, payload: bytes) -> dict[str, str]: ...


def canonical(record: dict[str, Any]) -> bytes:
    body = {k: v for k, v in record.items() if k != SIGNATURE_FIELD}
    return DOMAIN + orjson.dumps(body, option=orjson.OPT_SORT_KEYS)


def sign(record: dict[str, Any], signer: Signer) -> dict[str, Any]:
    """`record` with its signature field (a new dict; any old signature replaced)."""
    body = {k: v for k, v in record.items() if k != SIGNATURE_FIELD}
    return {**body, SIGNATURE_FIELD: signer.signature(canonical(body))}


def check_signature(record: dict[str, Any], verifier: Verifier) -> None:
    sig = record.get(SIGNATURE_FIELD)
    if sig is None:
        raise Refused("unsigned", "no signature field")
    if not isinstance(sig, dict):
        raise Refused("bad_signature", "signature is not an object")
    verifier.verify(canonical(record), sig)


def check_version(version: Any, now: float, skew: float) -> None:
    """Versions are issue-time milliseconds (or last+1): an integer, below 2^53, and not ahead of
    the verifier's clock by more than `skew` seconds."""
    if type(version) is not int or not 0 <= version <= MAX_VERSION:
        raise Refused("version_out_of_range", f"version {version!r} is not an integer in "
                      f"[0, 2^53)")
    if version > (now + skew) * 1000:
        raise Refused("version_out_of_range", f"version {version} is more than {skew:g}s "
                      "ahead of this clock")


def check_times(issued_at: float, expires_at: float | None, now: float, skew: float) -> None:
    if not 0 <= issued_at <= now + skew:
        raise Refused("time_out_of_range", f"issued_at {issued_at} is before 1970 or more than "
                      f"{skew:g}s ahead of this clock")
    if expires_at is not None and not 0 <= expires_at <= issued_at + MAX_TTL_SECONDS:
        raise Refused("time_out_of_range", f"expires_at {expires_at} is not within "
                      f"{MAX_TTL_SECONDS / 86400:.0f} days of issued_at")
