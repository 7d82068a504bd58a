"""relay/metrics.py and relay/metrics_http.py: what a hook's /metrics shows, served over
loopback by the small HTTP endpoint (no Kafka: the parts are built, not connected)."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from relayguard.foundation.errors import ConfigError
from relayguard.relay.lock_book import LockBook
from relayguard.relay.lock_follower import LockFollower
from relayguard.relay.metrics import PREFIX, HookMetrics
from relayguard.relay.metrics_http import (
    MAX_HEAD_BYTES,
    MetricsEndpoint,
    parse_host_port,
    serve_hook_metrics,
)
from relayguard.relay.policy_protocol import DecisionConfig
from relayguard.relay.policy_server import ListenAddress, PolicyServer
from relayguard.relay.producer import EventProducer
from relayguard.stream.records import LockCommand
from tests.fixtures.signing import session_keyring
from tests.metrics_text import families, metric_names, value

ROOT = Path(__file__).resolve().parents[3]
NOW = 1_800_000_000.0


def _req(user: str, state: str = "RCPT") -> bytes:
    return (f"request=smtpd_access_policy\nprotocol_state={state}\nsasl_username={user}\n"
            "client_address=192.0.2.7\nqueue_id=Q1\ninstance=i.1\nsize=100\n"
            "recipient_count=2\nsender=s@x\n\n").encode()


@pytest.fixture
async def parts(tmp_path: Path) -> AsyncIterator[tuple[HookMetrics, PolicyServer, LockBook]]:
    book = LockBook()
    follower = LockFollower("127.0.0.1:1", "t.locks", "t.acks", "relay-m", book,
                            clock=lambda: NOW, keyring=session_keyring(), max_skew=300)
    producer = EventProducer("127.0.0.1:1", "t.events", tmp_path / "spool",
                             spool_max_bytes=1 << 20)
    server = PolicyServer(ListenAddress("inet", "127.0.0.1", 0), book,
                          DecisionConfig(reject_text="locked"), "relay-m",
                          publish=producer.publish_nowait, clock=lambda: NOW)
    await server.start()
    yield HookMetrics("relay-m", server=server, producer=producer, follower=follower,
                      clock=lambda: NOW), server, book
    await server.stop()


async def _ask(srv: PolicyServer, *requests: bytes) -> None:
    r, w = await asyncio.open_connection(srv.bound.host, srv.bound.port)
    w.write(b"".join(requests))
    for _ in requests:
        await asyncio.wait_for(r.readuntil(b"\n\n"), 5)
    w.close()


async def test_hook_metrics_reflect_the_parts(parts: tuple[HookMetrics, PolicyServer,
                                                           LockBook]) -> None:
    metrics, server, book = parts
    book.apply(LockCommand("c1", "alice", "user", "lock", "r", "d", {}, NOW, None, "t", 1))
    book.apply(LockCommand("c2", "bob", "user", "lock", "r", "d", {}, NOW - 99, NOW - 1, "t", 2))
    await _ask(server, _req("alice"), _req("carol"), _req("carol", "END-OF-MESSAGE"))
    fams = families((await metrics.render()).decode())
    h = PREFIX
    assert value(fams, h + "info", relay_id="relay-m") == 1
    assert value(fams, h + "policy_requests_total", action="REJECT") == 1
    assert value(fams, h + "policy_requests_total", action="DUNNO") == 2
    assert value(fams, h + "policy_send_events_total") == 1
    assert value(fams, h + "events_accepted_total") == 1  # written ahead to the spool
    assert (value(fams, h + "spool_bytes") or 0) > 0
    assert value(fams, h + "spool_records") == 1
    assert value(fams, h + "spool_max_bytes") == 1 << 20
    # not started, so the accepted event waits on disk; exactly one state is 1
    assert value(fams, h + "producer_state", state="spooling") == 1
    assert sum(s.value for s in fams[h + "producer_state"].samples) == 1
    assert value(fams, h + "lock_book_subjects") == 2
    assert value(fams, h + "lock_book_active") == 1  # bob's throttle has lapsed
    assert value(fams, h + "lock_follower_ready") == 0
    assert value(fams, h + "lock_follower_connected") == 0
    assert fams[h + "lock_topic_lag"].samples == []  # no consumer: no figure, not a zero


async def test_seconds_since_the_newest_applied_command(parts: tuple[HookMetrics, PolicyServer,
                                                                     LockBook]) -> None:
    metrics, _, _ = parts
    assert metrics.follower is not None
    await metrics.start()
    try:
        cmd = LockCommand("c9", "dave", "user", "lock", "r", "d", {}, NOW - 30, None, "t", 9)
        for q in metrics.follower._watchers:  # what the follower does when it applies one
            q.put_nowait(cmd)
        for _ in range(100):
            if metrics.last_applied_at is not None:
                break
            await asyncio.sleep(0.01)
        fams = families((await metrics.render()).decode())
        assert value(fams, PREFIX + "lock_last_applied_age_seconds") == 0
        assert value(fams, PREFIX + "lock_newest_issued_timestamp_seconds") == NOW - 30
    finally:
        await metrics.stop()


async def _http(port: int, raw: bytes) -> bytes:
    r, w = await asyncio.open_connection("127.0.0.1", port)
    w.write(raw)
    await w.drain()
    data = await asyncio.wait_for(r.read(), 10)
    w.close()
    return data


async def test_endpoint_serves_metrics_and_refuses_the_rest() -> None:
    async def render() -> bytes:
        return b"# HELP x_total x\n# TYPE x_total counter\nx_total 1.0\n"

    ep = MetricsEndpoint("127.0.0.1", 0, render)
    await ep.start()
    try:
        ok = await _http(ep.port, b"GET /metrics HTTP/1.1\r\nHost: h\r\n\r\n")
        head, body = ok.split(b"\r\n\r\n", 1)
        assert head.startswith(b"HTTP/1.1 200 OK") and b"text/plain; version=0.0.4" in head
        assert value(families(body.decode()), "x_total") == 1
        assert (await _http(ep.port, b"HEAD /metrics HTTP/1.1\r\n\r\n")).endswith(b"\r\n\r\n")
        assert (await _http(ep.port, b"GET / HTTP/1.1\r\n\r\n")).startswith(b"HTTP/1.1 404")
        assert (await _http(ep.port, b"POST /metrics HTTP/1.1\r\n\r\n")).startswith(
            b"HTTP/1.1 405")
        assert (await _http(ep.port, b"hello\r\n\r\n")).startswith(b"HTTP/1.1 400")
        big = b"GET /metrics HTTP/1.1\r\nX: " + b"a" * (MAX_HEAD_BYTES * 2) + b"\r\n\r\n"
        assert await _http(ep.port, big) == b""  # oversized head: closed, no answer
    finally:
        await ep.stop()


async def test_listen_address_and_port_in_use() -> None:
    assert parse_host_port("127.0.0.1:9464") == ("127.0.0.1", 9464)
    assert parse_host_port("[::1]:9464") == ("::1", 9464)
    for bad in ("9464", "host:", ":9464", "h:99999", "h:x"):
        with pytest.raises(ConfigError):
            parse_host_port(bad)
    holder = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = holder.sockets[0].getsockname()[1]
    try:
        with pytest.raises(ConfigError, match="cannot serve metrics"):
            await serve_hook_metrics(f"127.0.0.1:{port}", HookMetrics("r"))
    finally:
        holder.close()
    off = await serve_hook_metrics(None, HookMetrics("r"))
    assert off.endpoint is None
    await off.stop()


async def test_deploy_names_only_series_a_hook_exposes(
        parts: tuple[HookMetrics, PolicyServer, LockBook]) -> None:
    metrics, _, _ = parts
    known: set[str] = set()
    for name in families((await metrics.render()).decode()):
        known |= metric_names(name)
    text = ((ROOT / "deploy/grafana/relayguard.json").read_text()
            + (ROOT / "deploy/prometheus/relayguard-alerts.yml").read_text())
    named = set(re.findall(r"\brelayguard_hook_[a-z_]+", text))
    assert named and named <= known, sorted(named - known)
