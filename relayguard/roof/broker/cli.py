"""`relayguard broker ...`: fetch and run a real local Kafka broker (no Docker needed)."""

from __future__ import annotations

import asyncio
import signal
import sys
import time
from pathlib import Path
from types import FrameType

import click

from relayguard.foundation.errors import RelayguardError
from relayguard.roof.broker.config import DEFAULT_VERSION
from relayguard.roof.broker.fetch import cache_root, ensure_jars, stderr_progress
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
@version_option
def start(
    data_dir: Path | None, port: int, create_topics: bool, timeout: float, kafka_version: str
) -> None:
    node = LocalBroker(data_dir=data_dir, version=kafka_version, port=port or None,
                       progress=stderr_progress)  # fmt: skip
    began = time.monotonic()
    try:
        node.start(timeout=timeout)
        if create_topics:
            _create_topics(node.bootstrap)
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
    click.echo("Ctrl-C to stop")
    _serve(node)


def _create_topics(bootstrap: str) -> None:
    from relayguard.foundation.settings import load_settings
    from relayguard.foundation.topics import ensure_topics, standard_topics

    created = asyncio.run(ensure_topics(bootstrap, standard_topics(load_settings())))
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
