"""Pure text generation for a single-node KRaft broker: server.properties, logging config,
cluster id and free ports. Kept apart from the process code so it can be unit tested."""

from __future__ import annotations

import base64
import os
import socket
from dataclasses import dataclass
from pathlib import Path
from xml.sax.saxutils import quoteattr

DEFAULT_VERSION = "4.0.2"


def major_version(version: str) -> int:
    """Kafka major version: 4.x logs via log4j2, 3.x via reload4j (log4j 1 API)."""
    head = version.split(".", 1)[0]
    if not head.isdigit():
        raise ValueError(f"not a Kafka version: {version!r}")
    return int(head)


def new_cluster_id() -> str:
    """What `kafka-storage random-uuid` prints: 16 random bytes, urlsafe base64, no padding."""
    return base64.urlsafe_b64encode(os.urandom(16)).rstrip(b"=").decode("ascii")


# Ports this process has handed out: the kernel may give the same free port twice in a row
# once the probe socket is closed, and two servers of one session (a Postfix and an
# smtp-sink, a broker and its controller) must never be told the same port.
_HANDED_OUT: set[int] = set()


def free_port(exclude: set[int] | None = None) -> int:
    """A port the kernel says is free on 127.0.0.1 now and that this process has not handed out
    before (a tiny race with other processes remains until the server binds)."""
    if len(_HANDED_OUT) > 8192:  # a long-lived process: forget the oldest session's ports
        _HANDED_OUT.clear()
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
        if port in _HANDED_OUT or (exclude and port in exclude):
            continue
        _HANDED_OUT.add(port)
        return port


@dataclass(frozen=True)
class BrokerLayout:
    """Where one broker keeps its files, all under data_dir."""

    data_dir: Path

    @property
    def log_dirs(self) -> Path:  # Kafka's "log" = the partition data
        return self.data_dir / "kafka-data"

    @property
    def properties(self) -> Path:
        return self.data_dir / "server.properties"

    @property
    def logging_config(self) -> Path:
        return self.data_dir / "log4j2.xml"

    @property
    def legacy_logging_config(self) -> Path:
        return self.data_dir / "log4j.properties"

    @property
    def broker_log(self) -> Path:
        return self.data_dir / "broker.log"

    @property
    def console_log(self) -> Path:
        return self.data_dir / "broker.out"

    @property
    def formatted_marker(self) -> Path:
        # Written by `kafka-storage format`; present means the dir must not be formatted again.
        return self.log_dirs / "meta.properties"


@dataclass(frozen=True)
class SecureListener:
    """What a SASL_SSL client listener needs: PEM files and the broker's own SCRAM user."""

    keystore: Path  # server key (PKCS#8) + certificate chain
    truststore: Path  # CA certificate
    admin_user: str
    admin_password: str
    mechanism: str = "SCRAM-SHA-512"


STANDARD_AUTHORIZER = "org.apache.kafka.metadata.authorizer.StandardAuthorizer"


def secure_properties(port: int, controller_port: int, secure: SecureListener) -> dict[str, str]:
    """SASL_SSL for clients and the broker itself, the StandardAuthorizer, deny by default.

    The controller listener stays PLAINTEXT on loopback: KRaft controllers cannot use SCRAM (its
    credentials live in the metadata they serve), so its principal is User:ANONYMOUS and must be
    a super user for the broker to register. Anyone with a shell on this host can reach it; this
    is a one-box broker for development and tests."""
    mech = secure.mechanism.lower()
    jaas = (f'org.apache.kafka.common.security.scram.ScramLoginModule required '
            f'username="{secure.admin_user}" password="{secure.admin_password}";')
    return {
        "listeners": f"SASL_SSL://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}",
        "advertised.listeners": f"SASL_SSL://127.0.0.1:{port}",
        "inter.broker.listener.name": "SASL_SSL",
        "listener.security.protocol.map": "SASL_SSL:SASL_SSL,CONTROLLER:PLAINTEXT",
        "sasl.enabled.mechanisms": secure.mechanism,
        "sasl.mechanism.inter.broker.protocol": secure.mechanism,
        f"listener.name.sasl_ssl.{mech}.sasl.jaas.config": jaas,
        "ssl.keystore.type": "PEM",
        "ssl.keystore.location": str(secure.keystore),
        "ssl.truststore.type": "PEM",
        "ssl.truststore.location": str(secure.truststore),
        "ssl.client.auth": "none",
        "authorizer.class.name": STANDARD_AUTHORIZER,
        "allow.everyone.if.no.acl.found": "false",
        "super.users": f"User:{secure.admin_user};User:ANONYMOUS",
        # Topics appear only when someone allowed to CREATE them asks (the worker does).
        "auto.create.topics.enable": "false",
    }


def server_properties(log_dirs: Path, port: int, controller_port: int,
                      secure: SecureListener | None = None) -> str:
    """Single combined broker+controller node on loopback, sized for tests and one-box demos.
    With `secure`, the client listener is SASL_SSL with ACLs (see secure_properties)."""
    props: dict[str, str] = {
        "process.roles": "broker,controller",
        "node.id": "1",
        "controller.quorum.voters": f"1@127.0.0.1:{controller_port}",
        "listeners": f"PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}",
        # Clients must only ever be told about the data listener.
        "advertised.listeners": f"PLAINTEXT://127.0.0.1:{port}",
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "PLAINTEXT",
        "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
        "log.dirs": str(log_dirs),
        "num.partitions": "1",
        # Faust creates its own changelog/repartition topics, so auto-creation stays on.
        "auto.create.topics.enable": "true",
        # One node: every internal topic must be satisfiable with a single replica.
        "offsets.topic.replication.factor": "1",
        "offsets.topic.num.partitions": "4",
        "transaction.state.log.replication.factor": "1",
        "transaction.state.log.min.isr": "1",
        "transaction.state.log.num.partitions": "4",
        "share.coordinator.state.topic.replication.factor": "1",
        "share.coordinator.state.topic.min.isr": "1",
        "default.replication.factor": "1",
        "min.insync.replicas": "1",
        # Consumers in tests should not wait 3 s for a rebalance that has nobody else to wait for.
        "group.initial.rebalance.delay.ms": "0",
        "log.retention.hours": "168",
        # A combined node cannot finish a controlled shutdown (its controller stops with it), so
        # on restart of a kept data dir the old broker registration must time out first: keep
        # that short (default 9 s) but far above the heartbeat, which is in-process traffic.
        "broker.heartbeat.interval.ms": "1000",
        "broker.session.timeout.ms": "4000",
    }
    if secure is not None:
        props.update(secure_properties(port, controller_port, secure))
    lines = ["# Generated by relayguard.broker; edits are overwritten on the next start."]
    lines += [f"{key}={value}" for key, value in props.items()]
    return "\n".join(lines) + "\n"


def log4j2_xml(broker_log: Path) -> str:
    """Kafka 4.x: everything at WARN into one file, so the console stays quiet."""
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<Configuration status="WARN">
  <Appenders>
    <File name="file" fileName={quoteattr(str(broker_log))}>
      <PatternLayout pattern="[%d] %p %m (%c)%n"/>
    </File>
  </Appenders>
  <Loggers>
    <Logger name="kafka" level="WARN"/>
    <Logger name="org.apache.kafka" level="WARN"/>
    <Root level="WARN"><AppenderRef ref="file"/></Root>
  </Loggers>
</Configuration>
"""


def log4j_properties(broker_log: Path) -> str:
    """Kafka 3.x (reload4j): the same policy in log4j 1 syntax."""
    return (
        "log4j.rootLogger=WARN, file\n"
        "log4j.appender.file=org.apache.log4j.FileAppender\n"
        f"log4j.appender.file.File={broker_log}\n"
        "log4j.appender.file.layout=org.apache.log4j.PatternLayout\n"
        "log4j.appender.file.layout.ConversionPattern=[%d] %p %m (%c)%n\n"
    )


def logging_jvm_flag(version: str, layout: BrokerLayout) -> str:
    if major_version(version) >= 4:
        return f"-Dlog4j2.configurationFile={layout.logging_config}"
    return f"-Dlog4j.configuration=file:{layout.legacy_logging_config}"


def write_config(version: str, layout: BrokerLayout, port: int, controller_port: int,
                 secure: SecureListener | None = None) -> None:
    """Write server.properties and the logging config for this start (ports change per start)."""
    layout.data_dir.mkdir(parents=True, exist_ok=True)
    text = server_properties(layout.log_dirs, port, controller_port, secure)
    fd = os.open(layout.properties, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # a password
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    layout.properties.chmod(0o600)  # also when an earlier start left it readable
    if major_version(version) >= 4:
        layout.logging_config.write_text(log4j2_xml(layout.broker_log))
    else:
        layout.legacy_logging_config.write_text(log4j_properties(layout.broker_log))
