"""Keys that sign and verify lock commands and control records (Ed25519).

Signers (the worker, operators' `relayguard lock/unlock` and the HTTP API) hold a private key;
verifiers (every relay, the worker, `relayguard locks`) hold only public keys, so a relay that is
broken into cannot sign anything. Key ids are derived from the public key ('ed25519:' + 16 hex
digits of its SHA-256), so they can never disagree with the key they name.

Key text: a PEM file (PKCS#8 private key, SubjectPublicKeyInfo public key), as
`relayguard keys generate` writes, or the raw 32 bytes in base64 (handy in environment
variables). The private key is held as a secret and never logged or printed by repr().
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from relayguard.foundation.errors import ConfigError
from relayguard.foundation.settings import Settings
from relayguard.stream.signed import Refused

log = logging.getLogger(__name__)
ALG = "ed25519"
MAKE_KEYS = ("make a key pair with `relayguard keys generate --out DIR`, then give signers "
             "RELAYGUARD_SIGNING_KEY_FILE=DIR/NAME.key and every verifier (relays, workers, "
             "operators) RELAYGUARD_VERIFY_KEYS_DIR=DIR holding NAME.pub (see README, "
             "'Signed commands')")


def key_id(public: Ed25519PublicKey) -> str:
    return f"{ALG}:{hashlib.sha256(_raw_public(public)).hexdigest()[:16]}"


class Signer:
    """Signs canonical record bytes (see relayguard.stream.signed)."""

    def __init__(self, private: Ed25519PrivateKey) -> None:
        self._private = private
        self.public = private.public_key()
        self.key_id = key_id(self.public)

    def signature(self, payload: bytes) -> dict[str, str]:
        sig = base64.urlsafe_b64encode(self._private.sign(payload)).rstrip(b"=").decode()
        return {"alg": ALG, "key_id": self.key_id, "sig": sig}

    def __repr__(self) -> str:  # never the key itself
        return f"Signer({self.key_id})"


class Keyring:
    """Verify keys by key id: during a rotation it holds the old and the new public key.

    With a `loader` (a RELAYGUARD_VERIFY_KEYS_DIR), the ring re-reads it every `refresh_seconds`
    and at once (at most every 5 s) when a record names a key id it does not know, so adding
    or retiring a key file takes effect without a restart."""

    FORCED_RELOAD_GAP = 5.0  # an attacker's stream of unknown key ids costs one dir read per 5 s

    def __init__(self, keys: list[Ed25519PublicKey] | None = None, *,
                 loader: Callable[[], list[Ed25519PublicKey]] | None = None,
                 refresh_seconds: float = 30.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.keys: dict[str, Ed25519PublicKey] = {}
        self._fixed = list(keys or [])
        self._loader, self._refresh, self._clock = loader, refresh_seconds, clock
        self._loaded_at = clock()
        for k in self._fixed + (loader() if loader else []):
            self.add(k)

    def add(self, public: Ed25519PublicKey) -> str:
        kid = key_id(public)
        self.keys[kid] = public
        return kid

    def _maybe_reload(self, unknown: bool) -> None:
        if self._loader is None:
            return
        age = self._clock() - self._loaded_at
        if age < self._refresh and not (unknown and age >= self.FORCED_RELOAD_GAP):
            return
        self._loaded_at = self._clock()
        try:
            loaded = self._loader()
        except Exception as exc:  # a half-copied file must not stop verification
            log.warning("verify keys not reloaded (%s); keeping %s", exc, self)
            return
        before = set(self.keys)
        self.keys = {}
        for k in self._fixed + loaded:
            self.add(k)
        if set(self.keys) != before:
            log.warning("verify keys reloaded: now %s (added %s, retired %s)", self,
                        sorted(set(self.keys) - before) or "none",
                        sorted(before - set(self.keys)) or "none")

    def verify(self, payload: bytes, signature: dict[str, Any]) -> None:
        kid = signature.get("key_id")
        self._maybe_reload(unknown=not isinstance(kid, str) or kid not in self.keys)
        public = self.keys.get(kid) if isinstance(kid, str) else None
        if public is None:
            raise Refused("unknown_key", f"key id {str(kid)[:40]!r} is not in this keyring "
                          f"({', '.join(sorted(self.keys)) or 'empty'})")
        if signature.get("alg") != ALG:
            raise Refused("bad_signature", f"alg {str(signature.get('alg'))[:20]!r}, want {ALG}")
        sig = signature.get("sig")
        try:
            raw = base64.urlsafe_b64decode(sig + "=" * (-len(sig) % 4)) \
                if isinstance(sig, str) else b""
            public.verify(raw, payload)
        except (InvalidSignature, binascii.Error, ValueError):
            raise Refused("bad_signature", f"signature does not verify with {kid}") from None

    def __len__(self) -> int:
        return len(self.keys)

    def __repr__(self) -> str:
        return f"Keyring({', '.join(sorted(self.keys))})"


# ---- key text and files ------------------------------------------------------------------------


def generate() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


def private_text(private: Ed25519PrivateKey) -> str:
    """Base64 of the raw 32-byte private key: one line, for RELAYGUARD_SIGNING_KEY."""
    raw = private.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
                                serialization.NoEncryption())
    return base64.b64encode(raw).decode()


def public_text(public: Ed25519PublicKey) -> str:
    """Base64 of the raw 32-byte public key: one line, for RELAYGUARD_VERIFY_KEYS."""
    return base64.b64encode(_raw_public(public)).decode()


def load_private(text: str, where: str) -> Ed25519PrivateKey:
    try:
        if text.lstrip().startswith("-----BEGIN"):
            key = serialization.load_pem_private_key(text.encode(), password=None)
        else:
            key = Ed25519PrivateKey.from_private_bytes(_b64_32(text))
    except (ValueError, TypeError, binascii.Error):
        raise ConfigError(f"{where}: not an Ed25519 private key (PEM, or base64 of 32 bytes)",
                          MAKE_KEYS) from None
    if not isinstance(key, Ed25519PrivateKey):
        raise ConfigError(f"{where}: a {type(key).__name__}, not an Ed25519 key", MAKE_KEYS)
    return key


def load_public(text: str, where: str) -> Ed25519PublicKey:
    try:
        if text.lstrip().startswith("-----BEGIN"):
            key = serialization.load_pem_public_key(text.encode())
        else:
            key = Ed25519PublicKey.from_public_bytes(_b64_32(text))
    except (ValueError, TypeError, binascii.Error):
        raise ConfigError(f"{where}: not an Ed25519 public key (PEM, or base64 of 32 bytes)",
                          MAKE_KEYS) from None
    if not isinstance(key, Ed25519PublicKey):
        raise ConfigError(f"{where}: a {type(key).__name__}, not an Ed25519 key", MAKE_KEYS)
    return key


def write_key_pair(directory: Path, name: str) -> tuple[Path, Path, str]:
    """DIR/NAME.key (PEM, mode 0600) and DIR/NAME.pub; returns both paths and the key id.
    Refuses to overwrite, so a rotation never destroys the key still in use."""
    directory.mkdir(parents=True, exist_ok=True)
    key_path, pub_path = directory / f"{name}.key", directory / f"{name}.pub"
    for path in (key_path, pub_path):
        if path.exists():
            raise ConfigError(f"{path} exists", "pick another --name (keys are never replaced)")
    private = generate()
    pem = private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(pem)
    pub_path.write_bytes(private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    return key_path, pub_path, key_id(private.public_key())


# ---- from settings -----------------------------------------------------------------------------


def signer_from_settings(settings: Settings) -> Signer:
    """The configured signing key, or a ConfigError that says how to make one."""
    given = settings.signing_key.get_secret_value().strip() if settings.signing_key else ""
    path = settings.signing_key_file
    if given and path:
        raise ConfigError("both RELAYGUARD_SIGNING_KEY and RELAYGUARD_SIGNING_KEY_FILE are set",
                          "set one of them")
    if path:
        try:
            given = path.read_text()
        except OSError as exc:
            raise ConfigError(f"RELAYGUARD_SIGNING_KEY_FILE={path}: {exc.strerror}",
                              MAKE_KEYS) from None
        return Signer(load_private(given, f"RELAYGUARD_SIGNING_KEY_FILE={path}"))
    if given:
        return Signer(load_private(given, "RELAYGUARD_SIGNING_KEY"))
    raise ConfigError("no signing key: lock commands and control records must be signed, and "
                      "neither RELAYGUARD_SIGNING_KEY nor RELAYGUARD_SIGNING_KEY_FILE is set",
                      MAKE_KEYS)


def optional_signer(settings: Settings) -> Signer | None:
    has_key = bool(settings.signing_key and settings.signing_key.get_secret_value().strip())
    return signer_from_settings(settings) if has_key or settings.signing_key_file else None


def keyring_from_settings(settings: Settings) -> Keyring:
    """Every configured verify key, plus the public half of our own signing key if we have one
    (a worker must read its own control records). Empty is a ConfigError: a verifier without
    keys could only refuse everything, and must not silently do so."""
    fixed = [load_public(entry, f"RELAYGUARD_VERIFY_KEYS entry {i + 1}") for i, entry
             in enumerate(e for e in settings.verify_keys.split(",") if e.strip())]
    own = optional_signer(settings)
    if own is not None:
        fixed.append(own.public)
    folder = settings.verify_keys_dir
    if folder is not None and not folder.is_dir():
        raise ConfigError(f"RELAYGUARD_VERIFY_KEYS_DIR={folder} is not a directory", MAKE_KEYS)
    ring = Keyring(fixed, loader=(lambda: read_key_dir(folder)) if folder is not None else None)
    if not ring:
        raise ConfigError("no verify keys: lock commands are only obeyed when signed by a known "
                          "key, and neither RELAYGUARD_VERIFY_KEYS nor RELAYGUARD_VERIFY_KEYS_DIR "
                          "names one", MAKE_KEYS)
    return ring


def read_key_dir(folder: Path) -> list[Ed25519PublicKey]:
    return [load_public(p.read_text(), str(p)) for p in sorted(folder.glob("*.pub"))]


def _raw_public(public: Ed25519PublicKey) -> bytes:
    return public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def _b64_32(text: str) -> bytes:
    raw = base64.b64decode(text.strip(), validate=True)
    if len(raw) != 32:
        raise ValueError(f"{len(raw)} bytes, want 32")
    return raw
