"""Issue 3's signature case on the real broker: a login from a new country, then a send burst
that stays under every fixed limit, ends in one lock command carrying both pieces of evidence."""

from __future__ import annotations

import time
import uuid

import orjson
import pytest

from relayguard.stream import codec
from relayguard.stream.records import Event, LoginEvent, SendEvent
from tests.fixtures.worker import StartWorker
from tests.kafka_helpers import collect, produce

pytestmark = pytest.mark.integration
DAY = 86400.0


def _history(user: str, now: float) -> list[Event]:
    """15 days of ordinary logins from Berlin: the country is learned (14 days, 10 logins)."""
    events: list[Event] = [
        LoginEvent(str(uuid.uuid4()), now - 15 * DAY + i * DAY, "relay-a", user, "192.0.2.20",
                   True, "TLSv1.3", "PLAIN")
        for i in range(13)
    ]
    # Two days later, a login from New York: a new country, but no impossible travel.
    events.append(LoginEvent(str(uuid.uuid4()), now - 3000, "relay-b", user, "203.0.113.50",
                             True, "TLSv1.3", "PLAIN"))
    # Then 60 one-recipient messages over 48 minutes: 1 per 48 s stays under 10/min and 300/h.
    events += [SendEvent(str(uuid.uuid4()), now - 2900 + i * 48, "relay-b", user, "203.0.113.50",
                         user, 1, 3000) for i in range(60)]
    return events


async def test_new_country_then_burst_under_limits_is_locked(start_worker: StartWorker) -> None:
    # The history starts 15 days back, beyond the worker's default 7-day age bound on events.
    worker = start_worker(RELAYGUARD_MAX_EVENT_AGE_SECONDS=str(30 * DAY))
    user = f"takeover-{uuid.uuid4().hex[:6]}"
    await produce(worker.bootstrap, worker.topics.events,
                  [(user.encode(), codec.encode_event(e)) for e in _history(user, time.time())])

    def mine(records: list) -> list:  # type: ignore[type-arg]
        commands = (codec.decode_lock_command(r.value) for r in records)
        return [c for c in commands if c.subject == user]

    records = await collect(worker.bootstrap, [worker.topics.locks],
                            lambda rs: bool(mine(rs)), 40)
    commands = mine(records)
    assert len(commands) == 1, worker.process.tail_log()
    (cmd,) = commands
    assert cmd.action == "lock" and cmd.detector == "correlation"
    login, volume = cmd.evidence["login"], cmd.evidence["volume"]
    assert login["reason"] == "new_country" and login["client_ip"] == "203.0.113.50"
    assert login["evidence"]["country"] == "US"
    assert volume["messages"] >= 50 and volume["trigger"] == "messages"
    # No fixed limit was crossed: the lock is the correlation's alone.
    alerts = await collect(worker.bootstrap, [worker.topics.alerts], lambda rs: False, 3)
    detectors = {codec.alert_from_dict(orjson.loads(r.value)).detector
                 for r in alerts if r.key == user.encode()}
    assert "volume" not in detectors and {"new_country", "correlation"} <= detectors
