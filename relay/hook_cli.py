"""`relayguard hook ...`: the relay-side commands.

`hook postfix` runs the Postfix policy service, the lock follower and the event producer in one
process. Postfix main.cf, failing open if relayguard is down:

    smtpd_recipient_restrictions = ..., check_policy_service {
        inet:127.0.0.1:10040, timeout=5s, default_action=DUNNO }, ...
    smtpd_end_of_data_restrictions = check_policy_service {
        inet:127.0.0.1:10040, timeout=5s, default_action=DUNNO }

(the second line gives send events with the real size and recipient count).
`hook tail` (relay/tail_cli.py, the mail-log follower) and `hook journal` (relay/journal_cli.py,
the systemd journal follower) are mounted here.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
from collections.abc import Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from relayguard.foundation.cli_errors import friendly_errors

if TYPE_CHECKING:
    from relayguard.relay.policy_protocol import DecisionConfig
    from relayguard.relay.policy_server import ListenAddress

log = logging.getLogger(__name__)


@click.group("hook")
def hook() -> None:
    """Relay-side hooks: enforce locks on a relay and publish its events to Kafka."""


@hook.command("postfix")
@click.option("--listen", default="inet:127.0.0.1:10040", show_default=True,
              help="inet:HOST:PORT or unix:PATH, as in Postfix's check_policy_service")
@click.option("--relay-id", default=None, help="this relay's id [default: RELAYGUARD_RELAY_ID]")
@click.option("--bootstrap", default=None,
              help="Kafka bootstrap servers [default: RELAYGUARD_BOOTSTRAP_SERVERS]")
@click.option("--spool-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="disk spool while Kafka is down [default: DATA_DIR/hook-spool]")
@click.option("--spool-max-mb", default=1024, show_default=True, type=click.IntRange(1),
              help="spool cap; beyond it new events are refused and logged as ERROR")
@click.option("--reject-text", default="Account locked by relayguard, contact your mail "
              "administrator", show_default=True, help="text after 'REJECT 5.7.1 ' for locks")
@click.option("--throttle-action", default="DEFER 4.7.1 Sending rate limited by relayguard, "
              "try again later", show_default=True,
              help="access(5) action for locks with an expiry (throttles)")
@click.option("--ip-locks-unauthenticated", is_flag=True,
              help="also refuse locked client IPs in unauthenticated sessions")
@click.option("--ready-timeout", default=15.0, show_default=True, type=float,
              help="seconds to wait for the locks topic to be read before answering anyway")
@click.option("--max-connections", default=2048, show_default=True, type=click.IntRange(1),
              help="open policy connections at most (lowered to fit the open-file limit); "
              "beyond it the longest-idle connection is closed")
@click.option("--request-deadline", default=10.0, show_default=True,
              type=click.FloatRange(0.1), help="seconds from a request's first byte to its "
              "empty line; slower requests are closed without an answer")
@click.option("--max-request-kb", default=16, show_default=True, type=click.IntRange(1, 1024),
              help="bytes (KiB) one request may take; larger ones are closed")
@click.option("--idle-timeout", default=600.0, show_default=True, type=click.FloatRange(1),
              help="seconds an idle policy connection is kept")
@click.option("--metrics-listen", default=None, metavar="HOST:PORT",
              help="serve Prometheus metrics at http://HOST:PORT/metrics [default: off]")
@friendly_errors
def postfix(listen: str, relay_id: str | None, bootstrap: str | None, spool_dir: Path | None,
            spool_max_mb: int, reject_text: str, throttle_action: str,
            ip_locks_unauthenticated: bool, ready_timeout: float, max_connections: int,
            request_deadline: float, max_request_kb: int, idle_timeout: float,
            metrics_listen: str | None) -> None:
    """Run the Postfix policy service: refuse locked users, publish send events."""
    from relayguard.foundation.errors import ConfigError
    from relayguard.foundation.kafka_clients import aiokafka_options
    from relayguard.foundation.settings import load_settings
    from relayguard.relay.log_throttle import throttle_aiokafka_logs
    from relayguard.relay.policy_protocol import DecisionConfig
    from relayguard.relay.policy_server import parse_listen, raise_nofile_limit

    throttle_aiokafka_logs()
    soft, hard = raise_nofile_limit()
    log.info("open-file limit: %d (hard %d)", soft, hard)
    settings = load_settings()
    try:
        config = DecisionConfig(reject_text=reject_text, throttle_action=throttle_action,
                                ip_locks_unauthenticated=ip_locks_unauthenticated)
    except ValueError as exc:
        raise ConfigError(str(exc), "--reject-text/--throttle-action must be one line") from None
    asyncio.run(_run_postfix(
        listen=parse_listen(listen), relay_id=relay_id or settings.relay_id,
        bootstrap=bootstrap or settings.bootstrap_servers,
        spool_dir=spool_dir or settings.data_dir / "hook-spool",
        spool_max_bytes=spool_max_mb << 20, config=config,
        locks_topic=settings.topics.locks, acks_topic=settings.topics.lock_acks,
        events_topic=settings.topics.events, ready_timeout=ready_timeout,
        kafka_options=aiokafka_options(settings.kafka),
        limits=ServerLimits(max_connections, request_deadline, max_request_kb << 10,
                            idle_timeout),
        metrics_listen=metrics_listen,
    ))


@dataclass(frozen=True, slots=True)
class ServerLimits:
    max_connections: int
    request_deadline: float
    max_request_bytes: int
    idle_timeout: float


async def _run_postfix(*, listen: ListenAddress, relay_id: str, bootstrap: str,
                       spool_dir: Path, spool_max_bytes: int, config: DecisionConfig,
                       locks_topic: str,
                       acks_topic: str, events_topic: str, ready_timeout: float,
                       limits: ServerLimits,
                       kafka_options: dict[str, Any] | None = None,
                       metrics_listen: str | None = None) -> None:
    from relayguard.relay.lock_follower import LockFollower
    from relayguard.relay.metrics import HookMetrics
    from relayguard.relay.metrics_http import serve_hook_metrics
    from relayguard.relay.policy_server import PolicyServer
    from relayguard.relay.producer import EventProducer

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    producer = EventProducer(bootstrap, events_topic, spool_dir, spool_max_bytes=spool_max_bytes,
                             kafka_options=kafka_options)
    follower = LockFollower(bootstrap, locks_topic, acks_topic, relay_id,
                            kafka_options=kafka_options)
    server = PolicyServer(listen, follower.book, config, relay_id,
                          publish=producer.publish_nowait,
                          max_connections=limits.max_connections,
                          request_deadline=limits.request_deadline,
                          max_request_bytes=limits.max_request_bytes,
                          idle_timeout=limits.idle_timeout)
    metrics = await serve_hook_metrics(metrics_listen, HookMetrics(
        relay_id, server=server, producer=producer, follower=follower))
    log.info("relay %s: Kafka %s, locks from %s, events to %s, spool %s", relay_id, bootstrap,
             locks_topic, events_topic, spool_dir)
    await producer.start()
    await follower.start()
    try:
        if not await follower.ready(ready_timeout):
            log.warning("locks topic not read within %.0fs: answering now with the %d locks "
                        "known; the rest apply as soon as they arrive", ready_timeout,
                        len(follower.book))
        await server.start()
        # Start-up objects (aiokafka, click, the lock book) never die: keep them out of the
        # cyclic collector, whose full passes over them otherwise pause answers for tens of ms.
        gc.freeze()
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 60)
            st, ps = server.stats, producer.stats
            log.info("status: %d requests (%d refused), %d open connections (%d evicted, %d "
                     "past deadline), %d locks known; events accepted %d, sent %d, spooled %d, "
                     "replayed %d, refused %d, unacknowledged %d, producer %s",
                     st.requests, st.rejected, st.open_connections, st.evicted,
                     st.deadline_closed, len(follower.book), ps.accepted, ps.sent, ps.spooled,
                     ps.replayed, ps.dropped_full, ps.queue_depth, ps.state)
        log.info("stopping: closing the policy service, flushing events")
    finally:
        await _stop_step("policy service", server.stop())
        await _stop_step("Kafka event producer", producer.stop())
        await _stop_step("lock follower", follower.stop())
        await _stop_step("metrics endpoint", metrics.stop())
    log.info("stopped")


async def _stop_step(what: str, step: Coroutine[Any, Any, None]) -> None:
    """Run one shutdown step; its failure must not skip the next ones. aiokafka's consumer
    stop() can leak its fetcher's CancelledError while the broker is away: that is not ours."""
    try:
        await step
    except asyncio.CancelledError:
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            raise
        log.warning("stopping the %s: the Kafka client was cancelled internally; ignored", what)
    except Exception:
        log.exception("stopping the %s failed; going on with shutdown", what)


def _mount_tail() -> None:
    from relayguard.relay.journal_cli import journal  # the systemd journal follower
    from relayguard.relay.tail_cli import tail  # the mail-log follower, in a module of its own

    hook.add_command(tail)
    hook.add_command(journal)


_mount_tail()
