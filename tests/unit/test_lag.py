"""agents/lag.py: processing time from the sensor's in/out calls, and consumer lag from end
offsets against what was processed (a stand-in for Faust's consumer: only the calls used)."""

from __future__ import annotations

from typing import Any

from faust.types import TP

from relayguard.agents.lag import ProcessingSensor, update_lag
from relayguard.agents.metrics import Metrics

ROLES = {"p.events": "events", "p.events.by-ip": "events_by_ip", "p.locks": "locks"}
WATCHED = {"p.events", "p.events.by-ip"}


class FakeConsumer:
    def __init__(self, ends: dict[TP, int], positions: dict[TP, int],
                 fail: bool = False) -> None:
        self.ends, self.positions, self.fail = ends, positions, fail

    def assignment(self) -> set[TP]:
        return set(self.ends)

    async def highwaters(self, *tps: TP) -> dict[TP, int]:
        if self.fail:
            raise ConnectionError("broker away")
        return {tp: self.ends[tp] for tp in tps}

    async def position(self, tp: TP) -> int:
        return self.positions[tp]


def _sensor() -> tuple[ProcessingSensor, Metrics]:
    m = Metrics()
    return ProcessingSensor(m, ROLES), m


def test_sensor_times_each_record_by_topic_role() -> None:
    s, m = _sensor()
    tp = TP("p.events", 0)
    state: Any = s.on_stream_event_in(tp, 41, None, None)
    s.on_stream_event_out(tp, 41, None, None, state)
    s.on_stream_event_out(TP("p.locks", 0), 3, None, None, s.on_stream_event_in(
        TP("p.locks", 0), 3, None, None))
    assert m.count("event_processing_seconds", topic="events") == 1
    assert m.count("event_processing_seconds", topic="locks") == 1
    assert s.next_offset[tp] == 42


async def test_lag_is_end_minus_next_to_process_per_watched_partition() -> None:
    s, m = _sensor()
    e0, e1, ip0, locks = (TP("p.events", 0), TP("p.events", 1), TP("p.events.by-ip", 0),
                          TP("p.locks", 0))
    s.next_offset[e0] = 90  # processed up to offset 89
    consumer = FakeConsumer({e0: 100, e1: 50, ip0: 7, locks: 999},
                            {e0: 100, e1: 45, ip0: 7, locks: 0})
    await update_lag(consumer, s, WATCHED, m)
    assert m.gauge("consumer_lag", topic="events", partition="0") == 10
    assert m.gauge("consumer_lag", topic="events", partition="1") == 5  # nothing processed yet
    assert m.gauge("consumer_lag", topic="events_by_ip", partition="0") == 0
    assert m.gauge("consumer_lag", topic="locks", partition="0") is None  # not watched

    del consumer.ends[e1]  # partition revoked: its series goes
    await update_lag(consumer, s, WATCHED, m)
    assert m.gauge("consumer_lag", topic="events", partition="1") is None


async def test_a_failed_query_keeps_the_last_values_and_is_counted() -> None:
    s, m = _sensor()
    e0 = TP("p.events", 0)
    await update_lag(FakeConsumer({e0: 10}, {e0: 4}), s, WATCHED, m)
    await update_lag(FakeConsumer({e0: 10}, {e0: 4}, fail=True), s, WATCHED, m)
    assert m.gauge("consumer_lag", topic="events", partition="0") == 6
    assert m.value("lag_queries_failed_total") == 1


def test_a_rebalance_forgets_processed_offsets() -> None:
    s, _ = _sensor()
    s.next_offset[TP("p.events", 0)] = 5
    s.on_rebalance_start(None)
    assert not s.next_offset
