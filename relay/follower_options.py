"""Click options shared by `hook tail` and `hook journal` (the two log followers), so both
spell, default and document them the same way."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import click

F = TypeVar("F", bound=Callable[..., object])


def batch_records_option() -> Callable[[F], F]:
    """`--batch-records/--single-records`: the wire format of the events this hook sends;
    None (not given) = the `relay_batch_records` setting (RELAYGUARD_RELAY_BATCH_RECORDS,
    default true). Shared by every hook that publishes events."""
    return click.option(
        "--batch-records/--single-records", "batch_records", default=None,
        help="one batch record per partition per hand-over (default), or one record per "
             "event for consumers of the events topic that cannot read batch records "
             "[default: RELAYGUARD_RELAY_BATCH_RECORDS, true]")


def follower_options(*, name: str, kept: str, begin: str) -> Callable[[F], F]:
    """`--relay-id`, `--bootstrap`, `--checkpoint-dir`, `--spool-dir`, `--from-start/--from-end`,
    `--deliveries/--no-deliveries`, `--sent-deliveries` (relay.log_delivery),
    `--batch-records/--single-records` (`batch_records_option`).

    `name` picks the default directories (DATA_DIR/NAME-checkpoints, DATA_DIR/NAME-spool),
    `kept` says what the checkpoint directory keeps ("where file positions are kept"), `begin`
    where --from-start/--from-end apply ("in a file that has no checkpoint yet")."""
    options = [
        click.option("--relay-id", default=None,
                     help="this relay's id [default: RELAYGUARD_RELAY_ID]"),
        click.option("--bootstrap", default=None,
                     help="Kafka bootstrap servers [default: RELAYGUARD_BOOTSTRAP_SERVERS]"),
        click.option("--checkpoint-dir", type=click.Path(file_okay=False, path_type=Path),
                     default=None,
                     help=f"{kept} [default: DATA_DIR/{name}-checkpoints]"),
        click.option("--spool-dir", type=click.Path(file_okay=False, path_type=Path),
                     default=None,
                     help=f"disk spool while Kafka is down [default: DATA_DIR/{name}-spool]"),
        click.option("--from-start/--from-end", default=False, show_default=True,
                     help=f"where to begin {begin}"),
        click.option("--deliveries/--no-deliveries", default=True, show_default=True,
                     help="publish Postfix delivery outcomes (bounced, deferred, expired) as "
                          "delivery events of the submitting user"),
        click.option("--sent-deliveries", is_flag=True, default=False,
                     help="also publish status=sent deliveries (one event per recipient)"),
        batch_records_option(),
    ]

    def decorate(fn: F) -> F:
        for option in reversed(options):  # so --help lists them in the order above
            fn = option(fn)
        return fn

    return decorate
