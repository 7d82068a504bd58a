"""Unit tests of the broker's generated config, cluster id, cache layout and tool checks
(no JVM, no network)."""

from __future__ import annotations

import base64
import shutil
import socket
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from relayguard.foundation.errors import MissingToolError
from relayguard.foundation.settings import Topics, load_settings
from relayguard.foundation.topics import standard_topics
from relayguard.roof.broker import config, fetch


def parse_props(text: str) -> dict[str, str]:
    pairs = [line.split("=", 1) for line in text.splitlines() if line and not line.startswith("#")]
    return {key: value for key, value in pairs}


def test_server_properties_single_combined_node(tmp_path: Path) -> None:
    props = parse_props(config.server_properties(tmp_path / "data", 19092, 19093))
    assert props["process.roles"] == "broker,controller"
    assert props["node.id"] == "1"
    assert props["controller.quorum.voters"] == "1@127.0.0.1:19093"
    assert props["listeners"] == "PLAINTEXT://127.0.0.1:19092,CONTROLLER://127.0.0.1:19093"
    assert props["advertised.listeners"] == "PLAINTEXT://127.0.0.1:19092"
    assert props["controller.listener.names"] == "CONTROLLER"
    assert props["inter.broker.listener.name"] == "PLAINTEXT"
    assert "CONTROLLER:PLAINTEXT" in props["listener.security.protocol.map"]
    assert props["log.dirs"] == str(tmp_path / "data")


def test_server_properties_fit_one_node_and_faust(tmp_path: Path) -> None:
    props = parse_props(config.server_properties(tmp_path, 1, 2))
    for key in (
        "offsets.topic.replication.factor",
        "transaction.state.log.replication.factor",
        "transaction.state.log.min.isr",
        "share.coordinator.state.topic.replication.factor",
        "share.coordinator.state.topic.min.isr",
    ):
        assert props[key] == "1", key
    assert props["auto.create.topics.enable"] == "true"  # faust creates its internal topics
    assert props["group.initial.rebalance.delay.ms"] == "0"
    assert props["num.partitions"] == "1"
    assert int(props["offsets.topic.num.partitions"]) <= 8


def test_nothing_listens_beyond_loopback(tmp_path: Path) -> None:
    props = parse_props(config.server_properties(tmp_path, 1, 2))
    for key in ("listeners", "advertised.listeners", "controller.quorum.voters"):
        assert "0.0.0.0" not in props[key] and "127.0.0.1" in props[key]


def test_cluster_id_is_16_random_bytes_urlsafe_unpadded() -> None:
    ids = {config.new_cluster_id() for _ in range(50)}
    assert len(ids) == 50
    for cid in ids:
        assert len(cid) == 22 and "=" not in cid
        assert len(base64.urlsafe_b64decode(cid + "==")) == 16


def test_free_port_is_bindable_on_loopback() -> None:
    port = config.free_port()
    other = config.free_port(exclude={port})
    assert port != other
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))


def test_logging_config_writes_warn_to_file_in_data_dir(tmp_path: Path) -> None:
    layout = config.BrokerLayout(tmp_path / "odd & <dir>")
    config.write_config("4.0.2", layout, 1, 2)
    root = ET.parse(layout.logging_config).getroot()
    appender = root.find("./Appenders/File")
    assert appender is not None and appender.get("fileName") == str(layout.broker_log)
    assert root.find("./Loggers/Root").get("level") == "WARN"  # type: ignore[union-attr]
    assert layout.properties.is_file()
    assert config.logging_jvm_flag("4.0.2", layout).startswith("-Dlog4j2.configurationFile=")


def test_kafka3_uses_reload4j_config(tmp_path: Path) -> None:
    layout = config.BrokerLayout(tmp_path)
    config.write_config("3.9.2", layout, 1, 2)
    assert "log4j.rootLogger=WARN" in layout.legacy_logging_config.read_text()
    assert config.logging_jvm_flag("3.9.2", layout) == (
        f"-Dlog4j.configuration=file:{layout.legacy_logging_config}"
    )


def test_major_version_rejects_nonsense() -> None:
    assert config.major_version("4.0.2") == 4
    with pytest.raises(ValueError):
        config.major_version("latest")


def test_cache_root_env_override(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RELAYGUARD_KAFKA_CACHE", str(tmp_path))
    assert fetch.version_dir("4.0.2") == tmp_path / "kafka-4.0.2"
    assert fetch.cached_libs("4.0.2") is None


def test_half_download_is_not_trusted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RELAYGUARD_KAFKA_CACHE", str(tmp_path))
    libs = tmp_path / "kafka-4.0.2" / "libs"
    libs.mkdir(parents=True)
    (libs / "kafka_2.13-4.0.2.jar").write_bytes(b"")
    assert fetch.cached_libs("4.0.2") is None  # no marker: Maven did not finish
    (tmp_path / "kafka-4.0.2" / fetch.MARKER).write_text("kafka_2.13-4.0.2.jar\n")
    assert fetch.cached_libs("4.0.2") == libs
    assert fetch.ensure_jars("4.0.2") == libs  # cached: no Maven, no network


def test_missing_maven_names_what_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RELAYGUARD_KAFKA_CACHE", str(tmp_path))
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(MissingToolError) as err:
        fetch.ensure_jars("4.0.2")
    assert "mvn" in str(err.value) and "apt-get install maven" in err.value.explain()


def test_pom_ships_as_package_data() -> None:
    from importlib import resources

    pom = resources.files("relayguard.roof.broker").joinpath("pom.xml").read_text()
    assert "<artifactId>kafka_2.13</artifactId>" in pom
    assert "log4j-slf4j-impl" in pom  # slf4j 1.x binding for Kafka 4


def test_standard_topics_layout() -> None:
    settings = load_settings(partitions=6, topics=Topics(prefix="x."))
    specs = {spec.name: spec for spec in standard_topics(settings)}
    assert {
        "x.events", "x.events.by-ip", "x.events.dlq", "x.locks", "x.lock-acks", "x.alerts",
    } <= set(specs)  # fmt: skip
    assert specs["x.events"].partitions == specs["x.events.by-ip"].partitions == 6
    assert specs["x.locks"].partitions == 1
    assert specs["x.locks"].configs == {"cleanup.policy": "compact"}


def test_data_dir_locked_by_another_process_is_detected(tmp_path: Path) -> None:
    import subprocess
    import sys

    from relayguard.roof.broker.server import _locked_by_other_process

    lock = tmp_path / ".lock"
    assert not _locked_by_other_process(lock)  # no lock file: a fresh dir
    lock.touch()
    assert not _locked_by_other_process(lock)
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import fcntl,sys,time; f=open(sys.argv[1],'a'); fcntl.lockf(f, fcntl.LOCK_EX); "
         "print('held', flush=True); time.sleep(60)", str(lock)],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        assert _locked_by_other_process(lock)  # the way a running Kafka holds <log.dirs>/.lock
    finally:
        holder.kill()
        holder.wait()
    assert not _locked_by_other_process(lock)


def test_free_port_never_hands_out_one_port_twice() -> None:
    # The kernel may give the same free port to two probes in a row; two servers of one test
    # session (Postfix and its smtp-sink) were once told the same port that way.
    ports = [config.free_port() for _ in range(400)]
    assert len(set(ports)) == len(ports)
