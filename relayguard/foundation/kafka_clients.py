"""How relayguard talks to a secured Kafka: the `[kafka]` settings and the one place that turns
them into client options, for aiokafka (relays, CLI, topic admin), Faust (the worker) and
librdkafka (the ACL tool).

    RELAYGUARD_KAFKA__SECURITY_PROTOCOL=SASL_SSL    PLAINTEXT (default) | SSL | SASL_SSL
    RELAYGUARD_KAFKA__SASL_MECHANISM=SCRAM-SHA-512  SCRAM-SHA-512 (default), SCRAM-SHA-256, PLAIN
    RELAYGUARD_KAFKA__USERNAME=relay-mx1
    RELAYGUARD_KAFKA__PASSWORD=...  or  RELAYGUARD_KAFKA__PASSWORD_FILE=/run/secrets/kafka
    RELAYGUARD_KAFKA__CA_FILE=/etc/relayguard/kafka-ca.pem   (default: the system trust store)
    RELAYGUARD_KAFKA__CERT_FILE / __KEY_FILE                 (optional client certificate, mTLS)
    RELAYGUARD_KAFKA__CHECK_HOSTNAME=true

The combination is checked when a client is built (`check`), not when settings load: the error
names the variable to fix, and never echoes the password (pydantic's own messages would).
SASL over plaintext is not offered on purpose: PLAIN would send the password in clear.
Nothing here imports aiokafka or Faust at module level, so settings stay cheap to load and the
relay side never pulls Faust in.
"""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

from relayguard.foundation.errors import ConfigError

if TYPE_CHECKING:
    from faust.types.auth import CredentialsT

SecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_SSL"]
SaslMechanism = Literal["SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN"]
ENV = "RELAYGUARD_KAFKA__"


class KafkaSecurity(BaseModel):
    """The `[kafka]` section: how every Kafka client of this process authenticates."""

    model_config = ConfigDict(extra="forbid")

    security_protocol: SecurityProtocol = Field(
        "PLAINTEXT", description="PLAINTEXT (default, no security), SSL, or SASL_SSL")
    sasl_mechanism: SaslMechanism = Field(
        "SCRAM-SHA-512", description="with SASL_SSL: SCRAM-SHA-512, SCRAM-SHA-256 or PLAIN")
    username: str | None = Field(None, description="SASL user (the Kafka principal User:NAME)")
    password: SecretStr | None = Field(None, description="SASL password")
    password_file: Path | None = Field(
        None, description="file holding the SASL password (one line); instead of password")
    ca_file: Path | None = Field(
        None, description="PEM CA bundle that signed the brokers' certificates "
        "(default: the system trust store)")
    cert_file: Path | None = Field(None, description="PEM client certificate (mutual TLS)")
    key_file: Path | None = Field(None, description="PEM private key of cert_file")
    check_hostname: bool = Field(
        True, description="verify that the broker certificate names the bootstrap host")

    @field_validator("security_protocol", "sasl_mechanism", mode="before")
    @classmethod
    def _upper(cls, value: object) -> object:
        return value.strip().upper() if isinstance(value, str) else value

    @property
    def uses_tls(self) -> bool:
        return self.security_protocol in ("SSL", "SASL_SSL")

    @property
    def uses_sasl(self) -> bool:
        return self.security_protocol == "SASL_SSL"


def check(sec: KafkaSecurity) -> None:
    """Refuse combinations that would fail later at the broker or silently send in clear."""
    proto = f"{ENV}SECURITY_PROTOCOL={sec.security_protocol}"
    if sec.uses_sasl:
        if not sec.username:
            raise ConfigError(f"{ENV}USERNAME is required with {proto}",
                              "set the SASL user this process authenticates as")
        if sec.password is None and sec.password_file is None:
            raise ConfigError(f"{ENV}PASSWORD or {ENV}PASSWORD_FILE is required with {proto}",
                              "set one of them (a file keeps the password out of the environment)")
    else:
        stray = [n for n in ("username", "password", "password_file")
                 if getattr(sec, n) is not None]
        if stray:
            raise ConfigError(
                f"{', '.join(ENV + n.upper() for n in stray)} set but {proto}: the credentials "
                "would not be used", f"set {ENV}SECURITY_PROTOCOL=SASL_SSL, or unset them")
    if sec.password is not None and sec.password_file is not None:
        raise ConfigError(f"both {ENV}PASSWORD and {ENV}PASSWORD_FILE are set",
                          "keep one of them")
    if not sec.uses_tls:
        stray = [n for n in ("ca_file", "cert_file", "key_file") if getattr(sec, n) is not None]
        if stray:
            raise ConfigError(
                f"{', '.join(ENV + n.upper() for n in stray)} set but {proto}: the connection "
                "would not use TLS", f"set {ENV}SECURITY_PROTOCOL to SSL or SASL_SSL, or unset "
                "them")
    if (sec.cert_file is None) != (sec.key_file is None):
        raise ConfigError(f"{ENV}CERT_FILE and {ENV}KEY_FILE go together; only one is set",
                          "set both (client certificate and its key) or neither")
    for name in ("password_file", "ca_file", "cert_file", "key_file"):
        path = getattr(sec, name)
        if path is not None and not Path(path).is_file():
            raise ConfigError(f"{ENV}{name.upper()}={path}: no such file",
                              "fix the path (it is read by this process, at start)")


def read_password(sec: KafkaSecurity) -> str | None:
    """The SASL password, from the setting or the first line of the password file."""
    if sec.password is not None:
        return sec.password.get_secret_value()
    if sec.password_file is None:
        return None
    try:
        text = Path(sec.password_file).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{ENV}PASSWORD_FILE={sec.password_file}: cannot read it ({exc})",
                          "check the path and that this user may read it") from None
    password = text.splitlines()[0] if text.strip() else ""
    if not password:
        raise ConfigError(f"{ENV}PASSWORD_FILE={sec.password_file} is empty",
                          "write the password on its first line")
    return password


def ssl_context(sec: KafkaSecurity) -> ssl.SSLContext | None:
    """A client TLS context (verifying the broker) or None for PLAINTEXT."""
    check(sec)
    if not sec.uses_tls:
        return None
    try:
        ctx = ssl.create_default_context(
            ssl.Purpose.SERVER_AUTH, cafile=str(sec.ca_file) if sec.ca_file else None)
    except (ssl.SSLError, OSError) as exc:
        raise ConfigError(f"{ENV}CA_FILE={sec.ca_file}: not a usable PEM CA bundle ({exc})",
                          "point it at the PEM certificate of the CA that signed the "
                          "brokers") from None
    ctx.check_hostname = sec.check_hostname  # the certificate itself is always verified
    if sec.cert_file is not None and sec.key_file is not None:
        try:
            ctx.load_cert_chain(str(sec.cert_file), str(sec.key_file))
        except (ssl.SSLError, OSError) as exc:
            raise ConfigError(f"{ENV}CERT_FILE/{ENV}KEY_FILE: cannot load the client "
                              f"certificate ({exc})", "check that the key matches the "
                              "certificate and is not encrypted") from None
    return ctx


def aiokafka_options(sec: KafkaSecurity) -> dict[str, Any]:
    """Keyword arguments for every AIOKafkaProducer/Consumer/AdminClient; {} for PLAINTEXT, so
    an unsecured setup builds exactly the clients it did before."""
    ctx = ssl_context(sec)
    if ctx is None:
        return {}
    options: dict[str, Any] = {"security_protocol": sec.security_protocol, "ssl_context": ctx}
    if sec.uses_sasl:
        options.update(sasl_mechanism=sec.sasl_mechanism, sasl_plain_username=sec.username,
                       sasl_plain_password=read_password(sec))
    return options


def faust_credentials(sec: KafkaSecurity) -> CredentialsT | None:
    """`broker_credentials` for faust.App: SASL (with an ssl_context, which makes Faust use
    SASL_SSL) or SSL; None for PLAINTEXT."""
    ctx = ssl_context(sec)
    if ctx is None:
        return None
    import faust  # lazily: the relay side and the CLI never need Faust

    if sec.uses_sasl:
        return faust.SASLCredentials(username=sec.username, password=read_password(sec),
                                     ssl_context=ctx, mechanism=sec.sasl_mechanism)
    return faust.SSLCredentials(ctx)


def librdkafka_config(sec: KafkaSecurity, bootstrap: str) -> dict[str, str]:
    """The same settings for confluent-kafka (librdkafka), used by `relayguard broker acls`."""
    check(sec)
    conf = {"bootstrap.servers": bootstrap,
            "security.protocol": sec.security_protocol.lower()}
    if sec.uses_tls:
        if sec.ca_file:
            conf["ssl.ca.location"] = str(sec.ca_file)
        conf["ssl.endpoint.identification.algorithm"] = "https" if sec.check_hostname else "none"
        if sec.cert_file and sec.key_file:
            conf["ssl.certificate.location"] = str(sec.cert_file)
            conf["ssl.key.location"] = str(sec.key_file)
    if sec.uses_sasl:
        conf.update({"sasl.mechanism": sec.sasl_mechanism, "sasl.username": sec.username or "",
                     "sasl.password": read_password(sec) or ""})
    return conf


def describe(sec: KafkaSecurity) -> str:
    """One line for logs, without the password."""
    if not sec.uses_tls:
        return "PLAINTEXT (no TLS, no authentication)"
    who = f" as {sec.username} ({sec.sasl_mechanism})" if sec.uses_sasl else ""
    ca = sec.ca_file or "system trust store"
    return f"{sec.security_protocol}{who}, CA {ca}"
