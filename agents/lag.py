"""Processing time per record and consumer lag per partition of the events topics.

Processing time comes from a Faust sensor: a stream calls `on_stream_event_in` when it hands an
event to the agent and `on_stream_event_out` when the agent asks for the next one, so the span
between the two is the agent's work on that record, whatever the agent's code looks like.

Lag = end offset - next offset to process, per assigned partition of the events and by-IP
topics. The end offsets come from one ListOffsets query per LAG_INTERVAL (bounded cost, fresh
even when the fetcher is paused); the next offset to process is the sensor's last processed
offset + 1, or the consumer's position while nothing was processed since the assignment.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import faust
from faust.sensors import Sensor
from faust.types import TP

from relayguard.agents.metrics import Metrics
from relayguard.foundation.settings import Settings

log = logging.getLogger("relayguard.worker")
LAG_INTERVAL = 5.0  # seconds between end-offset queries
LAG_QUERY_TIMEOUT = 5.0


def topic_roles(settings: Settings) -> dict[str, str]:
    """Topic name -> the stable label the dashboards use (names carry a deployment prefix)."""
    t = settings.topics
    return {t.events: "events", t.events_by_ip: "events_by_ip", t.control: "control",
            t.locks: "locks", t.lock_acks: "lock_acks", t.alerts: "alerts"}


class ProcessingSensor(Sensor):
    def __init__(self, metrics: Metrics, roles: dict[str, str], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.metrics = metrics
        self.roles = roles
        self.next_offset: dict[TP, int] = {}  # per partition: last processed offset + 1
        self._by_topic: dict[str, Any] = {}

    def on_stream_event_in(self, tp: TP, offset: int, stream: Any, event: Any) -> dict[str, Any]:
        return {"t0": time.perf_counter()}

    def on_stream_event_out(self, tp: TP, offset: int, stream: Any, event: Any,
                            state: dict[str, Any] | None = None) -> None:
        if state is not None and "t0" in state:
            child = self._by_topic.get(tp.topic)
            if child is None:  # one labelled child per topic: no label lookup per record
                child = self.metrics.histograms["event_processing_seconds"].labels(
                    topic=self.roles.get(tp.topic, "other"))
                self._by_topic[tp.topic] = child
            child.observe(time.perf_counter() - state["t0"])
        if offset + 1 > self.next_offset.get(tp, -1):
            self.next_offset[tp] = offset + 1

    def on_rebalance_start(self, app: Any) -> dict[str, Any]:
        # Partitions may move: offsets processed before say nothing about the new owner's work.
        self.next_offset.clear()
        return {}


async def update_lag(consumer: Any, sensor: ProcessingSensor, watched: set[str],
                     metrics: Metrics) -> None:
    """Set the consumer_lag gauge for the assigned partitions of the `watched` topics."""
    tps = sorted(tp for tp in consumer.assignment() if tp.topic in watched)
    if not tps:
        metrics.clear("consumer_lag")
        return
    try:
        ends = await asyncio.wait_for(consumer.highwaters(*tps), LAG_QUERY_TIMEOUT)
    except Exception as exc:  # Kafka away: keep the last values, say so in a counter
        metrics.inc("lag_queries_failed_total")
        log.debug("consumer lag: end offsets not available: %r", exc)
        return
    lags: dict[TP, int] = {}
    for tp in tps:
        end = ends.get(tp)
        nxt = sensor.next_offset.get(tp)
        if nxt is None:
            try:
                nxt = await consumer.position(tp)
            except Exception:  # not yet positioned (assignment in progress)
                nxt = None
        if end is not None and nxt is not None:
            lags[tp] = max(0, end - nxt)
    metrics.clear("consumer_lag")  # drop partitions no longer assigned here
    for tp, lag in lags.items():
        metrics.set("consumer_lag", lag, topic=sensor.roles.get(tp.topic, "other"),
                    partition=str(tp.partition))


def register(app: faust.App, settings: Settings, metrics: Metrics) -> ProcessingSensor:
    sensor = ProcessingSensor(metrics, topic_roles(settings))
    app.sensors.add(sensor)
    watched = {settings.topics.events, settings.topics.events_by_ip}

    @app.timer(interval=LAG_INTERVAL)  # type: ignore[untyped-decorator]
    async def consumer_lag() -> None:
        try:
            await update_lag(app.consumer, sensor, watched, metrics)
        except Exception:  # never let the gauge stop the timer
            log.exception("consumer lag update failed")

    return sensor
