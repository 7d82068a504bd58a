"""agents/metrics.py: the counter API the agents use, histograms and gauges, and text that
prometheus_client's own parser reads back."""

from __future__ import annotations

import time

import pytest

from relayguard.agents.metrics import HELP, PREFIX, Metrics
from tests.metrics_text import families, value


def test_counters_keep_their_api_and_render_as_before() -> None:
    m = Metrics()
    m.inc("events_total", outcome="processed")
    m.inc("events_total", 2, outcome="processed")
    m.inc("rerouted_total")
    m.inc("signed_records_refused_total", source="locks", reason="unsigned")
    assert m.value("events_total", outcome="processed") == 3
    assert m.value("events_total", outcome="duplicate") == 0
    text = m.render()
    # whole numbers stay whole; labels sorted, as regex-reading scripts expect
    assert 'relayguard_worker_events_total{outcome="processed"} 3\n' in text
    assert "relayguard_worker_rerouted_total 1\n" in text
    assert ('relayguard_worker_signed_records_refused_total{reason="unsigned",source="locks"} 1'
            in text)
    fams = families(text)
    for name in HELP:  # every counter has HELP and TYPE even before its first use
        fam = fams[PREFIX + name.removesuffix("_total")]
        assert fam.type == "counter" and fam.documentation == HELP[name]
    assert value(fams, PREFIX + "events_total", outcome="processed") == 3


def test_unknown_names_and_wrong_labels_are_errors() -> None:
    m = Metrics()
    with pytest.raises(KeyError):
        m.inc("no_such_total")
    with pytest.raises(ValueError):
        m.observe("event_to_lock_seconds", 1.0, detector="volume")  # declared: action


def test_histograms_and_gauges() -> None:
    m = Metrics()
    m.observe("lock_to_ack_seconds", 0.3, action="lock", ack="first")
    m.observe("lock_to_ack_seconds", 0.7, action="lock", ack="first")
    m.elapsed("event_to_lock_seconds", time.time() + 3600, action="lock")  # clock ahead: 0
    m.set("consumer_lag", 5, topic="events", partition="0")
    m.set("consumer_lag", 7, topic="events", partition="1")
    assert m.count("lock_to_ack_seconds", action="lock", ack="first") == 2
    assert m.count("lock_to_ack_seconds", action="lock", ack="last") == 0
    fams = families(m.render())
    ack = PREFIX + "lock_to_ack_seconds"
    assert fams[ack].type == "histogram"
    assert value(fams, ack + "_bucket", action="lock", ack="first", le="0.5") == 1
    assert value(fams, ack + "_bucket", action="lock", ack="first", le="+Inf") == 2
    assert value(fams, ack + "_sum", action="lock", ack="first") == pytest.approx(1.0)
    assert value(fams, PREFIX + "event_to_lock_seconds_sum", action="lock") == 0
    assert value(fams, PREFIX + "consumer_lag", topic="events", partition="1") == 7
    m.clear("consumer_lag")
    assert value(families(m.render()), PREFIX + "consumer_lag", topic="events",
                 partition="1") is None
    assert not any(s.name.endswith("_created") for f in fams.values() for s in f.samples)


def test_each_metrics_object_counts_alone() -> None:
    a, b = Metrics(), Metrics()
    a.inc("alerts_total", detector="volume")
    a.observe("event_processing_seconds", 0.001, topic="events")
    assert b.value("alerts_total", detector="volume") == 0
    assert b.count("event_processing_seconds", topic="events") == 0
