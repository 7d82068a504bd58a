"""SharedRead: concurrent callers share one read; a fresh result is reused; failures are not."""

from __future__ import annotations

import asyncio

import pytest

from relayguard.agents.shared_read import SharedRead


class Source:
    def __init__(self) -> None:
        self.calls = 0
        self.gate = asyncio.Event()
        self.fail = False

    async def read(self) -> int:
        self.calls += 1
        await self.gate.wait()
        if self.fail:
            raise RuntimeError("kafka is down")
        return self.calls


async def test_concurrent_callers_share_one_read() -> None:
    src = Source()
    shared = SharedRead(src.read)
    waiting = [asyncio.create_task(shared.get()) for _ in range(50)]
    await asyncio.sleep(0)
    src.gate.set()
    assert await asyncio.gather(*waiting) == [1] * 50
    assert src.calls == 1


async def test_a_fresh_result_is_reused_and_a_stale_one_read_again() -> None:
    src, now = Source(), [100.0]
    src.gate.set()
    shared = SharedRead(src.read, fresh_seconds=1.0, clock=lambda: now[0])
    assert await shared.get() == 1
    now[0] += 0.5
    assert await shared.get() == 1
    now[0] += 0.6
    assert await shared.get() == 2
    shared.invalidate()
    assert await shared.get() == 3


async def test_a_failed_read_reaches_every_waiter_and_is_not_reused() -> None:
    src = Source()
    src.fail = True
    shared = SharedRead(src.read)
    waiting = [asyncio.create_task(shared.get()) for _ in range(3)]
    await asyncio.sleep(0)
    src.gate.set()
    results = await asyncio.gather(*waiting, return_exceptions=True)
    assert all(isinstance(r, RuntimeError) for r in results)
    src.fail = False
    assert await shared.get() == 2


async def test_one_caller_giving_up_does_not_cancel_the_others() -> None:
    src = Source()
    shared = SharedRead(src.read)
    impatient = asyncio.create_task(shared.get())
    patient = asyncio.create_task(shared.get())
    await asyncio.sleep(0)
    impatient.cancel()
    with pytest.raises(asyncio.CancelledError):
        await impatient
    src.gate.set()
    assert await patient == 1
