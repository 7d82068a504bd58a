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
from relayguard.relay.follower_options import batch_records_option

if TYPE_CHECKING:
    from relayguard.relay.policy_protocol import DecisionConfig
    from relayguard.relay.policy_server import ListenAddress
    from relayguard.stream.signed import Verifier
    from relayguard.stream.user_names import UserNameMode

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
@click.option("--ready-timeout", default=None, type=float, hidden=True,
              help="deprecated and ignored: the policy service answers at once")
@click.option("--lock-book", "lock_book_path", type=click.Path(dir_okay=False, path_type=Path),
              default=None, help="the lock book saved on every applied command and loaded "
              "(verified) at start [default: DATA_DIR/hook-lock-book.json]")
@click.option("--http", "http_listen", default=None, metavar="HOST:PORT",
              help="serve GET /ready (503 while catching up with the locks topic, 200 after) "
              "and /status here, e.g. 127.0.0.1:10041 [default: off]")
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
@batch_records_option()
@friendly_errors
def postfix(listen: str, relay_id: str | None, bootstrap: str | None, spool_dir: Path | None,
            spool_max_mb: int, reject_text: str, throttle_action: str,
            ip_locks_unauthenticated: bool, ready_timeout: float | None,
            lock_book_path: Path | None, http_listen: str | None, max_connections: int,
            request_deadline: float, max_request_kb: int, idle_timeout: float,
            metrics_listen: str | None, batch_records: bool | None) -> None:
    """Run the Postfix policy service: refuse locked users, publish send events.

    It listens at once and answers from the lock book saved on disk (verified with the keyring)
    while it catches up with the locks topic; /ready on --http says when it has."""
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
    if ready_timeout is not None:
        log.warning("--ready-timeout is deprecated and ignored: the policy service answers at "
                    "once from the saved lock book while it catches up (see /ready on --http)")
    http = _parse_http(http_listen) if http_listen else None
    try:
        config = DecisionConfig(reject_text=reject_text, throttle_action=throttle_action,
                                ip_locks_unauthenticated=ip_locks_unauthenticated,
                                user_names=settings.user_names)
    except ValueError as exc:
        raise ConfigError(str(exc), "--reject-text/--throttle-action must be one line") from None
    from relayguard.foundation.signing import keyring_from_settings

    keyring = keyring_from_settings(settings)  # no verify key: ConfigError, before listening
    asyncio.run(_run_postfix(
        listen=parse_listen(listen), relay_id=relay_id or settings.relay_id,
        bootstrap=bootstrap or settings.bootstrap_servers,
        spool_dir=spool_dir or settings.data_dir / "hook-spool",
        spool_max_bytes=spool_max_mb << 20, config=config,
        locks_topic=settings.topics.locks, acks_topic=settings.topics.lock_acks,
        events_topic=settings.topics.events,
        lock_book=LockBookConfig(lock_book_path or settings.data_dir / "hook-lock-book.json",
                                 keyring, settings.signing_max_skew_seconds,
                                 settings.user_names),
        http=http, kafka_options=aiokafka_options(settings.kafka),
        limits=ServerLimits(max_connections, request_deadline, max_request_kb << 10,
                            idle_timeout),
        metrics_listen=metrics_listen,
        batch_records=settings.relay_batch_records if batch_records is None else batch_records,
    ))


def _parse_http(text: str) -> tuple[str, int]:
    from relayguard.foundation.errors import ConfigError

    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ConfigError(f"--http {text!r} is not HOST:PORT", "e.g. --http 127.0.0.1:10041")
    return host.strip("[]") or "127.0.0.1", int(port)


@dataclass(frozen=True, slots=True)
class LockBookConfig:
    path: Path
    keyring: Verifier
    max_skew: float
    user_names: UserNameMode


@dataclass(frozen=True, slots=True)
class ServerLimits:
    max_connections: int
    request_deadline: float
    max_request_bytes: int
    idle_timeout: float


async def _run_postfix(*, listen: ListenAddress, relay_id: str, bootstrap: str,
                       spool_dir: Path, spool_max_bytes: int, config: DecisionConfig,
                       locks_topic: str, acks_topic: str, events_topic: str,
                       lock_book: LockBookConfig, limits: ServerLimits,
                       http: tuple[str, int] | None = None,
                       kafka_options: dict[str, Any] | None = None,
                       metrics_listen: str | None = None, batch_records: bool = True) -> None:
    import time

    from relayguard.relay.lock_book import LockBook
    from relayguard.relay.lock_book_store import LockBookStore
    from relayguard.relay.lock_follower import LockFollower
    from relayguard.relay.metrics import HookMetrics
    from relayguard.relay.metrics_http import serve_hook_metrics
    from relayguard.relay.policy_server import PolicyServer
    from relayguard.relay.producer import EventProducer
    from relayguard.relay.ready_http import ReadyServer

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    # 1. The saved lock book, verified entry by entry: what we enforce until Kafka answers.
    book = LockBook(lock_book.user_names)
    store = LockBookStore(lock_book.path, lock_book.keyring, lock_book.max_skew)
    loaded = store.load(book)
    active = sum(1 for _ in book.active(time.time()))
    if loaded.problem is None:
        age = "" if loaded.saved_at is None else f", saved {time.time() - loaded.saved_at:.0f}s ago"
        log.info("lock book %s: %d subjects (%d locks active)%s, %d entries refused",
                 lock_book.path, loaded.subjects, active, age, sum(loaded.refused.values()))
    else:
        log.info("lock book %s: %s", lock_book.path, loaded.problem)
    producer = EventProducer(bootstrap, events_topic, spool_dir, spool_max_bytes=spool_max_bytes,
                             kafka_options=kafka_options, batch_records=batch_records)
    follower = LockFollower(bootstrap, locks_topic, acks_topic, relay_id, book,
                            kafka_options=kafka_options, keyring=lock_book.keyring,
                            max_skew=lock_book.max_skew, store=store)
    server = PolicyServer(listen, book, config, relay_id,
                          publish=producer.publish_nowait,
                          max_connections=limits.max_connections,
                          request_deadline=limits.request_deadline,
                          max_request_bytes=limits.max_request_bytes,
                          idle_timeout=limits.idle_timeout)

    def status() -> dict[str, Any]:
        return {"ready": follower.is_ready,
                "state": "serving" if follower.is_ready else "catching-up",
                "relay_id": relay_id, "locks_known": len(book),
                "locks_active": sum(1 for _ in book.active(time.time())),
                "loaded_from_disk": loaded.subjects, "applied": follower.applied,
                "refused": sum(follower.refused.values()) + sum(loaded.refused.values()),
                "lock_book_saves": store.saves, "lock_book_save_failures":
                follower.save_failures, "requests": server.stats.requests}

    ready_http = ReadyServer(*http, status) if http is not None else None
    metrics = await serve_hook_metrics(metrics_listen, HookMetrics(
        relay_id, server=server, producer=producer, follower=follower))
    log.info("relay %s: Kafka %s, locks from %s, events to %s, spool %s", relay_id, bootstrap,
             locks_topic, events_topic, spool_dir)
    caught_up: asyncio.Task[None] | None = None
    try:
        # 2. Listen at once: Postfix gets answers from the book we have, never a refused
        # connection (its default_action) while Kafka is slow or away.
        await server.start()
        log.info("policy service answering on %s; CATCHING UP with %s: enforcing the %d locks "
                 "of the saved lock book until it is read", listen, locks_topic, active)
        if ready_http is not None:
            await ready_http.start()
        # 3. Then Kafka, in the background: neither start awaits the broker.
        await producer.start()
        await follower.start()

        async def report_caught_up() -> None:
            await follower.ready()
            log.info("caught up with %s: serving with %d subjects known, %d locks active",
                     locks_topic, len(book), sum(1 for _ in book.active(time.time())))

        caught_up = asyncio.create_task(report_caught_up(), name="relayguard-caught-up")
        # Start-up objects (aiokafka, click, the lock book) never die: keep them out of the
        # cyclic collector, whose full passes over them otherwise pause answers for tens of ms.
        gc.freeze()
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 60)
            st, ps = server.stats, producer.stats
            log.info("status: %s; %d requests (%d refused), %d open connections (%d evicted, "
                     "%d past deadline), %d locks known; events accepted %d, sent %d, spooled "
                     "%d, replayed %d, refused %d, unacknowledged %d, producer %s",
                     "serving" if follower.is_ready else "CATCHING UP with the locks topic",
                     st.requests, st.rejected, st.open_connections, st.evicted,
                     st.deadline_closed, len(book), ps.accepted, ps.sent, ps.spooled,
                     ps.replayed, ps.dropped_full, ps.queue_depth, ps.state)
        log.info("stopping: closing the policy service, flushing events")
    finally:
        if caught_up is not None:
            caught_up.cancel()
        if ready_http is not None:
            await _stop_step("readiness endpoint", ready_http.stop())
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
