"""`relayguard hook tail FILE...`: follow mail logs and publish login events to Kafka.

Mounted into the `hook` group (relay/hook_cli.py) with `hook.add_command(tail)`.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from datetime import UTC, tzinfo
from pathlib import Path
from typing import Any

import click

from relayguard.relay.follower_options import follower_options

log = logging.getLogger(__name__)


def local_zone() -> tzinfo:
    """The system zone with its DST rules (TZ, else /etc/localtime), as syslog stamps use it."""
    import os
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    name = os.environ.get("TZ", "").lstrip(":")
    if name:
        try:
            return ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError):
            pass
    try:
        with open("/etc/localtime", "rb") as fh:
            return ZoneInfo.from_file(fh, key="localtime")
    except (OSError, ValueError):
        from datetime import datetime

        return datetime.now().astimezone().tzinfo or UTC  # fixed offset: better than nothing


def _zone(name: str) -> tzinfo:
    if name.upper() == "UTC":
        return UTC
    if name == "local":
        return local_zone()
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise click.BadParameter(f"unknown time zone {name!r}", param_hint="--timezone") from None


@click.command("tail")
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False))
@follower_options(name="tail", kept="where file positions are kept",
                  begin="in a file that has no checkpoint yet")
@click.option("--timezone", "tz_name", default="local", show_default=True,
              help="zone of log stamps without an offset (RFC 3164, Exim): IANA name or UTC")
@click.option("--poll-interval", default=0.2, show_default=True, type=float)
@click.option("--metrics-listen", default=None, metavar="HOST:PORT",
              help="serve Prometheus metrics at http://HOST:PORT/metrics [default: off]")
def tail(files: tuple[str, ...], relay_id: str | None, bootstrap: str | None,
         checkpoint_dir: Path | None, spool_dir: Path | None, from_start: bool,
         deliveries: bool, sent_deliveries: bool, batch_records: bool | None, tz_name: str,
         poll_interval: float, metrics_listen: str | None) -> None:
    """Follow Postfix/Dovecot/Exim mail logs (FILE...) and publish SMTP AUTH login events.

    Survives log rotation (rename or copytruncate) and restarts: positions are checkpointed
    after the events are handed to the producer, which spools to disk while Kafka is down.
    """
    from relayguard.foundation.kafka_clients import aiokafka_options
    from relayguard.foundation.settings import load_settings

    settings = load_settings()
    tz = _zone(tz_name)
    asyncio.run(_run(
        files=list(files),
        relay_id=relay_id or settings.relay_id,
        bootstrap=bootstrap or settings.bootstrap_servers,
        topic=settings.topics.events,
        checkpoint_dir=checkpoint_dir or settings.data_dir / "tail-checkpoints",
        spool_dir=spool_dir or settings.data_dir / "tail-spool",
        from_end=not from_start,
        tz=tz,
        poll_interval=poll_interval,
        kafka_options=aiokafka_options(settings.kafka),
        metrics_listen=metrics_listen, deliveries=deliveries, sent_deliveries=sent_deliveries,
        batch_records=settings.relay_batch_records if batch_records is None else batch_records,
    ))


async def _run(*, files: list[str], relay_id: str, bootstrap: str, topic: str,
               checkpoint_dir: Path, spool_dir: Path, from_end: bool, tz: tzinfo,
               poll_interval: float, kafka_options: dict[str, Any] | None = None,
               metrics_listen: str | None = None, deliveries: bool = True,
               sent_deliveries: bool = False, batch_records: bool = True) -> None:
    from relayguard.relay.checkpoint import CheckpointStore
    from relayguard.relay.log_follower import LogFollower
    from relayguard.relay.log_parser import LogParser
    from relayguard.relay.log_throttle import throttle_aiokafka_logs
    from relayguard.relay.metrics import HookMetrics
    from relayguard.relay.metrics_http import serve_hook_metrics
    from relayguard.relay.producer import EventProducer

    throttle_aiokafka_logs()  # one aiokafka line every few seconds during an outage
    producer = EventProducer(bootstrap, topic, spool_dir, kafka_options=kafka_options,
                             batch_records=batch_records)
    from relayguard.foundation.settings import load_settings  # RELAYGUARD_USER_NAMES
    parser = LogParser(relay_id, tz=tz, user_names=load_settings().user_names,
                       deliveries=deliveries, sent_deliveries=sent_deliveries)
    follower = LogFollower(files, parser, producer,
                           CheckpointStore(checkpoint_dir), from_end=from_end,
                           poll_interval=poll_interval)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, follower.stop)
    metrics = await serve_hook_metrics(metrics_listen,
                                       HookMetrics(relay_id, producer=producer, source=follower))
    await producer.start()
    log.info("tail: following %s as relay %s -> %s (%s)", ", ".join(files), relay_id, topic,
             bootstrap)
    try:
        await follower.run()
    finally:
        follower.close()
        await producer.stop()
        await metrics.stop()
        s = follower.stats
        q = parser.queue.stats
        log.info("tail: stopped after %d lines, %d events (%d delivery events; queue ids: %d "
                 "remembered, %d evicted full, %d evicted by age, %d delivery lines of unknown "
                 "ids)", s.lines, s.events, s.deliveries, q.remembered, q.evicted_full,
                 q.evicted_age, q.unattributed)
