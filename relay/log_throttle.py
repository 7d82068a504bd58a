"""Rate-limit a chatty library's log lines: during a Kafka outage aiokafka logs a connection
error per retry (tens a second); we let one line through every `interval` seconds and say how
many were held back."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable


class RateLimitFilter(logging.Filter):
    """One record per `interval` s passes (shared by every logger it is attached to); the
    next one to pass carries the count of those dropped meanwhile. `suppressed` is the total."""

    def __init__(self, interval: float = 5.0, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self.interval = interval
        self.clock = clock
        self.suppressed = 0
        self._since_last = 0
        self._next = float("-inf")

    def filter(self, record: logging.LogRecord) -> bool:
        now = self.clock()
        if now < self._next:
            self.suppressed += 1
            self._since_last += 1
            return False
        self._next = now + self.interval
        if self._since_last:
            # rendered now so a '%' in the note cannot upset the record's own formatting
            record.msg = (f"{record.getMessage()} [{self._since_last} similar line(s) from "
                          f"{record.name.split('.')[0]} suppressed]")
            record.args = None
            self._since_last = 0
        return True


def throttle_aiokafka_logs(interval: float = 5.0) -> RateLimitFilter:
    """Attach one RateLimitFilter to every aiokafka logger (a filter on a parent logger does
    not see its children's records, so each gets it). Idempotent."""
    import aiokafka  # noqa: F401  # creates its module loggers

    names = [n for n in logging.Logger.manager.loggerDict
             if n == "aiokafka" or n.startswith("aiokafka.")]
    base = logging.getLogger("aiokafka")
    existing = next((f for f in base.filters if isinstance(f, RateLimitFilter)), None)
    filt = existing or RateLimitFilter(interval)
    for name in names:
        logger = logging.getLogger(name)
        if filt not in logger.filters:
            logger.addFilter(filt)
    return filt
