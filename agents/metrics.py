"""Worker metrics on prometheus_client, exposed in Prometheus text format on /metrics.

Counters keep the small API every agent uses (`inc(name, amount=1, **labels)`, `value`): their
names and help texts are the HELP dict below, and any label set may be used, so a collector over
plain `collections.Counter`s renders them (a prometheus_client Counter would fix one label set
per name at first use). Histograms and gauges are declared with their label names; histograms are
prometheus_client Histograms. Each Metrics object has a registry of its own: tests create many.
"""

from __future__ import annotations

import re
import time
from collections import Counter
from collections.abc import Iterator

import prometheus_client
from prometheus_client import CollectorRegistry, Histogram
from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

# `*_created` series double the output and mean nothing for a worker that restarts freely.
prometheus_client.disable_created_metrics()  # type: ignore[no-untyped-call]

# generate_latest() writes the classic text format (legacy names); say so, as older servers expect
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
PREFIX = "relayguard_worker_"
HELP = {
    "events_total": "Events taken from the events topic, by outcome",
    "dead_letters_total": "Records sent to the dead-letter topic, by reason",
    "findings_total": "Findings raised by the detection core, by detector",
    "lock_commands_total": "Lock commands published, by action",
    "alerts_total": "Alerts published, by detector",
    "rerouted_total": "Events re-keyed because the relay used the wrong key",
    "slack_messages_total": "Alerts posted to Slack (or not), by outcome",
    # [signing]
    "signed_records_refused_total": "Lock commands and control records not obeyed, by source "
    "(locks, control) and reason (unsigned, bad_signature, unknown_key, version_out_of_range, "
    "time_out_of_range, tick_out_of_range, or a malformed-record reason)",

    # [ingest]
    "redeliveries_total": "Events whose source offset was already applied to the key's state "
                          "(at-least-once redelivery), dropped without effect, by kind",
    "offset_gaps_found_total": "Offsets the consumer skipped in a partition, by topic/partition",
    "offset_gaps_healed_total": "Skipped offsets re-read with a side consumer and processed, "
                                "by topic/partition",
    "offset_gaps_lost_total": "Skipped offsets that could not be re-read (deleted by retention?), "
                              "by topic/partition",
    "time_rejected_total": "Events dead-lettered because their time is implausible, by "
                           "direction (future/past)",

    # [worker store]
    "state_undecodable_total": "Table values that could not be decoded and were dropped "
    "(the key starts with empty state), by table",
    "changelog_records_recovered_total": "Table changelog records applied to the local store "
    "(recovery and standby copies), by table",

    # [worker batches]
    "event_batches_total": "Batch records (many events of one partition) taken from the events "
                           "topic; their events count in events_total one by one",

    # [metrics]
    "lock_acks_total": "Relay acks read from the lock-acks topic, by outcome (read, unreadable)",
    "lock_acks_missing_total": "Lock commands a relay seen recently had not acked within the "
    "ack wait (agents/ack_latency.py), by relay",
    "lag_queries_failed_total": "End-offset queries for the consumer-lag gauge that failed",
}

# Event times come from relays' clocks and ack times from the relays' clocks too: seconds, with
# buckets from "as fast as the loop" to "someone should look".
LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0,
                   300.0, 600.0, 1800.0)
PROCESSING_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                      0.25, 0.5, 1.0, 2.5)
# name -> (help, label names, buckets)
HISTOGRAMS: dict[str, tuple[str, tuple[str, ...], tuple[float, ...]]] = {
    "event_to_lock_seconds": (
        "From the event time of the event that tripped a detector (the command's issued_at) to "
        "the worker publishing the lock command, by action", ("action",), LATENCY_BUCKETS),
    "lock_to_ack_seconds": (
        "From a lock command's publication (its Kafka timestamp) to a relay applying it (the "
        "ack's applied_at): ack=first is the first relay, ack=last the last of the relays seen "
        "recently", ("action", "ack"), LATENCY_BUCKETS),
    "event_processing_seconds": (
        "Time a worker agent spends on one record, by input topic role (events, events_by_ip, "
        "control, locks, lock_acks, alerts)", ("topic",), PROCESSING_BUCKETS),
}
# name -> (help, label names)
GAUGES: dict[str, tuple[str, tuple[str, ...]]] = {
    "consumer_lag": ("Records in the topic not yet processed by this worker (end offset minus "
                     "the next offset to process), per assigned partition", ("topic", "partition")),
    "lock_commands_awaiting_acks": ("Lock commands published within the ack wait that not "
                                    "every relay seen recently has acked yet", ()),
    "relays_seen": ("Relays that acked a lock command within the relay memory "
                    "(agents/ack_latency.py)", ()),
}

Labels = tuple[tuple[str, str], ...]
_INTEGRAL = re.compile(r"^([^#\n].*) (-?\d+)\.0$", re.M)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.counters: dict[str, Counter[Labels]] = {name: Counter() for name in HELP}
        self.gauges: dict[str, dict[Labels, float]] = {name: {} for name in GAUGES}
        self.histograms = {
            name: Histogram(PREFIX + name, help_text, labelnames=labels, buckets=buckets,
                            registry=self.registry)
            for name, (help_text, labels, buckets) in HISTOGRAMS.items()
        }
        self.registry.register(_Plain(self))

    def inc(self, name: str, amount: int = 1, **labels: str) -> None:
        self.counters[name][tuple(sorted(labels.items()))] += amount

    def value(self, name: str, **labels: str) -> int:
        return self.counters[name][tuple(sorted(labels.items()))]

    def observe(self, name: str, value: float, **labels: str) -> None:
        """One observation for histogram `name`; the labels must be its declared ones."""
        hist = self.histograms[name]
        (hist.labels(**labels) if labels else hist).observe(value)

    def elapsed(self, name: str, since: float, **labels: str) -> None:
        """Observe the seconds from the wall-clock time `since` to now (0 if `since` is ahead:
        the clocks that stamped it are not ours)."""
        self.observe(name, max(0.0, time.time() - since), **labels)

    def set(self, name: str, value: float, **labels: str) -> None:
        self.gauges[name][tuple(sorted(labels.items()))] = value

    def clear(self, name: str) -> None:
        """Forget every sample of gauge `name` (e.g. partitions no longer assigned)."""
        self.gauges[name].clear()

    def gauge(self, name: str, **labels: str) -> float | None:
        return self.gauges[name].get(tuple(sorted(labels.items())))

    def count(self, name: str, **labels: str) -> float:
        """Observations so far in histogram `name` with exactly these labels."""
        for metric in self.histograms[name].collect():
            for s in metric.samples:
                if s.name.endswith("_count") and s.labels == labels:
                    return s.value
        return 0.0

    def render(self) -> str:
        # Whole numbers as before (`x_total{..} 3`, not `3.0`): same format for Prometheus, and
        # scripts and tests that read the counters with a regex keep working.
        text = prometheus_client.generate_latest(self.registry).decode()
        return _INTEGRAL.sub(r"\1 \2", text)


class _Plain(Collector):
    """The counters and gauges, from plain dicts."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def collect(self) -> Iterator[Metric]:
        for name, help_text in HELP.items():
            # exposed as `<family>_total` whether or not the HELP key ends in _total
            family = Metric(PREFIX + name.removesuffix("_total"), help_text, "counter")
            for labels, count in sorted(self.metrics.counters[name].items()):
                family.add_sample(family.name + "_total", dict(labels), count)
            yield family
        for name, (help_text, label_names) in GAUGES.items():
            gauge = GaugeMetricFamily(PREFIX + name, help_text, labels=label_names)
            for labels, value in sorted(self.metrics.gauges[name].items()):
                values = dict(labels)
                gauge.add_metric([values.get(k, "") for k in label_names], value)
            yield gauge
