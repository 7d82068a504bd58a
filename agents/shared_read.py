"""One read shared by every caller that asks at about the same time.

The operator API's reads are open (no token), and each one reads a whole compacted topic from
Kafka: without sharing, anyone who can reach the port makes the worker open a consumer per
request. Callers that arrive while a read is running wait for that read; a result is reused for
`fresh_seconds` (the API says what is locked "now": a second old is still now); a failed read
is never reused, so the next caller tries again.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class SharedRead(Generic[T]):
    def __init__(self, read: Callable[[], Awaitable[T]], fresh_seconds: float = 1.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._read = read
        self._fresh = fresh_seconds
        self._clock = clock
        self._value: tuple[float, T] | None = None
        self._running: asyncio.Future[T] | None = None
        self.reads = 0  # how many times the source was actually read

    def invalidate(self) -> None:
        """After a write: the next caller reads again (a read already running is still shared,
        since it may have started before the write)."""
        self._value = None

    async def get(self) -> T:
        if self._value is not None and self._clock() - self._value[0] < self._fresh:
            return self._value[1]
        if self._running is None:
            self._running = asyncio.ensure_future(self._fetch())
        # shield: one caller giving up (a client hanging up) must not cancel the others' read
        return await asyncio.shield(self._running)

    async def _fetch(self) -> T:
        started = self._clock()
        try:
            self.reads += 1
            value = await self._read()
            self._value = (started, value)
            return value
        finally:
            self._running = None
