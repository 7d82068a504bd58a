"""`relayguard hook postfix` with a 1,024 open-file limit under 2,000 idle and 200 slow policy
connections still refuses a locked user on a fresh connection within 100 ms, and its memory
stays under the bound the server states (connection cap x CONNECTION_BYTES_BOUND)."""

from __future__ import annotations

import contextlib
import multiprocessing
import resource
import socket
import time
from pathlib import Path
from typing import Protocol

import pytest

from relayguard.foundation.settings import Settings
from relayguard.relay.policy_server import CONNECTION_BYTES_BOUND, connection_cap
from relayguard.roof.broker.config import free_port
from tests.integration.hook_process import (
    answers,
    ask,
    policy_request,
    rss_bytes,
    start_hook,
    stop,
    wait_until,
)
from tests.kafka_helpers import lock_cmd, make_topics, produce_locks

pytestmark = pytest.mark.integration

NOFILE = 1024
IDLE, SLOW, BIG = 2000, 200, 50  # BIG of the SLOW ones first push an unfinished 2 MB request
REJECT = b"action=REJECT 5.7.1 Account locked by relayguard, contact your mail administrator\n\n"
PROBES = 20


class EventLike(Protocol):
    def is_set(self) -> bool: ...
    def wait(self, timeout: float | None = None) -> bool: ...


def _raise_own_limit(want: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, max(hard, want)))


def _open(port: int) -> socket.socket | None:
    try:
        return socket.create_connection(("127.0.0.1", port), timeout=5)
    except OSError:
        return None


def _slow_clients(port: int, n: int, stop_at: EventLike, nofile: int) -> None:
    """Unfinished requests: a first line, then one byte every 0.3 s; BIG of them first try to
    send 2 MB of attribute lines. Reconnects when closed, so the pressure stays on. Runs in a
    process of its own, so the probes' timing does not include this side's GIL."""
    _raise_own_limit(nofile)
    socks: list[socket.socket | None] = [None] * n
    chunk = b"x_attr=" + b"v" * 1000 + b"\n"
    while not stop_at.is_set():
        for i in range(n):
            s = socks[i]
            try:
                if s is None:
                    s = socks[i] = _open(port)
                    if s is None:
                        continue
                    s.sendall(b"request=smtpd_access_policy\n")
                    if i < BIG:
                        for _ in range(2000):
                            s.sendall(chunk)
                else:
                    s.sendall(b"s")
            except OSError:  # closed by the server (deadline, byte cap, eviction)
                with contextlib.suppress(OSError):
                    s.close()  # type: ignore[union-attr]
                socks[i] = None
        stop_at.wait(0.3)
    for s in socks:
        if s is not None:
            s.close()


def test_locked_user_refused_under_idle_and_slow_connections(
        kafka_settings: Settings, tmp_path: Path) -> None:
    import asyncio

    s = kafka_settings
    asyncio.run(make_topics(s))
    _raise_own_limit(IDLE + 2 * SLOW + 500)
    port = free_port()
    log_path = tmp_path / "hook.log"
    env = {"RELAYGUARD_TOPICS__PREFIX": s.topics.prefix, "RELAYGUARD_DATA_DIR": str(tmp_path)}
    proc = start_hook(["--listen", f"inet:127.0.0.1:{port}", "--relay-id", "relay-load",
                       "--bootstrap", s.bootstrap_servers], env, log_path, nofile=NOFILE)
    idle: list[socket.socket] = []
    ctx = multiprocessing.get_context("fork")
    stop_slow = ctx.Event()
    trickler = ctx.Process(target=_slow_clients, args=(port, SLOW, stop_slow, 4 * SLOW),
                           daemon=True)
    try:
        wait_until(lambda: answers(port), 60, "hook answers", proc, log_path)
        asyncio.run(produce_locks(s.bootstrap_servers, s.topics.locks, [lock_cmd("mallory", 1)]))
        wait_until(lambda: ask(port, policy_request("mallory", "RCPT")) == REJECT, 30,
                   "the follower applied the lock", proc, log_path)
        base_rss = rss_bytes(proc.pid)

        trickler.start()
        for _ in range(IDLE):  # idle: connect and say nothing
            sock = _open(port)
            if sock is not None:
                idle.append(sock)
        assert len(idle) > connection_cap(2048, NOFILE), "the load never reached the cap"

        latencies = []
        for _ in range(PROBES):
            t0 = time.perf_counter()
            reply = ask(port, policy_request("mallory", "RCPT"))
            latencies.append(time.perf_counter() - t0)
            assert reply == REJECT, f"locked user not refused under load: {reply!r}"
            time.sleep(0.05)
        rss = rss_bytes(proc.pid)
        assert proc.poll() is None
    finally:
        stop_slow.set()
        if trickler.pid is not None:
            trickler.join(10)
            if trickler.is_alive():
                trickler.kill()
                trickler.join(5)
        for sock in idle:
            with contextlib.suppress(OSError):
                sock.close()
        log_text = log_path.read_text() if log_path.exists() else ""
        stop(proc)

    cap = connection_cap(2048, NOFILE)
    bound = cap * CONNECTION_BYTES_BOUND
    worst = max(latencies)
    print(f"\ncap {cap}; refusal latency max {worst * 1000:.1f} ms, median "
          f"{sorted(latencies)[len(latencies) // 2] * 1000:.1f} ms (slowest: "
          f"{[round(x * 1000, 1) for x in sorted(latencies)[-4:]]}); RSS {base_rss >> 20} MiB "
          f"before load, {rss >> 20} MiB under load; bound base + {bound >> 20} MiB")
    assert "open-file limit: 1024 (hard 1024)" in log_text
    assert f"at most {cap} connections" in log_text
    assert "connection cap" in log_text and "longest-idle" in log_text, "no eviction logged"
    assert "request longer than 16384 bytes" in log_text, "the byte cap never closed a request"
    assert "similar line(s) from relayguard suppressed" in log_text, "client trouble not throttled"
    for emfile in ("Too many open files", "out of system resource"):  # asyncio's accept log
        assert emfile not in log_text, "accept() hit EMFILE"
    assert worst < 0.100, (f"a locked user must be refused within 100 ms on a fresh "
                           f"connection under load; slowest of {PROBES} took "
                           f"{worst * 1000:.1f} ms")
    assert rss - base_rss < bound, (f"RSS grew by {(rss - base_rss) >> 20} MiB, over the stated "
                                    f"bound of {bound >> 20} MiB ({cap} x "
                                    f"{CONNECTION_BYTES_BOUND} bytes)")
