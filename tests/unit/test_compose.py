"""docker-compose.yml is valid for Debian's docker-compose (`docker-compose config`) and says what
the README promises: SASL_SSL only, one credential per role from secret files, N workers in one
group, a relay hook. No Docker engine is used: `config` only parses, merges and checks.

docker-compose is installed with scripts/install-docker-compose.sh when missing (as root, like
the Postfix e2e setup); if that is impossible the tests FAIL with the reason, never skip.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
INSTALL = ROOT / "scripts" / "install-docker-compose.sh"
RELAYGUARD_SERVICES = ("acls", "worker", "relay")


@pytest.fixture(scope="module")
def docker_compose() -> str:
    found = shutil.which("docker-compose")
    if found is None:
        done = subprocess.run(["bash", str(INSTALL)], capture_output=True, text=True,
                              timeout=600, check=False)
        found = shutil.which("docker-compose")
        if found is None:
            pytest.fail(f"docker-compose is needed to validate {COMPOSE.name} and could not be "
                        f"installed by {INSTALL.name} (exit {done.returncode}):\n"
                        f"{(done.stdout + done.stderr).strip()[-2000:]}\n  install Debian's "
                        "docker-compose package (apt-get install docker-compose)", pytrace=False)
    return found


def config(docker_compose: str, path: Path = COMPOSE,
           env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items()
             if not k.startswith(("RELAYGUARD_", "KAFKA_", "COMPOSE_"))}
    return subprocess.run([docker_compose, "-f", str(path), "config"], cwd=path.parent,
                          capture_output=True, text=True, timeout=120, check=False,
                          env={**clean, **(env or {})})


def rendered(docker_compose: str, **env: str) -> dict[str, Any]:
    done = config(docker_compose, env=env)
    assert done.returncode == 0, done.stderr
    data: dict[str, Any] = yaml.safe_load(done.stdout)
    return data


def test_compose_config_passes_and_scales_workers(docker_compose: str) -> None:
    data = rendered(docker_compose)
    assert set(data["services"]) == {"kafka", *RELAYGUARD_SERVICES}
    assert data["services"]["worker"]["deploy"]["replicas"] == 3
    more = rendered(docker_compose, RELAYGUARD_WORKERS="5", RELAYGUARD_PARTITIONS="20")
    assert more["services"]["worker"]["deploy"]["replicas"] == 5
    assert more["services"]["worker"]["environment"]["RELAYGUARD_PARTITIONS"] == "20"


def test_kafka_listens_sasl_ssl_only_and_denies_by_default(docker_compose: str) -> None:
    kafka = rendered(docker_compose)["services"]["kafka"]
    script = "\n".join(kafka["command"])
    props = dict(line.split("=", 1) for line in script.splitlines()
                 if re.match(r"^[a-z][a-z0-9.-]+=", line))
    assert props["listeners"] == "SASL_SSL://:9093,CONTROLLER://localhost:9094"
    assert props["advertised.listeners"] == "SASL_SSL://kafka:9093"
    assert props["allow.everyone.if.no.acl.found"] == "false"
    assert props["authorizer.class.name"].endswith("StandardAuthorizer")
    assert props["sasl.enabled.mechanisms"] == "SCRAM-SHA-512"
    assert kafka["ports"] == ["127.0.0.1:9093:9093/tcp"]  # only the SASL_SSL listener is published
    users = set(re.findall(r"SCRAM-SHA-512=\[name=([\w.-]+),", script))
    assert users == {"admin", "worker", "operator", "relay-1"}


def test_every_relayguard_service_authenticates_with_its_own_secret(docker_compose: str) -> None:
    data = rendered(docker_compose)
    users = {}
    for name in RELAYGUARD_SERVICES:
        svc = data["services"][name]
        env = svc["environment"]
        assert env["RELAYGUARD_KAFKA__SECURITY_PROTOCOL"] == "SASL_SSL", name
        assert env["RELAYGUARD_BOOTSTRAP_SERVERS"] == "kafka:9093", name
        assert "RELAYGUARD_KAFKA__PASSWORD" not in env, f"{name}: password inline"
        secret = env["RELAYGUARD_KAFKA__PASSWORD_FILE"].removeprefix("/run/secrets/")
        mounted = {s["source"] if isinstance(s, dict) else s for s in svc["secrets"]}
        assert {secret, "kafka_ca"} <= mounted, name
        assert env["RELAYGUARD_KAFKA__CA_FILE"] == "/run/secrets/kafka_ca"
        users[name] = env["RELAYGUARD_KAFKA__USERNAME"]
    assert users == {"acls": "admin", "worker": "worker", "relay": "relay-1"}
    assert "--relay relay-1 --worker worker --operator operator" in \
        data["services"]["acls"]["command"]
    assert "hook postfix" in data["services"]["relay"]["command"]


def test_the_check_bites_on_a_broken_file(docker_compose: str, tmp_path: Path) -> None:
    broken = tmp_path / "docker-compose.yml"
    broken.write_text(COMPOSE.read_text().replace("condition: service_healthy",
                                                  "condition: when_it_feels_like_it"))
    done = config(docker_compose, broken)
    assert done.returncode != 0 and "condition" in done.stderr, done.stderr


def _mounts(svc: dict[str, Any]) -> dict[str, str]:
    """Container path -> host path of a service's bind mounts."""
    out = {}
    for v in svc.get("volumes", []):
        if isinstance(v, dict):
            out[v["target"]] = v["source"]
        else:
            source, target = v.split(":")[:2]
            out[target] = source
    return out


def test_workers_sign_and_every_service_verifies_without_seeing_the_key(
        docker_compose: str) -> None:
    services = rendered(docker_compose)["services"]
    worker, relay = services["worker"], services["relay"]
    assert worker["environment"]["RELAYGUARD_SIGNING_KEY_FILE"] == "/run/secrets/signing_key"
    assert "signing_key" in {s["source"] if isinstance(s, dict) else s
                             for s in worker["secrets"]}
    for svc in (worker, relay):
        verify = svc["environment"]["RELAYGUARD_VERIFY_KEYS_DIR"]
        assert _mounts(svc)[verify].endswith("secrets/verify-keys")
    assert "RELAYGUARD_SIGNING_KEY_FILE" not in relay["environment"]
    assert "signing_key" not in {s["source"] if isinstance(s, dict) else s
                                 for s in relay["secrets"]}


def test_compose_secrets_writes_the_signing_pair_once(tmp_path: Path) -> None:
    from relayguard.foundation import signing
    from relayguard.roof.broker.cli import compose_signing_keys

    key, pub = compose_signing_keys(tmp_path)
    assert key == tmp_path / "signing.key" and pub == tmp_path / "verify-keys" / "signing.pub"
    assert oct(key.stat().st_mode & 0o777) == "0o600"
    assert [p.name for p in pub.parent.iterdir()] == ["signing.pub"]  # relays mount this only
    private = signing.load_private(key.read_text(), str(key))
    public = signing.load_public(pub.read_text(), str(pub))
    assert signing.key_id(private.public_key()) == signing.key_id(public)  # one pair
    first = pub.read_bytes()
    assert compose_signing_keys(tmp_path) == (key, pub) and pub.read_bytes() == first
