"""Worker faults on the real broker: SIGKILL and SIGTERM mid backlog, a worker joining and one
dying, forged times. Each counts by event id and by per-user state (read back from the
worker's `user-state` changelog) against the sums sent, and checks locks on the locks topic."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime

import orjson
import pytest

from relayguard.agents import state_codec
from relayguard.stream import codec
from relayguard.stream.records import SendEvent
from relayguard.stream.timefmt import to_rfc3339
from tests.fault_helpers import (
    LIMIT,
    WORKER_ENV,
    Workload,
    group_progress,
    kill,
    lock_audit,
    metric,
    partition_of,
    read_latest,
    wait_exact,
)
from tests.fixtures.worker import RunningWorker, StartWorker
from tests.kafka_helpers import collect, produce

pytestmark = pytest.mark.integration


def _changelog(w: RunningWorker) -> str:
    return f"rg-test-{w.tag}-user-state-changelog"


def _wait_progress(w: RunningWorker, at_least: int, timeout: float = 60) -> int:
    """Poll the worker's own counter until it has taken `at_least` events; returns the count."""
    deadline = time.monotonic() + timeout
    seen = 0
    while time.monotonic() < deadline:
        seen = metric(w.process.get("/metrics"), "events_total")
        if seen >= at_least:
            return seen
        time.sleep(0.05)
    pytest.fail(f"worker took only {seen} events in {timeout}s:\n{w.process.tail_log()}")


def _sigkill(w: RunningWorker) -> None:
    assert w.process.proc is not None
    kill(w.process.proc.pid)
    w.process.proc.wait(10)


def _gap_metrics(w: RunningWorker) -> str:
    text = w.process.get("/metrics") or ""
    return ", ".join(f"{n}={metric(text, n)}" for n in (
        "redeliveries_total", "offset_gaps_found_total", "offset_gaps_healed_total",
        "offset_gaps_lost_total"))


# Once, on a heavily loaded machine, this run ended with one partition's tail (5-6 events for 10
# of 46 users, about one partition of four) not applied when a fixed 120 s deadline ran out. The
# wait is now "until the state stops moving" and a failure reports each partition's committed
# offset against its end, which tells a loss (all committed, state short) from a worker behind.
async def test_sigkill_three_times_and_sigterm_once_mid_backlog(
        start_worker: StartWorker) -> None:
    w = Workload(users=25)  # 25 x 21 + 25 x 20 = 1,025 events in 5 chunks
    current = start_worker(**WORKER_ENV)
    tag, bootstrap, events = current.tag, current.bootstrap, current.topics.events
    chunks = w.chunks(5)
    for i, chunk in enumerate(chunks[:4]):
        await produce(bootstrap, events, chunk)
        took = _wait_progress(current, max(1, len(chunk) // 5))
        how = "SIGKILL" if i < 3 else "SIGTERM"
        print(f"{how} after {took} events of a {len(chunk)}-event chunk; {_gap_metrics(current)}")
        if i < 3:
            _sigkill(current)
        else:
            current.process.stop()
        current = start_worker(tag=tag, **WORKER_ENV)
    await produce(bootstrap, events, chunks[4])

    problems = await wait_exact(bootstrap, _changelog(current), w, timeout=300)
    print("last worker:", _gap_metrics(current))
    if problems:
        progress = await group_progress(bootstrap, f"rg-test-{tag}", events,
                                        current.settings.partitions)
        pytest.fail("\n".join(problems[:20]) + f"\n{progress}\n/ready: "
                    f"{current.process.status('/ready')}\n" + current.process.tail_log(60))
    assert not await lock_audit(bootstrap, current.topics.locks, w)


async def test_third_worker_joins_then_one_is_killed(start_worker: StartWorker) -> None:
    env = {**WORKER_ENV, "RELAYGUARD_PARTITIONS": "4"}
    w = Workload(users=25)
    a = start_worker(**env)
    b = start_worker(tag=a.tag, **env)
    bootstrap, events = a.bootstrap, a.topics.events
    chunks = w.chunks(4)
    await produce(bootstrap, events, chunks[0])
    await produce(bootstrap, events, chunks[1])
    c = start_worker(tag=a.tag, **env)  # joins while the others work through chunk 1
    await produce(bootstrap, events, chunks[2])
    _wait_progress(b, 1)
    _sigkill(b)
    killed_at = time.monotonic()
    # One probe user per partition: each must be processed by whoever owns it now.
    probes: dict[int, str] = {}
    while len(probes) < 4:
        u = f"probe-{uuid.uuid4().hex[:8]}"
        probes.setdefault(partition_of(u, 4), u)
    now = time.time()
    await produce(bootstrap, events, [
        (u.encode(), codec.encode_event(SendEvent(str(uuid.uuid4()), now, "relay-faults", u,
                                                  "192.0.2.9", u, 1, 100)))
        for u in probes.values()])
    pending = set(probes.values())
    while pending and time.monotonic() - killed_at < 15:
        states = await read_latest(bootstrap, _changelog(a))
        pending = {u for u in pending if u.encode() not in states}
    moved_after = time.monotonic() - killed_at
    print(f"all partitions processed again {moved_after:.1f}s after the SIGKILL")
    assert not pending, f"not processed within 15 s of the SIGKILL: {pending}\n" + \
        c.process.tail_log()
    await produce(bootstrap, events, chunks[3])

    problems = await wait_exact(bootstrap, _changelog(a), w, timeout=300)
    print("a:", _gap_metrics(a), "| c:", _gap_metrics(c))
    if problems:
        progress = await group_progress(bootstrap, f"rg-test-{a.tag}", events, 4)
        pytest.fail("\n".join(problems[:20]) + f"\n{progress}\n" + c.process.tail_log(60))
    assert not await lock_audit(bootstrap, a.topics.locks, w)


def _send_at(user: str, t: str) -> bytes:
    return orjson.dumps({"type": "send", "event_id": str(uuid.uuid4()), "event_time": t,
                         "relay_id": "relay-skew", "user": user, "client_ip": "192.0.2.9",
                         "sender": user, "recipient_count": 1, "size": 100})


async def test_far_future_events_are_dead_lettered_and_detection_goes_on(
        start_worker: StartWorker) -> None:
    worker = start_worker(**WORKER_ENV)
    now = time.time()
    ahead = {"1h": to_rfc3339(now + 3600), "1d": to_rfc3339(now + 86400),
             "y9999": "9999-12-31T23:59:59Z"}
    users = {name: f"skew-{name}-{uuid.uuid4().hex[:6]}" for name in ahead}
    records = [(users[n].encode(), _send_at(users[n], t)) for n, t in ahead.items()]
    for n in ahead:  # then LIMIT + 1 real events each: every one of these users must be locked
        u = users[n]
        records += [(u.encode(), codec.encode_event(SendEvent(
            str(uuid.uuid4()), now - 30 + i, "relay-ok", u, "192.0.2.9", u, 1, 100)))
            for i in range(LIMIT + 1)]
    await produce(worker.bootstrap, worker.topics.events, records)

    dlq = await collect(worker.bootstrap, [worker.topics.dlq], lambda rs: len(rs) >= 3, 60)
    reasons = {orjson.loads(r.value)["reason"] for r in dlq}
    assert len(dlq) == 3 and reasons == {"time_out_of_range"}, [r.value for r in dlq]
    w = Workload(users=0)
    w.over, w.at = list(users.values()), []
    locks = await collect(worker.bootstrap, [worker.topics.locks], lambda rs: len(
        {codec.decode_lock_command(r.value).subject for r in rs} & set(users.values())) == 3, 60)
    locked = {codec.decode_lock_command(r.value).subject for r in locks}
    assert set(users.values()) <= locked, worker.process.tail_log()
    assert not await lock_audit(worker.bootstrap, worker.topics.locks, w)
    # The far-future event moved no watermark: every real event was counted, none was late.
    w.sent = {u: ["?"] * (LIMIT + 1) for u in users.values()}
    deadline = time.monotonic() + 30
    while True:
        states = await read_latest(worker.bootstrap, _changelog(worker))
        got = {u: state_codec.loads(states[u.encode()]) for u in users.values()
               if u.encode() in states}
        if all(s.events_applied == LIMIT + 1 for s in got.values()) and len(got) == 3:
            break
        assert time.monotonic() < deadline, ({u: s.events_applied for u, s in got.items()},
                                             list(states)[:5], _changelog(worker))
    for s in got.values():
        assert s.late_events == 0
        assert s.watermark < now + 300, datetime.fromtimestamp(s.watermark, UTC)
    text = worker.process.get("/metrics")
    assert metric(text, "time_rejected_total") == 3
