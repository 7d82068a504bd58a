"""Hook-side metrics in Prometheus text format: policy answers, the event producer and its
spool, the lock book and how far the lock follower is behind the lock topic.

A prometheus_client collector reads the stats the hook's parts already keep (ServerStats,
ProducerStats, LockFollower counters) when scraped, so the hot paths gain no work. Collection
runs on the hook's event loop (relay/metrics_http.py), never in another thread.

The lock-topic lag needs the follower's consumer: it reads `LockFollower._consumer` (aiokafka,
no group) for the assigned partitions' positions and high-water marks; while there is none
(Kafka away, or starting) the lag series is absent and lock_follower_connected is 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import prometheus_client
from prometheus_client import CollectorRegistry
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from relayguard.relay.lock_follower import LockFollower
    from relayguard.relay.policy_server import PolicyServer
    from relayguard.relay.producer import EventProducer

log = logging.getLogger(__name__)
PREFIX = "relayguard_hook_"
# generate_latest() writes the classic text format (legacy names); say so, as older servers expect
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
PRODUCER_STATES = ("starting", "ok", "spooling", "spool_full", "stopped")
POSITION_TIMEOUT = 1.0


class HookMetrics(Collector):
    def __init__(self, relay_id: str, *, server: PolicyServer | None = None,
                 producer: EventProducer | None = None, follower: LockFollower | None = None,
                 source: Any = None, clock: Callable[[], float] = time.time) -> None:
        """`source`: a log/journal follower whose `stats` has `events` and `lines` or
        `entries` (hook tail, hook journal)."""
        self.relay_id = relay_id
        self.server = server
        self.producer = producer
        self.follower = follower
        self.source = source
        self.clock = clock
        self.last_applied_at: float | None = None  # our clock, when a command was last applied
        self.newest_issued_at: float | None = None  # issued_at of the newest command applied
        self.lock_lag: dict[int, int] = {}  # lock-topic partition -> records not yet read
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(self)
        self._watch: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Follow applied lock commands (for the seconds since the newest one)."""
        if self.follower is not None and self._watch is None:
            self._watch = asyncio.create_task(self._follow_applied(), name="hook-metrics-locks")
            await asyncio.sleep(0)  # let it subscribe before the follower applies anything

    async def stop(self) -> None:
        if self._watch is not None:
            self._watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watch
            self._watch = None

    async def render(self) -> bytes:
        await self.refresh()
        return prometheus_client.generate_latest(self.registry)

    async def refresh(self) -> None:
        """What needs awaiting before a collect: the follower's read positions."""
        self.lock_lag = {}
        consumer = getattr(self.follower, "_consumer", None)
        if consumer is None:
            return
        try:
            for tp in sorted(consumer.assignment()):
                end = consumer.highwater(tp)
                pos = await asyncio.wait_for(consumer.position(tp), POSITION_TIMEOUT)
                if end is not None and pos is not None:
                    self.lock_lag[tp.partition] = max(0, end - pos)
        except Exception as exc:  # reconnecting, reassigning: no lag figure this scrape
            log.debug("lock-topic lag not available: %r", exc)
            self.lock_lag = {}

    async def _follow_applied(self) -> None:
        assert self.follower is not None
        async for cmd in self.follower.watch():
            self.last_applied_at = self.clock()
            if self.newest_issued_at is None or cmd.issued_at > self.newest_issued_at:
                self.newest_issued_at = cmd.issued_at

    # ---- prometheus_client collector -------------------------------------------------------

    def collect(self) -> Iterator[Metric]:
        yield _gauge("info", "Always 1; the relay id as a label", 1, relay_id=self.relay_id)
        if self.server is not None:
            yield from self._policy()
        if self.producer is not None:
            yield from self._producer()
        if self.follower is not None:
            yield from self._locks()
        if self.source is not None:
            st = self.source.stats
            records = getattr(st, "lines", getattr(st, "entries", 0))
            yield _counter("source_records", "Log lines or journal entries read", records)
            yield _counter("source_events", "Login events parsed from them", st.events)

    def _policy(self) -> Iterator[Metric]:
        assert self.server is not None
        st = self.server.stats
        requests = CounterMetricFamily(
            PREFIX + "policy_requests", "Policy requests answered, by action verb (DUNNO, "
            "REJECT, DEFER, ...)", labels=["action"])
        requests.add_metric(["DUNNO"], st.requests - st.rejected)
        for verb, n in sorted(st.refused_by.items()):
            requests.add_metric([verb], n)
        yield requests
        yield _counter("policy_protocol_errors", "Policy connections closed for a protocol "
                       "error", st.protocol_errors)
        closed = CounterMetricFamily(PREFIX + "policy_connections_closed", "Policy connections "
                                     "closed by the hook, by reason", labels=["reason"])
        for reason, n in (("evicted", st.evicted), ("deadline", st.deadline_closed),
                          ("idle", st.idle_closed), ("slow_reader", st.slow_readers_closed)):
            closed.add_metric([reason], n)
        yield closed
        yield _gauge("policy_connections_open", "Open policy connections", st.open_connections)
        yield _counter("policy_send_events", "Send events handed to the producer by the policy "
                       "service", st.events_published)

    def _producer(self) -> Iterator[Metric]:
        assert self.producer is not None
        st = self.producer.stats
        yield _counter("events_accepted", "Events taken by the producer (written ahead to the "
                       "spool)", st.accepted)
        sent = CounterMetricFamily(PREFIX + "events_sent", "Events Kafka acknowledged, by path "
                                   "(direct, or replayed after waiting in the spool)",
                                   labels=["path"])
        sent.add_metric(["direct"], st.sent)
        sent.add_metric(["replayed"], st.replayed)
        yield sent
        refused = CounterMetricFamily(PREFIX + "events_refused", "Events refused and lost, by "
                                      "reason (spool_full, spool_error)", labels=["reason"])
        refused.add_metric(["spool_full"], st.dropped_full)
        refused.add_metric(["spool_error"], st.spool_errors)
        yield refused
        yield _counter("events_spooled", "Accepted events that had to wait on disk", st.spooled)
        yield _counter("producer_send_failures", "Failed sends to Kafka (retried)",
                       st.send_failures)
        yield _gauge("spool_bytes", "Bytes in the spool not yet acknowledged by Kafka",
                     st.spool_bytes)
        yield _gauge("spool_records", "Events accepted and not yet acknowledged by Kafka",
                     st.queue_depth)
        yield _gauge("spool_max_bytes", "The spool's cap (--spool-max-mb)",
                     self.producer.spool_max_bytes)
        state = GaugeMetricFamily(PREFIX + "producer_state", "1 for the producer's current "
                                  "state", labels=["state"])
        for name in PRODUCER_STATES:
            state.add_metric([name], 1 if st.state == name else 0)
        yield state

    def _locks(self) -> Iterator[Metric]:
        assert self.follower is not None
        f = self.follower
        now = self.clock()
        yield _gauge("lock_book_subjects", "Subjects in the lock book (latest command each)",
                     len(f.book))
        yield _gauge("lock_book_active", "Locks in force now", sum(1 for _ in f.book.active(now)))
        yield _counter("lock_commands_applied", "Lock commands applied (and acked)", f.applied)
        yield _counter("lock_records_skipped", "Lock-topic records not applied (refused, "
                       "tombstone, dry-run or not newer)", f.skipped)
        refused = CounterMetricFamily(PREFIX + "signed_records_refused", "Lock records not "
                                      "obeyed, by reason", labels=["reason"])
        for reason, n in sorted(f.refused.items()):
            refused.add_metric([reason], n)
        yield refused
        yield _gauge("lock_follower_ready", "1 once the lock topic was read up to its end "
                     "offsets seen at start", 1 if f.is_ready else 0)
        yield _gauge("lock_follower_connected", "1 while the lock follower has a Kafka "
                     "consumer", 0 if getattr(f, "_consumer", None) is None else 1)
        lag = GaugeMetricFamily(PREFIX + "lock_topic_lag", "Lock-topic records not yet read "
                                "(high-water mark minus position), per partition",
                                labels=["partition"])
        for partition, n in sorted(self.lock_lag.items()):
            lag.add_metric([str(partition)], n)
        yield lag
        since = GaugeMetricFamily(PREFIX + "lock_last_applied_age_seconds", "Seconds since this "
                                  "hook last applied a lock command (absent before the first)")
        if self.last_applied_at is not None:
            since.add_metric([], max(0.0, now - self.last_applied_at))
        yield since
        newest = GaugeMetricFamily(PREFIX + "lock_newest_issued_timestamp_seconds", "issued_at "
                                   "of the newest lock command applied since start")
        if self.newest_issued_at is not None:
            newest.add_metric([], self.newest_issued_at)
        yield newest


def _counter(name: str, help_text: str, value: float) -> Metric:
    return CounterMetricFamily(PREFIX + name, help_text, value=value)


def _gauge(name: str, help_text: str, value: float, **labels: str) -> Metric:
    family = GaugeMetricFamily(PREFIX + name, help_text, labels=list(labels))
    family.add_metric(list(labels.values()), value)
    return family
