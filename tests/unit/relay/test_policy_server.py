"""The asyncio policy server over loopback, with an in-RAM lock book (no Kafka)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from relayguard.foundation.errors import ConfigError
from relayguard.relay.lock_book import LockBook
from relayguard.relay.policy_protocol import DecisionConfig
from relayguard.relay.policy_server import ListenAddress, PolicyServer, parse_listen
from relayguard.stream.records import Event, LockCommand

NOW = 1_800_000_000.0


def _req(user: str, state: str = "RCPT") -> bytes:
    return (f"request=smtpd_access_policy\nprotocol_state={state}\nsasl_username={user}\n"
            "client_address=192.0.2.7\nqueue_id=Q1\ninstance=i.1\nsize=100\n"
            "recipient_count=2\nsender=s@x\n\n").encode()


@pytest.fixture
async def server() -> AsyncIterator[tuple[PolicyServer, LockBook, list[Event]]]:
    book = LockBook()
    events: list[Event] = []

    def publish(e: Event) -> bool:
        events.append(e)
        return True

    srv = PolicyServer(ListenAddress("inet", "127.0.0.1", 0), book,
                       DecisionConfig(reject_text="locked"), "relay-t",
                       publish=publish, clock=lambda: NOW)
    await srv.start()
    yield srv, book, events
    await srv.stop()


async def _open(srv: PolicyServer) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection(srv.bound.host, srv.bound.port)


async def _reply(r: asyncio.StreamReader) -> bytes:
    return await asyncio.wait_for(r.readuntil(b"\n\n"), 5)


async def test_persistent_connection_and_lock(server: tuple[PolicyServer, LockBook,
                                                            list[Event]]) -> None:
    srv, book, events = server
    r, w = await _open(srv)
    w.write(_req("alice"))
    assert await _reply(r) == b"action=DUNNO\n\n"
    book.apply(LockCommand("c1", "alice", "user", "lock", "r", "d", {}, NOW, None, "t", 1))
    w.write(_req("alice") + _req("bob"))  # two requests in one write, same connection
    assert await _reply(r) == b"action=REJECT 5.7.1 locked\n\n"
    assert await _reply(r) == b"action=DUNNO\n\n"
    w.write(_req("bob", "END-OF-MESSAGE"))
    assert await _reply(r) == b"action=DUNNO\n\n"
    assert [e.user for e in events] == ["bob"]
    w.close()
    assert srv.stats.requests == 4 and srv.stats.rejected == 1


async def test_garbage_closes_without_reply(server: tuple[PolicyServer, LockBook,
                                                          list[Event]]) -> None:
    srv, _, _ = server
    r, w = await _open(srv)
    w.write(b"GET / HTTP/1.1\r\n\r\n")
    assert await asyncio.wait_for(r.read(), 5) == b""
    assert srv.stats.protocol_errors == 1
    r, w = await _open(srv)  # the server is still fine
    w.write(_req("carol"))
    assert await _reply(r) == b"action=DUNNO\n\n"
    w.close()


async def test_disconnect_mid_request(server: tuple[PolicyServer, LockBook, list[Event]]) -> None:
    srv, _, _ = server
    r, w = await _open(srv)
    w.write(_req("alice")[:30])
    await w.drain()
    w.close()
    await asyncio.sleep(0.1)
    r, w = await _open(srv)
    w.write(_req("alice"))
    assert await _reply(r) == b"action=DUNNO\n\n"
    w.close()


async def test_unix_socket(tmp_path: Path) -> None:
    path = tmp_path / "policy.sock"
    srv = PolicyServer(parse_listen(f"unix:{path}"), LockBook(), DecisionConfig(), "r")
    await srv.start()
    try:
        r, w = await asyncio.open_unix_connection(str(path))
        w.write(_req("alice"))
        assert await _reply(r) == b"action=DUNNO\n\n"
        w.close()
    finally:
        await srv.stop()
    assert not path.exists()


def test_parse_listen() -> None:
    assert parse_listen("inet:127.0.0.1:10040") == ListenAddress("inet", "127.0.0.1", 10040)
    assert parse_listen("127.0.0.1:1") == ListenAddress("inet", "127.0.0.1", 1)
    assert parse_listen("inet:[::1]:10040") == ListenAddress("inet", "::1", 10040)
    assert parse_listen("unix:/run/x.sock").path == "/run/x.sock"
    for bad in ("inet:127.0.0.1", "unix:", "10040", "inet:h:99999"):
        with pytest.raises(ConfigError):
            parse_listen(bad)


async def test_address_in_use_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "p.sock"
    first = PolicyServer(parse_listen(f"unix:{path}"), LockBook(), DecisionConfig(), "r")
    await first.start()
    try:
        second = PolicyServer(parse_listen(f"unix:{path}"), LockBook(), DecisionConfig(), "r")
        with pytest.raises(ConfigError):
            await second.start()
        tcp = PolicyServer(ListenAddress("inet", "127.0.0.1", 0), LockBook(), DecisionConfig(),
                           "r")
        await tcp.start()
        try:
            clash = PolicyServer(tcp.bound, LockBook(), DecisionConfig(), "r")
            with pytest.raises(ConfigError):
                await clash.start()
        finally:
            await tcp.stop()
    finally:
        await first.stop()


async def _closed(r: asyncio.StreamReader, timeout: float = 5.0) -> bool:
    try:
        return await asyncio.wait_for(r.read(), timeout) == b""
    except ConnectionResetError:  # abort() resets
        return True


async def test_cap_evicts_the_longest_idle_connection() -> None:
    srv = PolicyServer(ListenAddress("inet", "127.0.0.1", 0), LockBook(), DecisionConfig(), "r",
                       max_connections=20)
    await srv.start()
    try:
        assert srv.max_connections == 20
        conns = [await _open(srv) for _ in range(20)]
        for r, w in conns[1:]:  # all but the first answered a request: the first is idlest
            w.write(_req("alice"))
            assert await _reply(r) == b"action=DUNNO\n\n"
        r, w = await _open(srv)  # one over the cap
        w.write(_req("alice"))
        assert await _reply(r) == b"action=DUNNO\n\n"
        assert await _closed(conns[0][0])
        assert srv.stats.evicted == 1 and srv.stats.open_connections == 20
        conns[1][1].write(_req("bob"))  # the others are still served
        assert await _reply(conns[1][0]) == b"action=DUNNO\n\n"
        for _, cw in conns:
            cw.close()
        w.close()
    finally:
        await srv.stop()


async def test_unfinished_request_is_closed_at_its_deadline() -> None:
    srv = PolicyServer(ListenAddress("inet", "127.0.0.1", 0), LockBook(), DecisionConfig(), "r",
                       request_deadline=0.3)
    await srv.start()
    try:
        idle_r, idle_w = await _open(srv)  # idle but not mid-request: left alone
        r, w = await _open(srv)
        for b in _req("alice")[:40]:  # trickle
            try:
                w.write(bytes([b]))
                await w.drain()
            except ConnectionError:  # the server closed it while we were still writing
                break
            if r.at_eof():
                break
            await asyncio.sleep(0.02)
        assert await _closed(r)
        assert srv.stats.deadline_closed == 1
        idle_w.write(_req("alice"))
        assert await _reply(idle_r) == b"action=DUNNO\n\n"
        idle_w.close()
    finally:
        await srv.stop()


async def test_request_over_the_byte_cap_is_closed() -> None:
    srv = PolicyServer(ListenAddress("inet", "127.0.0.1", 0), LockBook(), DecisionConfig(), "r",
                       max_request_bytes=2048)
    await srv.start()
    try:
        r, w = await _open(srv)
        w.write(b"request=smtpd_access_policy\n" + b"x_attr=%s\n" % (b"v" * 1000) * 3)
        assert await _closed(r)
        assert srv.stats.protocol_errors == 1
        r, w = await _open(srv)  # a normal request still fits
        w.write(_req("alice"))
        assert await _reply(r) == b"action=DUNNO\n\n"
        w.close()
    finally:
        await srv.stop()


def test_connection_cap_stays_below_the_open_file_limit() -> None:
    from relayguard.relay.policy_server import BACKLOG, RESERVED_FDS, connection_cap

    assert connection_cap(2048, 65536) == 2048
    assert connection_cap(2048, 1024) == 1024 - 2 * BACKLOG - RESERVED_FDS
    with pytest.raises(ConfigError):
        connection_cap(2048, 200)
