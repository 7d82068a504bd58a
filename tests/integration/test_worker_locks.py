"""Lock lifecycle through the real worker: throttles expire into unlocks, and an operator's
unlock is taken into account so the next incident locks again."""

from __future__ import annotations

import time
import uuid

import orjson
import pytest

from relayguard.foundation.lock_admin import publish_command
from relayguard.stream import codec
from relayguard.stream.records import LockCommand, LoginEvent, SendEvent
from tests.fixtures.worker import RunningWorker, StartWorker
from tests.kafka_helpers import collect, produce

pytestmark = pytest.mark.integration


def _mine(records: list, user: str) -> list[LockCommand]:  # type: ignore[type-arg]
    return [c for c in (codec.decode_lock_command(r.value) for r in records) if c.subject == user]


async def test_throttle_expiry_publishes_unlock(start_worker: StartWorker) -> None:
    w = start_worker(
        RELAYGUARD_POLICY=orjson.dumps({"detectors": {"volume": {"ttl_seconds": 3}}}).decode(),
        RELAYGUARD_EXPIRY_CHECK_SECONDS="1",
    )
    user = f"ttl-{uuid.uuid4().hex[:6]}"
    now = time.time()
    await produce(w.bootstrap, w.topics.events, [
        (user.encode(), codec.encode_event(SendEvent(str(uuid.uuid4()), now + i, "r", user,
                                                     "192.0.2.3", user, 1, 100)))
        for i in range(12)])
    records = await collect(w.bootstrap, [w.topics.locks],
                            lambda rs: len(_mine(rs, user)) >= 2, 40)
    commands = _mine(records, user)
    assert [c.action for c in commands] == ["lock", "unlock"], w.process.tail_log()
    lock, unlock = commands
    assert lock.expires_at is not None and lock.expires_at - lock.issued_at == pytest.approx(3)
    assert unlock.detector == "policy.expiry" and unlock.version > lock.version
    assert unlock.evidence["expired_command_id"] == lock.command_id


async def test_operator_unlock_lets_the_worker_lock_again(worker: RunningWorker) -> None:
    user = f"op-{uuid.uuid4().hex[:6]}"
    now = time.time()

    def login(t: float, ip: str) -> tuple[bytes, bytes]:
        e = LoginEvent(str(uuid.uuid4()), t, "r", user, ip, True, "TLSv1.3", "PLAIN")
        return user.encode(), codec.encode_event(e)

    await produce(worker.bootstrap, worker.topics.events,
                  [login(now - 1200, "192.0.2.20"), login(now - 600, "198.51.100.7")])
    first = await collect(worker.bootstrap, [worker.topics.locks],
                          lambda rs: len(_mine(rs, user)) >= 1, 30)
    (lock,) = _mine(first, user)
    assert lock.expires_at is None  # impossible travel locks until unlocked

    unlock = LockCommand(str(uuid.uuid4()), user, "user", "unlock", "customer verified",
                         "operator", {}, time.time(), None, "cli:test", lock.version + 1)
    await publish_command(worker.bootstrap, worker.topics.locks, unlock)
    time.sleep(3)  # the worker follows the lock topic and updates the subject's state
    await produce(worker.bootstrap, worker.topics.events, [login(now, "192.0.2.21")])
    records = await collect(worker.bootstrap, [worker.topics.locks],
                            lambda rs: len(_mine(rs, user)) >= 3, 30)
    actions = [(c.action, c.issuer) for c in _mine(records, user)]
    assert actions[:2] == [("lock", lock.issuer), ("unlock", "cli:test")]
    assert actions[2:] == [("lock", lock.issuer)], worker.process.tail_log()
