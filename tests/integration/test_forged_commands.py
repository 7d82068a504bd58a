"""An attacker with plain producer access to the broker, against a real worker and a real relay
lock follower: forged unlocks, locks, huge versions, bad signatures, unknown keys and control
ticks are all refused and counted on both sides, and real detection carries on unaffected."""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from typing import Any

import orjson
import pytest
from aiokafka.partitioner import DefaultPartitioner

from relayguard.foundation import signing
from relayguard.relay.lock_follower import LockFollower
from relayguard.stream import codec, control_codec, signed
from relayguard.stream.records import LockCommand, SendEvent
from relayguard.stream.timefmt import to_rfc3339
from tests.fixtures.signing import session_keyring, session_signer
from tests.fixtures.worker import RunningWorker, StartWorker
from tests.kafka_helpers import collect, produce, until

pytestmark = pytest.mark.integration
METRIC = re.compile(r'^relayguard_worker_signed_records_refused_total\{reason="([a-z_]+)",'
                    r'source="([a-z]+)"\} (\d+)$', re.M)


def refusals(w: RunningWorker) -> dict[tuple[str, str], int]:
    text = w.process.get("/metrics") or ""
    return {(src, reason): int(n) for reason, src, n in METRIC.findall(text)}


def burst(user: str, t0: float, n: int = 12) -> list[tuple[bytes, bytes]]:
    """n one-recipient messages in n seconds: over the 10 messages/minute default limit."""
    return [(user.encode(), codec.encode_event(SendEvent(str(uuid.uuid4()), t0 + i, "r-it", user,
                                                         "192.0.2.3", user, 1, 100)))
            for i in range(n)]


def verified(records: list[Any], user: str) -> list[LockCommand]:
    out = []
    for r in records:
        try:
            c = codec.decode_signed_lock_command(r.value, session_keyring(), time.time(), 300)
        except codec.Rejected:
            continue
        if c.subject == user:
            out.append(c)
    return out


def same_partition_as(user: str, prefix: str) -> str:
    """A user name whose events land in the same partition (of 2) as `user`'s, so the worker
    processes them after `user`'s events sent just before."""
    part = DefaultPartitioner()
    want = part(user.encode(), [0, 1], [0, 1])
    while True:
        name = f"{prefix}-{uuid.uuid4().hex[:6]}"
        if part(name.encode(), [0, 1], [0, 1]) == want:
            return name


async def test_forgeries_are_refused_counted_and_change_nothing(
        start_worker: StartWorker) -> None:
    w = start_worker()
    t = w.topics
    victim, bystander = f"victim-{uuid.uuid4().hex[:6]}", f"bystander-{uuid.uuid4().hex[:6]}"
    follower = LockFollower(w.bootstrap, t.locks, t.lock_acks, "relay-forge", retry_interval=0.5)
    await follower.start()
    try:
        assert await follower.ready(timeout=30)
        # 1. a real incident: the victim's credential sends a burst and is throttled for 1 h
        await produce(w.bootstrap, t.events, burst(victim, time.time()))
        await until(lambda: follower.book.is_locked("user", victim, time.time()), 30,
                    "the real burst locked on the relay")
        lock = follower.book.active_lock("user", victim, time.time())
        assert lock is not None and lock.expires_at is not None

        # 2. the attacker's records on the locks topic
        now = time.time()
        unlock = LockCommand(str(uuid.uuid4()), victim, "user", "unlock", "forged", "operator",
                             {}, now, None, "cli:attacker", lock.version + 1)
        plain = codec.lock_command_to_dict(unlock)
        attacker = signing.Signer(signing.generate())
        good = codec.signed_lock_command(unlock, session_signer())
        forged_lock = codec.lock_command_to_dict(LockCommand(
            str(uuid.uuid4()), bystander, "user", "lock", "forged", "operator", {}, now, None,
            "cli:attacker", int(now * 1000)))
        locks_forgeries = {
            "forged unlock": (plain, "unsigned"),
            "forged lock of a bystander": (forged_lock, "unsigned"),
            "forged version 1e300": ({**plain, "version": 1e300}, "unsigned"),
            "signed by the attacker's own key": (codec.signed_lock_command(unlock, attacker),
                                                 "unknown_key"),
            "a trusted signature, version changed": ({**good, "version": lock.version + 2},
                                                     "bad_signature"),
            "signed, version 2^60": (signed.sign({**plain, "version": 2**60}, session_signer()),
                                     "version_out_of_range"),
            "signed, issued a day ahead": (signed.sign(
                {**plain, "issued_at": to_rfc3339(now + 86400)}, session_signer()),
                "time_out_of_range"),
        }
        await produce(w.bootstrap, t.locks, [
            (codec.lock_key("user", d["subject"]), orjson.dumps(d))
            for d, _ in locks_forgeries.values()])
        # 3. ... and on the worker's control topic: ticks from the far future expire throttles
        tick = {"type": "tick", "kind": "user", "key": victim, "now": now + 7200}
        inner = codec.lock_command_to_dict(unlock)
        control_forgeries = [
            orjson.dumps(tick),
            control_codec.tick_value("user", victim, now + 7200, session_signer()),
            orjson.dumps({"type": "sync", "command": inner}),
            control_codec.sync_value(codec.signed_lock_command(unlock, attacker), attacker),
        ]
        await produce(w.bootstrap, t.control, [(victim.encode(), v) for v in control_forgeries])

        want_relay = {"unsigned": 3, "unknown_key": 1, "bad_signature": 1,
                      "version_out_of_range": 1, "time_out_of_range": 1}
        want_worker = {**{("locks", r): n for r, n in want_relay.items()},
                       ("control", "unsigned"): 2, ("control", "tick_out_of_range"): 1,
                       ("control", "unknown_key"): 1}
        await until(lambda: sum(follower.refused.values()) >= 7, 20, "relay saw the forgeries")
        assert dict(follower.refused) == want_relay
        deadline = time.monotonic() + 30
        while refusals(w) != want_worker and time.monotonic() < deadline:
            await asyncio.sleep(0.3)
        assert refusals(w) == want_worker, w.process.tail_log()

        # 4. nothing changed: the victim is still locked, the bystander is not
        assert follower.book.is_locked("user", victim, time.time())
        assert not follower.book.is_locked("user", bystander, time.time())

        # 5. real detection is unaffected: a new spammer is locked, and the victim's worker
        # state is still locked (had the forged unlock reached it, this second burst would
        # lock again). Same partition, victim first: when the spammer's lock appears, the
        # victim's burst has been processed.
        spammer = same_partition_as(victim, "spammer")
        await produce(w.bootstrap, t.events, burst(victim, time.time() + 20)
                      + burst(spammer, time.time()))
        await until(lambda: follower.book.is_locked("user", spammer, time.time()), 30,
                    "a real burst after the forgeries is still locked")
        records = await collect(w.bootstrap, [t.locks],
                                lambda rs: bool(verified(rs, spammer)), 20)
        victim_cmds = verified(records, victim)
        assert [(c.action, c.command_id) for c in victim_cmds] == [("lock", lock.command_id)], \
            "the worker published no unlock (forged tick) and no second lock (forged unlock)"
        assert follower.book.is_locked("user", victim, time.time())
    finally:
        await follower.stop()
