"""The secure local broker's pure parts: server properties, users and files, TLS material, and
the ACL layout (who may do what)."""

from __future__ import annotations

import ipaddress
import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from relayguard.foundation.errors import ConfigError
from relayguard.foundation.settings import Topics
from relayguard.roof.broker import acls
from relayguard.roof.broker.config import SecureListener, server_properties
from relayguard.roof.broker.secure import SecureSetup
from relayguard.roof.broker.tls import ensure_tls


def props(text: str) -> dict[str, str]:
    lines = [ln for ln in text.splitlines() if ln and not ln.startswith("#")]
    return dict(ln.split("=", 1) for ln in lines)


def test_secure_properties_sasl_ssl_listener_and_deny_by_default(tmp_path: Path) -> None:
    secure = SecureListener(tmp_path / "ks.pem", tmp_path / "ca.pem", "admin", "pw")
    p = props(server_properties(tmp_path / "data", 9093, 9999, secure))
    assert p["listeners"] == "SASL_SSL://127.0.0.1:9093,CONTROLLER://127.0.0.1:9999"
    assert p["advertised.listeners"] == "SASL_SSL://127.0.0.1:9093"
    assert p["listener.security.protocol.map"] == "SASL_SSL:SASL_SSL,CONTROLLER:PLAINTEXT"
    assert p["inter.broker.listener.name"] == "SASL_SSL"
    assert p["sasl.enabled.mechanisms"] == p["sasl.mechanism.inter.broker.protocol"] \
        == "SCRAM-SHA-512"
    assert 'username="admin" password="pw";' in \
        p["listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config"]
    assert p["authorizer.class.name"] == \
        "org.apache.kafka.metadata.authorizer.StandardAuthorizer"
    assert p["allow.everyone.if.no.acl.found"] == "false"
    assert p["super.users"] == "User:admin;User:ANONYMOUS"
    assert (p["ssl.keystore.type"], p["ssl.truststore.type"]) == ("PEM", "PEM")
    assert "PLAINTEXT://" not in p["listeners"]


def test_plaintext_properties_unchanged_without_secure(tmp_path: Path) -> None:
    p = props(server_properties(tmp_path / "data", 9092, 9999))
    assert p["listeners"].startswith("PLAINTEXT://127.0.0.1:9092")
    assert "authorizer.class.name" not in p


def test_tls_material_names_loopback_and_chains_to_the_ca(tmp_path: Path) -> None:
    files = ensure_tls(tmp_path)
    pem = files.keystore.read_bytes()
    assert pem.startswith(b"-----BEGIN PRIVATE KEY-----")  # PKCS#8, as Kafka's PEM store wants
    certs = x509.load_pem_x509_certificates(pem)
    ca = x509.load_pem_x509_certificate(files.ca.read_bytes())
    assert certs[-1] == ca
    san = certs[0].extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert ipaddress.ip_address("127.0.0.1") in san.get_values_for_type(x509.IPAddress)
    key = ca.public_key()
    assert isinstance(key, ec.EllipticCurvePublicKey)
    certs[0].verify_directly_issued_by(ca)
    assert stat.S_IMODE(files.keystore.stat().st_mode) == 0o600
    assert ensure_tls(tmp_path).keystore.read_bytes() == pem  # reused, not remade


def test_users_passwords_are_private_and_stable(tmp_path: Path) -> None:
    first = SecureSetup.prepare(tmp_path / "secure")
    assert first.users == ["admin", "worker", "operator", "relay-1"]
    again = SecureSetup.prepare(tmp_path / "secure", {**first.roles, "relay": ("relay-1", "mx2")})
    assert {u: again.passwords[u] for u in first.users} == first.passwords
    assert "mx2" in again.passwords and len(again.passwords["mx2"]) >= 20
    for user in again.users:
        path = tmp_path / "secure" / f"{user}.password"
        assert path.read_text().strip() == again.passwords[user]
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    args = again.scram_args(["worker"])
    pw = again.passwords["worker"]
    assert args == ["--add-scram", f"SCRAM-SHA-512=[name=worker,password={pw}]"]
    sec = again.security("mx2")
    assert sec.username == "mx2" and sec.password_file == tmp_path / "secure" / "mx2.password"
    assert "RELAYGUARD_KAFKA__USERNAME=mx2" in again.env_lines("mx2", "127.0.0.1:1")


def test_unsafe_user_names_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not allowed"):
        SecureSetup.prepare(tmp_path, {"relay": ('x",password="y',)})


def _grants(rules: list[acls.AclRule], principal: str) -> set[tuple[str, str, str]]:
    return {(r.name, r.pattern, op) for r in rules if r.principal == principal
            for op in r.operations}


def test_acl_layout_relay_writes_events_and_acks_reads_locks_only() -> None:
    t = Topics(prefix="rg.")
    rules = acls.layout(t, "rg", relays=["mx1"], workers=["w"], operators=["ops"])
    assert _grants(rules, "User:mx1") == {
        ("rg.events", "literal", "WRITE"), ("rg.events", "literal", "DESCRIBE"),
        ("rg.lock-acks", "literal", "WRITE"), ("rg.lock-acks", "literal", "DESCRIBE"),
        ("rg.locks", "literal", "READ"), ("rg.locks", "literal", "DESCRIBE")}
    ops = _grants(rules, "User:ops")
    assert ("rg.locks", "literal", "WRITE") in ops
    assert not any(name in (t.control, t.events) for name, _, _ in ops)
    worker = _grants(rules, "User:w")
    for op in ("READ", "WRITE", "CREATE", "DESCRIBE"):
        assert ("rg.", "prefixed", op) in worker and ("rg-", "prefixed", op) in worker
    assert {(r.resource, r.name) for r in rules if r.principal == "User:w"} >= {
        ("group", "rg"), ("transactional-id", "rg")}


def test_acl_renderings() -> None:
    rules = acls.layout(Topics(prefix="rg."), "rg", relays=["mx1"], workers=["w"])
    table = acls.table(rules)
    assert "| relay | `User:mx1` | topic | `rg.locks` | literal | READ, DESCRIBE |" in table
    cmds = acls.kafka_acls_commands(rules, "k:9093").splitlines()
    assert len(cmds) == len(rules)
    assert ("--allow-principal User:w --operation Read --operation Write --operation Describe "
            "--operation Create --operation DescribeConfigs --topic 'rg.' "
            "--resource-pattern-type prefixed") in cmds[3]
