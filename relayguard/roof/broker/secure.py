"""The secure local broker's users and files: SCRAM users (created when storage is formatted),
their passwords (one 0600 file each), the throwaway CA, and the client settings per user.

Layout under `<data dir>/secure/`: ca.pem, server-keystore.pem, users.json (name -> password,
0600), <user>.password and <user>.env (the RELAYGUARD_* lines a process of that user exports).
"""

from __future__ import annotations

import json
import os
import re
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from relayguard.foundation.errors import ConfigError, DownstreamError
from relayguard.foundation.kafka_clients import KafkaSecurity
from relayguard.roof.broker.config import SecureListener
from relayguard.roof.broker.tls import TlsFiles, ensure_tls

ADMIN = "admin"
MECHANISM = "SCRAM-SHA-512"
# Default users of `relayguard broker start --secure`: one per role.
DEFAULT_ROLES: dict[str, tuple[str, ...]] = {
    "worker": ("worker",), "operator": ("operator",), "relay": ("relay-1",)}
FORMATTED = "scram-users.json"  # users created at format time or added since
USER_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")  # safe in JAAS and --add-scram


@dataclass
class SecureSetup:
    directory: Path
    roles: dict[str, tuple[str, ...]] = field(default_factory=lambda: dict(DEFAULT_ROLES))
    passwords: dict[str, str] = field(default_factory=dict)
    tls: TlsFiles | None = None

    @classmethod
    def prepare(cls, directory: Path, roles: dict[str, tuple[str, ...]] | None = None,
                hosts: tuple[str, ...] = ("localhost",)) -> SecureSetup:
        """Create (or reuse) the CA, a server certificate for `hosts` (and 127.0.0.1) and the
        user passwords in `directory`."""
        setup = cls(directory, dict(roles or DEFAULT_ROLES))
        for name in setup.users:
            if not USER_NAME.match(name):
                raise ConfigError(f"Kafka user name {name!r} is not allowed",
                                  "use letters, digits, '.', '_' and '-' (at most 64)")
        directory.mkdir(parents=True, exist_ok=True)
        directory.chmod(0o700)
        setup.tls = ensure_tls(directory, hosts)
        store = directory / "users.json"
        known: dict[str, str] = json.loads(store.read_text()) if store.is_file() else {}
        for name in setup.users:
            known.setdefault(name, secrets.token_urlsafe(18))
        _write_private(store, json.dumps(known, indent=1) + "\n")
        setup.passwords = known
        for name in setup.users:
            _write_private(directory / f"{name}.password", known[name] + "\n")
        return setup

    @property
    def users(self) -> list[str]:
        names = [ADMIN] + [u for users in self.roles.values() for u in users]
        return list(dict.fromkeys(names))

    def listener(self) -> SecureListener:
        assert self.tls is not None
        return SecureListener(self.tls.keystore, self.tls.ca, ADMIN, self.passwords[ADMIN],
                              MECHANISM)

    def scram_args(self, known: Sequence[str] | None = None) -> list[str]:
        """`kafka-storage format` arguments that create every user (KIP-900)."""
        args: list[str] = []
        for name in known or self.users:
            args += ["--add-scram", f"{MECHANISM}=[name={name},password={self.passwords[name]}]"]
        return args

    def security(self, user: str) -> KafkaSecurity:
        """Client settings for one of the users (password from its file)."""
        assert self.tls is not None
        return KafkaSecurity(security_protocol="SASL_SSL", sasl_mechanism=MECHANISM,
                             username=user, password_file=self.directory / f"{user}.password",
                             ca_file=self.tls.ca)

    def env_lines(self, user: str, bootstrap: str) -> list[str]:
        sec = self.security(user)
        return [f"RELAYGUARD_BOOTSTRAP_SERVERS={bootstrap}",
                "RELAYGUARD_KAFKA__SECURITY_PROTOCOL=SASL_SSL",
                f"RELAYGUARD_KAFKA__SASL_MECHANISM={MECHANISM}",
                f"RELAYGUARD_KAFKA__USERNAME={user}",
                f"RELAYGUARD_KAFKA__PASSWORD_FILE={sec.password_file}",
                f"RELAYGUARD_KAFKA__CA_FILE={sec.ca_file}"]

    def unformatted_users(self) -> list[str]:
        """Users not created at format time (roles grew since): they need the Admin API."""
        path = self.directory / FORMATTED
        done = set(json.loads(path.read_text())) if path.is_file() else set()
        return [u for u in self.users if u not in done]

    def mark_formatted(self, users: Sequence[str]) -> None:
        path = self.directory / FORMATTED
        done = set(json.loads(path.read_text())) if path.is_file() else set()
        path.write_text(json.dumps(sorted(done | set(users))) + "\n")

    def add_users(self, users: Sequence[str], admin_config: Mapping[str, str],
                  timeout: float = 30.0) -> None:
        """Create SCRAM credentials on a running broker, as the super user."""
        from confluent_kafka.admin import AdminClient
        from confluent_kafka.admin._scram import (
            ScramCredentialInfo,
            ScramMechanism,
            UserScramCredentialAlteration,
            UserScramCredentialUpsertion,
        )

        info = ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, 8192)
        changes: list[UserScramCredentialAlteration] = [
            UserScramCredentialUpsertion(u, info, self.passwords[u].encode()) for u in users]
        admin = AdminClient(dict(admin_config))  # kept alive until the futures are done
        futures = admin.alter_user_scram_credentials(changes, request_timeout=timeout)
        for user, fut in futures.items():
            try:
                fut.result(timeout=timeout + 5)
            except Exception as exc:
                raise DownstreamError(f"could not create Kafka user {user}: {exc}",
                                      "see the broker log") from exc
        self.mark_formatted(users)

    def write_env_files(self, bootstrap: str) -> dict[str, Path]:
        out = {}
        for user in self.users:
            path = self.directory / f"{user}.env"
            _write_private(path, "\n".join(self.env_lines(user, bootstrap)) + "\n")
            out[user] = path
        return out


def _write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    path.chmod(0o600)
