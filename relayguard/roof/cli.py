"""The one `relayguard` command. Each group lives in its own module; this file only mounts them."""

from __future__ import annotations

import logging

import click

from relayguard.foundation.cli_errors import friendly_errors

SETTINGS_HELP = """
Configuration comes from RELAYGUARD_* environment variables and an optional TOML file named by
RELAYGUARD_CONFIG_FILE. The main ones: RELAYGUARD_BOOTSTRAP_SERVERS (default 127.0.0.1:9092),
RELAYGUARD_TOPICS__PREFIX (default "relayguard."), RELAYGUARD_PARTITIONS (default 4),
RELAYGUARD_GEOIP_CITY_DB (MaxMind/DB-IP City .mmdb), RELAYGUARD_DATA_DIR (default
/var/lib/relayguard for services and root, else $XDG_STATE_HOME/relayguard).
"""


@click.group(help="relayguard: real-time abuse monitor for fleets of SMTP relays.\n"
             + SETTINGS_HELP)
@click.option("-v", "--verbose", is_flag=True, help="debug logging")
def main(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger("aiokafka").setLevel(logging.WARNING)


@main.command(help="Run the detection worker (Faust) against the configured Kafka.\n"
              + SETTINGS_HELP)
@click.option("--loglevel", default="info", show_default=True)
@friendly_errors
def worker(loglevel: str) -> None:
    from relayguard.agents.worker_main import run_worker
    from relayguard.foundation.settings import load_settings

    run_worker(load_settings(), loglevel)


def _mount() -> None:
    from relayguard.relay.hook_cli import hook
    from relayguard.roof.broker.cli import broker
    from relayguard.roof.demo import demo
    from relayguard.roof.keys_cli import keys
    from relayguard.roof.operator_cli import lock, locks, unlock
    from relayguard.roof.replay import replay
    from relayguard.roof.status_cli import status

    for command in (broker, demo, hook, keys, lock, unlock, locks, replay, status):
        main.add_command(command)


_mount()
