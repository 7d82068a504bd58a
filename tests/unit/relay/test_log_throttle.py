"""The aiokafka log throttle: one line per interval, with the count of those held back."""

from __future__ import annotations

import logging

import pytest

from relayguard.relay.log_throttle import RateLimitFilter, throttle_aiokafka_logs


def test_one_line_per_interval_with_the_suppressed_count(caplog: pytest.LogCaptureFixture) -> None:
    now = [100.0]
    filt = RateLimitFilter(5.0, clock=lambda: now[0])
    logger = logging.getLogger("test.throttle")
    logger.addFilter(filt)
    try:
        with caplog.at_level(logging.WARNING, "test.throttle"):
            for i in range(50):  # a 10 s flood, 5 lines a second
                logger.warning("Unable connect to node %d: 100%% refused", i)
                now[0] += 0.2
        lines = [r.getMessage() for r in caplog.records]
        assert len(lines) == 2, lines
        assert lines[0] == "Unable connect to node 0: 100% refused"
        assert lines[1].startswith("Unable connect to node 25: 100% refused [24 similar")
        assert filt.suppressed == 48
    finally:
        logger.removeFilter(filt)


def test_installed_on_every_aiokafka_logger() -> None:
    filt = throttle_aiokafka_logs()
    assert throttle_aiokafka_logs() is filt  # idempotent
    for name in ("aiokafka", "aiokafka.conn", "aiokafka.producer.sender", "aiokafka.cluster"):
        assert filt in logging.getLogger(name).filters, name
