"""A key pair made for one benchmark run: the worker signs lock commands and trusts only it."""

from __future__ import annotations

from relayguard.foundation import signing


def worker_key_env() -> dict[str, str]:
    """RELAYGUARD_SIGNING_KEY / RELAYGUARD_VERIFY_KEYS for a worker's environment."""
    key = signing.generate()
    return {"RELAYGUARD_SIGNING_KEY": signing.private_text(key),
            "RELAYGUARD_VERIFY_KEYS": signing.public_text(key.public_key())}
