"""Key rotation without downtime, on the real broker: a worker already signing with the new key,
an operator still on the old one; relays holding both public keys obey both, and a relay whose
keyring has retired the old key refuses what it signs. Also: no key, no worker."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import pytest

from relayguard.foundation import signing
from relayguard.foundation.errors import DownstreamError
from relayguard.foundation.lock_admin import publish_command
from relayguard.relay.lock_follower import LockFollower
from relayguard.roof.worker_process import WorkerProcess
from relayguard.stream import codec
from relayguard.stream.records import LockCommand, SendEvent
from tests.fixtures.signing import session_keyring, session_signer
from tests.fixtures.worker import StartWorker
from tests.kafka_helpers import produce, until

pytestmark = pytest.mark.integration


def _operator_lock(user: str) -> LockCommand:
    now = time.time()
    return LockCommand(str(uuid.uuid4()), user, "user", "lock", "ticket", "operator", {}, now,
                       None, "cli:ops", int(now * 1000))


async def test_relays_with_both_keys_obey_either_and_a_retired_key_is_refused(
        start_worker: StartWorker) -> None:
    old = session_signer()  # the key every test process trusts
    new_key = signing.generate()
    new = signing.Signer(new_key)
    both = signing.Keyring([old.public, new.public])
    # step 2 of the rotation: the worker signs with the new key and trusts both
    w = start_worker(RELAYGUARD_SIGNING_KEY=signing.private_text(new_key),
                     RELAYGUARD_VERIFY_KEYS=",".join(signing.public_text(k)
                                                     for k in (old.public, new.public)))
    t = w.topics
    during = LockFollower(w.bootstrap, t.locks, t.lock_acks, "relay-both", keyring=both,
                          retry_interval=0.5)
    after = LockFollower(w.bootstrap, t.locks, t.lock_acks, "relay-new-only",
                         keyring=signing.Keyring([new.public]), retry_interval=0.5)
    stale = LockFollower(w.bootstrap, t.locks, t.lock_acks, "relay-old-only",
                         keyring=session_keyring(), retry_interval=0.5)
    for f in (during, after, stale):
        await f.start()
    try:
        for f in (during, after, stale):
            assert await f.ready(timeout=30)
        spammer, by_old, by_new = (f"{p}-{uuid.uuid4().hex[:6]}" for p in ("spam", "op1", "op2"))
        now = time.time()
        await produce(w.bootstrap, t.events, [
            (spammer.encode(), codec.encode_event(SendEvent(
                str(uuid.uuid4()), now + i, "r", spammer, "192.0.2.3", spammer, 1, 100)))
            for i in range(12)])
        await publish_command(w.bootstrap, t.locks, _operator_lock(by_old), old)
        await publish_command(w.bootstrap, t.locks, _operator_lock(by_new), new)

        def locked(f: LockFollower, user: str) -> bool:
            return f.book.is_locked("user", user, time.time())

        await until(lambda: all(locked(during, u) for u in (spammer, by_old, by_new)), 30,
                    "a relay with both keys obeys the worker (new key) and both operators")
        await until(lambda: locked(after, spammer) and locked(after, by_new), 10,
                    "a relay with only the new key obeys what the new key signs")
        await until(lambda: after.refused["unknown_key"] == 1, 10, "old-key command refused")
        assert not locked(after, by_old)
        # a relay not yet given the new key (step 1 skipped) refuses the new key's commands:
        # why the new public key goes everywhere before any signer switches
        await until(lambda: stale.refused["unknown_key"] == 2, 10, "new-key commands refused")
        assert locked(stale, by_old) and not locked(stale, spammer)
    finally:
        for f in (during, after, stale):
            await f.stop()


def test_worker_without_a_signing_key_refuses_to_start(kafka_bootstrap: str,
                                                       tmp_path: Path) -> None:
    proc = WorkerProcess({"RELAYGUARD_BOOTSTRAP_SERVERS": kafka_bootstrap,
                          "RELAYGUARD_TOPICS__PREFIX": f"t{uuid.uuid4().hex[:8]}.",
                          "RELAYGUARD_SIGNING_KEY": "", "RELAYGUARD_DATA_DIR": str(tmp_path)},
                         tmp_path / "worker.log")
    with pytest.raises(DownstreamError) as err:
        proc.start(timeout=60)
    proc.stop()
    assert "exited with code 2" in str(err.value)
    log = proc.tail_log()
    assert "configuration error: no signing key" in log
    assert "relayguard keys generate" in log
