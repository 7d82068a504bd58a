"""Kafka security settings -> client options: checks name the variable, never the password."""

from __future__ import annotations

import ssl
from pathlib import Path

import faust
import pytest

from relayguard.foundation.errors import ConfigError
from relayguard.foundation.kafka_clients import (
    KafkaSecurity,
    aiokafka_options,
    describe,
    faust_credentials,
    librdkafka_config,
    read_password,
)
from relayguard.foundation.settings import load_settings
from relayguard.roof.broker.tls import ensure_tls

SECRET = "s3cr3t-Pa55"


@pytest.fixture(scope="module")
def ca_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return ensure_tls(tmp_path_factory.mktemp("tls")).ca


def sasl(ca: object = None, **extra: object) -> KafkaSecurity:
    fields: dict[str, object] = {"security_protocol": "SASL_SSL", "username": "relay-mx1",
                                 "password": SECRET, "ca_file": ca}
    return KafkaSecurity.model_validate({**fields, **extra})


def test_plaintext_default_builds_the_clients_it_always_did() -> None:
    sec = KafkaSecurity()
    assert aiokafka_options(sec) == {}
    assert faust_credentials(sec) is None
    assert librdkafka_config(sec, "b:9092") == {"bootstrap.servers": "b:9092",
                                                "security.protocol": "plaintext"}


def test_sasl_ssl_options_for_aiokafka(ca_file: Path) -> None:
    opts = aiokafka_options(sasl(ca_file))
    ctx = opts.pop("ssl_context")
    assert opts == {"security_protocol": "SASL_SSL", "sasl_mechanism": "SCRAM-SHA-512",
                    "sasl_plain_username": "relay-mx1", "sasl_plain_password": SECRET}
    assert isinstance(ctx, ssl.SSLContext)
    assert ctx.verify_mode == ssl.CERT_REQUIRED and ctx.check_hostname
    assert any("relayguard local Kafka CA" in str(c["subject"]) for c in ctx.get_ca_certs())


def test_hostname_check_can_be_turned_off_but_not_verification(ca_file: Path) -> None:
    ctx = aiokafka_options(sasl(ca_file, check_hostname=False))["ssl_context"]
    assert not ctx.check_hostname and ctx.verify_mode == ssl.CERT_REQUIRED


def test_faust_credentials_switch_faust_to_sasl_ssl(ca_file: Path) -> None:
    creds = faust_credentials(sasl(ca_file, sasl_mechanism="SCRAM-SHA-256"))
    assert isinstance(creds, faust.SASLCredentials)
    assert creds.protocol.value == "SASL_SSL" and creds.mechanism.value == "SCRAM-SHA-256"
    assert creds.username == "relay-mx1" and creds.password == SECRET
    tls_only = faust_credentials(KafkaSecurity(security_protocol="SSL", ca_file=ca_file))
    assert isinstance(tls_only, faust.SSLCredentials)


def test_librdkafka_config(ca_file: Path) -> None:
    conf = librdkafka_config(sasl(ca_file), "b:9093")
    assert conf == {"bootstrap.servers": "b:9093", "security.protocol": "sasl_ssl",
                    "ssl.ca.location": str(ca_file),
                    "ssl.endpoint.identification.algorithm": "https",
                    "sasl.mechanism": "SCRAM-SHA-512", "sasl.username": "relay-mx1",
                    "sasl.password": SECRET}


def test_password_file_first_line(tmp_path: Path) -> None:
    path = tmp_path / "pw"
    path.write_text(f"{SECRET}\nignored\n")
    assert read_password(sasl(password=None, password_file=path)) == SECRET
    path.write_text("\n")
    with pytest.raises(ConfigError, match=r"RELAYGUARD_KAFKA__PASSWORD_FILE=.* is empty"):
        read_password(sasl(password=None, password_file=path))


@pytest.mark.parametrize(("fields", "names"), [
    ({"username": None}, "RELAYGUARD_KAFKA__USERNAME is required with "
                         "RELAYGUARD_KAFKA__SECURITY_PROTOCOL=SASL_SSL"),
    ({"password": None}, "RELAYGUARD_KAFKA__PASSWORD or RELAYGUARD_KAFKA__PASSWORD_FILE is "
                         "required"),
    ({"password_file": "/etc/hostname"}, "both RELAYGUARD_KAFKA__PASSWORD and "
                                         "RELAYGUARD_KAFKA__PASSWORD_FILE"),
    ({"cert_file": "/etc/hostname"}, "RELAYGUARD_KAFKA__CERT_FILE and RELAYGUARD_KAFKA__KEY_FILE"),
    ({"ca_file": "/nonexistent/ca.pem"}, "RELAYGUARD_KAFKA__CA_FILE=/nonexistent/ca.pem: no "
                                         "such file"),
    ({"security_protocol": "PLAINTEXT"}, "RELAYGUARD_KAFKA__USERNAME, "
                                         "RELAYGUARD_KAFKA__PASSWORD set but "
                                         "RELAYGUARD_KAFKA__SECURITY_PROTOCOL=PLAINTEXT"),
    ({"security_protocol": "SSL"}, "set but RELAYGUARD_KAFKA__SECURITY_PROTOCOL=SSL"),
])
def test_bad_combinations_are_named_and_never_show_the_password(
        fields: dict[str, object], names: str) -> None:
    with pytest.raises(ConfigError) as err:
        aiokafka_options(sasl(**fields))
    assert names in str(err.value)
    assert SECRET not in err.value.explain()


def test_plaintext_with_a_ca_file_is_refused_not_silently_clear(ca_file: Path) -> None:
    with pytest.raises(ConfigError, match=r"RELAYGUARD_KAFKA__CA_FILE set but .*PLAINTEXT"):
        aiokafka_options(KafkaSecurity(ca_file=ca_file))


def test_unreadable_ca_bundle_is_a_config_error(tmp_path: Path) -> None:
    bad = tmp_path / "ca.pem"
    bad.write_text("not a certificate\n")
    with pytest.raises(ConfigError, match=r"RELAYGUARD_KAFKA__CA_FILE=.*not a usable PEM"):
        aiokafka_options(sasl(bad))


def test_env_variables_reach_the_settings(monkeypatch: pytest.MonkeyPatch, ca_file: Path) -> None:
    for name, value in {"SECURITY_PROTOCOL": "sasl_ssl", "SASL_MECHANISM": "scram-sha-256",
                        "USERNAME": "worker", "PASSWORD": SECRET, "CA_FILE": str(ca_file),
                        "CHECK_HOSTNAME": "false"}.items():
        monkeypatch.setenv(f"RELAYGUARD_KAFKA__{name}", value)
    sec = load_settings().kafka
    assert (sec.security_protocol, sec.sasl_mechanism, sec.username) == \
        ("SASL_SSL", "SCRAM-SHA-256", "worker")
    assert sec.password is not None and sec.password.get_secret_value() == SECRET
    assert sec.ca_file == ca_file and sec.check_hostname is False
    assert SECRET not in repr(sec) and SECRET not in describe(sec)


def test_unknown_protocol_is_named_without_leaking(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RELAYGUARD_KAFKA__SECURITY_PROTOCOL", "SASL_PLAINTEXT")
    monkeypatch.setenv("RELAYGUARD_KAFKA__PASSWORD", SECRET)
    with pytest.raises(ConfigError) as err:
        load_settings()
    assert "RELAYGUARD_KAFKA__SECURITY_PROTOCOL" in str(err.value)
    assert SECRET not in str(err.value)


def test_unknown_kafka_setting_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RELAYGUARD_KAFKA__USER", "typo")
    with pytest.raises(ConfigError, match="RELAYGUARD_KAFKA__USER"):
        load_settings()
