"""`relayguard hook journal`: follow the systemd journal of the mail units, publish login events.

Mounted into the `hook` group (relay/hook_cli.py) next to `hook tail`.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from pathlib import Path

import click

from relayguard.relay.follower_options import follower_options
from relayguard.relay.journal_follower import DEFAULT_UNITS

log = logging.getLogger(__name__)


@click.command("journal")
@click.option("--unit", "units", multiple=True, default=DEFAULT_UNITS, show_default=True,
              help="systemd unit whose entries are read (repeat for several); as journalctl -u")
@click.option("--directory", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="read the journal files in this directory instead of the system journal")
@follower_options(name="journal", kept="where the journal cursor is kept",
                  begin="when no cursor is saved yet")
@click.option("--journalctl", default="journalctl", show_default=True,
              help="the journalctl program to run")
@click.option("--metrics-listen", default=None, metavar="HOST:PORT",
              help="serve Prometheus metrics at http://HOST:PORT/metrics [default: off]")
def journal(units: tuple[str, ...], directory: Path | None, relay_id: str | None,
            bootstrap: str | None, checkpoint_dir: Path | None, spool_dir: Path | None,
            from_start: bool, deliveries: bool, sent_deliveries: bool,
            batch_records: bool | None, journalctl: str, metrics_listen: str | None) -> None:
    """Follow the systemd journal for the mail units and publish SMTP AUTH login events.

    Reads `journalctl --follow --output=json` for the units (Postfix, Dovecot, Exim), parses
    entries like `hook tail` parses log lines, and saves the journal cursor after the events
    are handed to the producer, so a restart neither loses nor repeats entries. The user
    running it must be allowed to read the journal (root, or the systemd-journal group).
    """
    from relayguard.foundation.settings import load_settings

    settings = load_settings()
    data_dir = settings.data_dir
    asyncio.run(_run(
        units=list(units), directory=directory,
        relay_id=relay_id or settings.relay_id,
        bootstrap=bootstrap or settings.bootstrap_servers, topic=settings.topics.events,
        checkpoint_dir=checkpoint_dir or data_dir / "journal-checkpoints",
        spool_dir=spool_dir or data_dir / "journal-spool",
        from_end=not from_start, journalctl=journalctl, metrics_listen=metrics_listen,
        deliveries=deliveries, sent_deliveries=sent_deliveries,
        batch_records=settings.relay_batch_records if batch_records is None else batch_records,
    ))


async def _run(*, units: list[str], directory: Path | None, relay_id: str, bootstrap: str,
               topic: str, checkpoint_dir: Path, spool_dir: Path, from_end: bool,
               journalctl: str, metrics_listen: str | None = None, deliveries: bool = True,
               sent_deliveries: bool = False, batch_records: bool = True) -> None:
    from relayguard.relay.checkpoint import CursorStore
    from relayguard.relay.journal_follower import JournalFollower
    from relayguard.relay.log_parser import LogParser
    from relayguard.relay.metrics import HookMetrics
    from relayguard.relay.metrics_http import serve_hook_metrics
    from relayguard.relay.producer import EventProducer

    key = str(directory.resolve()) if directory is not None else "system"
    producer = EventProducer(bootstrap, topic, spool_dir, batch_records=batch_records)
    from relayguard.foundation.settings import load_settings  # RELAYGUARD_USER_NAMES
    parser = LogParser(relay_id, user_names=load_settings().user_names, deliveries=deliveries,
                       sent_deliveries=sent_deliveries)
    follower = JournalFollower(parser, producer, CursorStore(checkpoint_dir, key),
                               units=units, directory=directory, from_end=from_end,
                               journalctl=journalctl)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, follower.stop)
    metrics = await serve_hook_metrics(metrics_listen,
                                       HookMetrics(relay_id, producer=producer, source=follower))
    await producer.start()
    log.info("journal: relay %s -> %s (%s); cursor in %s", relay_id, topic, bootstrap,
             checkpoint_dir)
    try:
        await follower.run()
    finally:
        await producer.stop()
        await metrics.stop()
        s = follower.stats
        log.info("journal: stopped after %d entries, %d events, %d journalctl restarts",
                 s.entries, s.events, s.restarts)
