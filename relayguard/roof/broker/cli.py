"""`relayguard broker ...`: fetch and run a real local Kafka broker (no Docker needed)."""

from __future__ import annotations

import asyncio
import signal
import sys
import time
from pathlib import Path
from types import FrameType

import click

from relayguard.foundation import signing
from relayguard.foundation.errors import RelayguardError
from relayguard.foundation.kafka_clients import librdkafka_config
from relayguard.foundation.settings import load_settings
from relayguard.roof.broker import acls
from relayguard.roof.broker.config import DEFAULT_VERSION
from relayguard.roof.broker.fetch import cache_root, ensure_jars, stderr_progress
from relayguard.roof.broker.secure import DEFAULT_ROLES, SecureSetup
from relayguard.roof.broker.server import LocalBroker, tail

BROKER_HELP = f"""Run a real single-node Apache Kafka broker on 127.0.0.1, for development, demos
and tests.

The broker jars (Kafka {DEFAULT_VERSION}) are fetched once with Maven into
{cache_root()}/kafka-<version>/libs (set RELAYGUARD_KAFKA_CACHE to put them elsewhere); later
runs work offline. Needs `java` (17+) and, for the first fetch, `mvn`.
"""

version_option = click.option(
    "--kafka-version", default=DEFAULT_VERSION, show_default=True, help="Kafka release to use"
)


def _fail(exc: RelayguardError) -> None:
    click.echo(exc.explain(), err=True)
    sys.exit(2)


@click.group(help=BROKER_HELP)
def broker() -> None:
    pass


@broker.command(help="Download the broker jars now (shows progress). Does nothing if cached.")
@version_option
def fetch(kafka_version: str) -> None:
    try:
        libs = ensure_jars(kafka_version, progress=stderr_progress)
    except RelayguardError as exc:
        _fail(exc)
    click.echo(str(libs))


@broker.command(help="""Start a broker in the foreground until Ctrl-C.

Listens on 127.0.0.1:PORT (default 9092, the default RELAYGUARD_BOOTSTRAP_SERVERS; --port 0
picks a free port). Without --data-dir the data lives in a temp dir deleted on exit; with it,
topics and records survive restarts. Creates relayguard's topics (RELAYGUARD_TOPICS__PREFIX,
RELAYGUARD_PARTITIONS) unless --no-create-topics. The broker's own log is broker.log in the
data dir.""")
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="keep broker data here (reused across starts)")  # fmt: skip
@click.option("--port", type=int, default=9092, show_default=True, help="0 = any free port")
@click.option("--create-topics/--no-create-topics", default=True, show_default=True)
@click.option("--timeout", type=float, default=90, show_default=True, help="start timeout, s")
@click.option("--secure", is_flag=True,
              help="SASL_SSL listener, SCRAM-SHA-512 users, a throwaway CA and ACLs (deny by "
              "default); prints the credentials and the env lines to export")
@click.option("--relay", "relays", multiple=True, default=("relay-1",), show_default=True,
              help="with --secure: a relay user to create (repeat for several)")
@version_option
def start(
    data_dir: Path | None, port: int, create_topics: bool, timeout: float, secure: bool,
    relays: tuple[str, ...], kafka_version: str,
) -> None:
    roles = {**DEFAULT_ROLES, "relay": tuple(relays)}
    node = LocalBroker(data_dir=data_dir, version=kafka_version, port=port or None,
                       progress=stderr_progress, secure=secure, roles=roles)  # fmt: skip
    began = time.monotonic()
    try:
        node.start(timeout=timeout)
        if secure:
            _apply_layout(node, roles)
        if create_topics:
            _create_topics(node)
    except RelayguardError as exc:
        node.stop(keep_dir=True)
        _fail(exc)
    except BaseException:
        node.stop()
        raise
    click.echo(f"Kafka {kafka_version} ready in {time.monotonic() - began:.1f}s")
    click.echo(f"bootstrap: {node.bootstrap}")
    click.echo(f"  export RELAYGUARD_BOOTSTRAP_SERVERS={node.bootstrap}")
    click.echo(f"data dir: {node.layout.data_dir}")
    if node.secure is not None:
        _print_credentials(node)
    click.echo("Ctrl-C to stop")
    _serve(node)


def _apply_layout(node: LocalBroker, roles: dict[str, tuple[str, ...]]) -> None:
    settings = load_settings()
    rules = acls.layout(settings.topics, settings.app_id, relays=roles["relay"],
                        workers=roles["worker"], operators=roles["operator"])
    count = node.apply_acls(rules)
    click.echo(f"applied {count} ACL bindings for topic prefix {settings.topics.prefix!r} and "
               f"app id {settings.app_id!r} (`relayguard broker acls` shows them)", err=True)


def _print_credentials(node: LocalBroker) -> None:
    assert node.secure is not None and node.secure.tls is not None
    files = node.secure.write_env_files(node.bootstrap)
    click.echo(f"SASL_SSL (SCRAM-SHA-512), CA certificate: {node.secure.tls.ca}")
    click.echo(f"users (passwords in {node.secure.directory}/<user>.password, mode 0600):")
    for role, users in [("super user", ("admin",)), *node.secure.roles.items()]:
        for user in users:
            click.echo(f"  {role:10} {user:12} env file {files[user]}")
    click.echo("a worker exports (relays and operators likewise, from their env file):")
    for line in node.secure.env_lines(node.secure.roles["worker"][0], node.bootstrap):
        click.echo(f"  export {line}")


def _create_topics(node: LocalBroker) -> None:
    from relayguard.foundation.topics import ensure_topics, standard_topics

    created = asyncio.run(ensure_topics(node.bootstrap, standard_topics(load_settings()),
                                        kafka_options=node.client_options()))
    if created:
        click.echo(f"created topics: {', '.join(created)}", err=True)


def _serve(node: LocalBroker) -> None:
    """Block until Ctrl-C / SIGTERM or the broker dies; always stop it."""

    def on_term(_sig: int, _frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, on_term)
    try:
        while node.running():
            time.sleep(0.5)
        click.echo("the broker exited on its own; last log lines:", err=True)
        click.echo(tail(node.layout.broker_log), err=True)
        sys.exit(1)
    except KeyboardInterrupt:
        click.echo("stopping broker...", err=True)
    finally:
        node.stop()
        signal.signal(signal.SIGTERM, previous)


@broker.command("compose-secrets", help="""Write what docker-compose.yml's SASL_SSL setup reads
from DIR (default ./secrets): a throwaway CA (ca.pem), the broker's key and certificate for
--host (server-keystore.pem), a password file per user (admin, worker, operator, relay-1;
mode 0600), and the Ed25519 key pair that signs lock commands: signing.key for the workers and
verify-keys/signing.pub for every service. Existing files are kept, so running it again changes
nothing.""")
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path),
                default=Path("secrets"))
@click.option("--host", "hosts", multiple=True, default=("kafka",), show_default=True,
              help="broker host name(s) clients connect to (certificate names)")
def compose_secrets(directory: Path, hosts: tuple[str, ...]) -> None:
    try:
        setup = SecureSetup.prepare(directory, hosts=hosts)
    except RelayguardError as exc:
        _fail(exc)
    for user in setup.users:
        click.echo(f"{user:10} {directory / (user + '.password')}")
    assert setup.tls is not None
    click.echo(f"CA {setup.tls.ca}, broker keystore {setup.tls.keystore} ({', '.join(hosts)})")
    key, pub = compose_signing_keys(directory)
    click.echo(f"signing key {key} (workers), verify key {pub} (every service)")


def compose_signing_keys(directory: Path) -> tuple[Path, Path]:
    """DIR/signing.key and DIR/verify-keys/signing.pub, made once. The public key lives in a
    directory of its own because relays mount that directory and must never see the key."""
    key, pub = directory / "signing.key", directory / "verify-keys" / "signing.pub"
    if not key.exists():
        _, made_pub, _ = signing.write_key_pair(directory, "signing")
        pub.parent.mkdir(parents=True, exist_ok=True)
        made_pub.replace(pub)
    return key, pub


@broker.command("acls", help="""Print (or, with --apply, create) the ACLs relayguard needs on a
Kafka with an authorizer, for the configured topic prefix (RELAYGUARD_TOPICS__PREFIX) and app id
(RELAYGUARD_APP_ID).

Relay users may WRITE events and lock-acks and READ locks, nothing else; worker users may use
every topic under the prefix and under '<app id>-', their consumer group and transactional ids;
operator users READ and WRITE locks and READ alerts, lock-acks and the DLQ. --apply connects
with the RELAYGUARD_KAFKA__* settings, which must name a super user.""")
@click.option("--relay", "relays", multiple=True, default=("relay-1",), show_default=True,
              help="relay SASL user (repeat for each relay)")
@click.option("--worker", "workers", multiple=True, default=("worker",), show_default=True)
@click.option("--operator", "operators", multiple=True, default=("operator",), show_default=True)
@click.option("--format", "fmt", type=click.Choice(["table", "kafka-acls"]), default="table",
              show_default=True, help="a Markdown table, or kafka-acls.sh commands")
@click.option("--apply", "do_apply", is_flag=True, help="create them on the configured Kafka")
def acls_command(relays: tuple[str, ...], workers: tuple[str, ...], operators: tuple[str, ...],
                 fmt: str, do_apply: bool) -> None:
    try:
        settings = load_settings()
        rules = acls.layout(settings.topics, settings.app_id, relays=relays, workers=workers,
                            operators=operators)
        if do_apply:
            count = acls.apply(rules, librdkafka_config(settings.kafka,
                                                        settings.bootstrap_servers))
            click.echo(f"created {count} ACL bindings on {settings.bootstrap_servers}")
            return
    except RelayguardError as exc:
        _fail(exc)
    if fmt == "table":
        click.echo(acls.table(rules))
    else:
        click.echo(acls.kafka_acls_commands(rules, settings.bootstrap_servers))
