"""The worker on the real broker: bursts and impossible travel end in lock commands for exactly
the right user; malformed payloads land in the DLQ with a reason and do not stop the worker."""

from __future__ import annotations

import base64
import time
import uuid

import orjson
import pytest

from relayguard.stream import codec
from relayguard.stream.records import LoginEvent, SendEvent
from tests.fixtures.worker import RunningWorker
from tests.kafka_helpers import collect, produce

pytestmark = pytest.mark.integration


def _commands(records: list) -> list:  # type: ignore[type-arg]
    return [codec.decode_lock_command(r.value) for r in records]


def _send(user: str, i: int, t: float) -> SendEvent:
    return SendEvent(str(uuid.uuid4()), t, "relay-it", user, "192.0.2.9", user, 2, 2048)


async def test_send_burst_locks_exactly_that_user(worker: RunningWorker) -> None:
    spammer, bystander = f"spam-{uuid.uuid4().hex[:6]}", f"calm-{uuid.uuid4().hex[:6]}"
    now = time.time()
    records = [(spammer.encode(), codec.encode_event(_send(spammer, i, now + i * 0.5)))
               for i in range(30)]
    records += [(bystander.encode(), codec.encode_event(_send(bystander, i, now + i * 20)))
                for i in range(3)]
    await produce(worker.bootstrap, worker.topics.events, records)

    locks = await collect(worker.bootstrap, [worker.topics.locks],
                          lambda rs: any(c.subject == spammer for c in _commands(rs)), 30)
    # The worker is shared with other tests: look only at these two users' commands.
    ours = [(r.key, c) for r, c in zip(locks, _commands(locks), strict=True)
            if c.subject in (spammer, bystander)]
    assert [c.subject for _, c in ours] == [spammer], worker.process.tail_log()
    ((key, cmd),) = ours
    assert cmd.action == "lock" and cmd.detector == "volume"
    assert cmd.evidence["measure"] == "messages" and cmd.evidence["count"] > 10
    assert key == codec.lock_key("user", spammer)


async def test_impossible_travel_pair_is_locked(worker: RunningWorker) -> None:
    user = f"jet-{uuid.uuid4().hex[:6]}"
    now = time.time()
    berlin = LoginEvent(str(uuid.uuid4()), now - 600, "relay-a", user, "192.0.2.20", True,
                        "TLSv1.3", "PLAIN")
    sydney = LoginEvent(str(uuid.uuid4()), now, "relay-b", user, "198.51.100.7", True,
                        "TLSv1.3", "PLAIN")
    await produce(worker.bootstrap, worker.topics.events,
                  [(user.encode(), codec.encode_event(e)) for e in (berlin, sydney)])
    locks = await collect(worker.bootstrap, [worker.topics.locks],
                          lambda rs: any(c.subject == user for c in _commands(rs)), 30)
    mine = [c for c in _commands(locks) if c.subject == user]
    assert len(mine) == 1, worker.process.tail_log()
    cmd = mine[0]
    assert cmd.detector == "impossible_travel" and cmd.expires_at is None
    assert cmd.evidence["from"]["city"] == "Berlin" and cmd.evidence["to"]["city"] == "Sydney"
    assert cmd.evidence["speed_kmh"] > 900


async def test_malformed_payloads_go_to_dlq_and_worker_goes_on(worker: RunningWorker) -> None:
    user = f"after-{uuid.uuid4().hex[:6]}"
    good = {"type": "send", "event_id": "x", "event_time": "2026-11-29T10:00:00Z",
            "relay_id": "r", "user": user, "client_ip": "192.0.2.1", "sender": "s",
            "recipient_count": 1, "size": 1}
    bad = {
        "not_json": b"this is not json",
        "invalid_type": orjson.dumps({**good, "recipient_count": "many"}),
        "missing": orjson.dumps({k: v for k, v in good.items() if k != "client_ip"}),
        "unknown": orjson.dumps({**good, "type": "fax"}),
        "oversized": orjson.dumps({**good, "sender": "x" * 100_000}),
    }
    expected = {"not_json": "not_json", "invalid_type": "invalid", "missing": "invalid",
                "unknown": "unknown_type", "oversized": "oversized"}
    await produce(worker.bootstrap, worker.topics.events,
                  [(user.encode(), v) for v in bad.values()])
    # Then a burst that must still be processed: it ends in a lock for `user`.
    now = time.time()
    await produce(worker.bootstrap, worker.topics.events,
                  [(user.encode(), codec.encode_event(_send(user, i, now + i))) for i in range(15)])

    wanted = set(bad.values())
    dlq = await collect(worker.bootstrap, [worker.topics.dlq],
                        lambda rs: wanted <= {_payload(r) for r in rs}, 30)
    by_payload = {_payload(r): orjson.loads(r.value) for r in dlq}
    for name, payload in bad.items():
        assert payload in by_payload, f"{name} not dead-lettered; log:\n{worker.process.tail_log()}"
        assert by_payload[payload]["reason"] == expected[name]
        assert by_payload[payload]["error"]
    locks = await collect(worker.bootstrap, [worker.topics.locks],
                          lambda rs: any(c.subject == user for c in _commands(rs)), 30)
    assert any(c.subject == user for c in _commands(locks)), worker.process.tail_log()


def _payload(record) -> bytes:  # type: ignore[no-untyped-def]
    return base64.b64decode(orjson.loads(record.value)["payload_b64"])


async def test_restarted_worker_resumes_state_from_changelog(start_worker) -> None:  # type: ignore[no-untyped-def]
    """8 messages before a restart and 5 after cross the 10/minute limit only if the new worker
    recovered the first 8 from the table's changelog."""
    first = start_worker()
    user = f"resume-{uuid.uuid4().hex[:6]}"
    now = time.time()
    events = [_send(user, i, now + i) for i in range(13)]
    await produce(first.bootstrap, first.topics.events,
                  [(user.encode(), codec.encode_event(e)) for e in events[:8]])
    await collect(first.bootstrap, [first.topics.events], lambda rs: len(rs) >= 8, 10)
    time.sleep(3)  # let the worker commit and write its changelog
    first.process.stop()
    second = start_worker(tag=first.tag)
    await produce(second.bootstrap, second.topics.events,
                  [(user.encode(), codec.encode_event(e)) for e in events[8:]])
    locks = await collect(second.bootstrap, [second.topics.locks],
                          lambda rs: any(c.subject == user for c in _commands(rs)), 30)
    mine = [c for c in _commands(locks) if c.subject == user]
    assert len(mine) == 1, second.process.tail_log()
    assert mine[0].evidence["count"] == 11
    second.process.stop()
