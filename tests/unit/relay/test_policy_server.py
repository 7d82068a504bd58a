"""The asyncio policy server over loopback, with an in-RAM lock book (no Kafka)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from relayguard.foundation.errors import ConfigError
from relayguard.relay.lock_book import LockBook
from relayguard.relay.policy_protocol import DecisionConfig
from relayguard.relay.policy_server import ListenAddress, PolicyServer, parse_listen
from relayguard.stream.records import Event, LockCommand, SendEvent

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


def _contract_send_schema() -> dict[str, Any]:
    """schemas/send-event.schema.json plus the two optional fields exactly as this session's
    contract states them (the detection branch adds them to the schema file itself)."""
    import json

    path = Path(__file__).parents[3] / "schemas" / "send-event.schema.json"
    schema: dict[str, Any] = json.loads(path.read_text())
    schema["properties"].setdefault("recipient_domains", {
        "type": "array", "maxItems": 32, "uniqueItems": True,
        "items": {"type": "string", "minLength": 1, "maxLength": 253}})
    schema["properties"].setdefault("recipient_domain_count", {
        "type": "integer", "minimum": 0, "maximum": 100000})
    return schema


def _rcpt(user: str, rcpt: str, instance: str = "i.1") -> bytes:
    return (f"request=smtpd_access_policy\nprotocol_state=RCPT\nsasl_username={user}\n"
            f"client_address=192.0.2.7\nqueue_id=\ninstance={instance}\nrecipient={rcpt}\n"
            "sender=s@x\n\n").encode()


async def test_send_event_carries_the_recipient_domains(
        server: tuple[PolicyServer, LockBook, list[Event]]) -> None:
    import jsonschema

    from relayguard.stream.codec import encode_event

    srv, book, events = server
    book.apply(LockCommand("c1", "mallory", "user", "lock", "r", "d", {}, NOW, None, "t", 1))
    r, w = await _open(srv)
    rcpts = [f"u{i}@D{i % 40}.example" for i in range(45)] + ["x@d0.example.", "postmaster"]
    w.write(b"".join(_rcpt("bob", x) for x in rcpts[:10]))  # several requests in one read
    for _ in range(10):
        assert await _reply(r) == b"action=DUNNO\n\n"
    for x in rcpts[10:]:
        w.write(_rcpt("bob", x))
        assert await _reply(r) == b"action=DUNNO\n\n"
    w.write(_req("bob", "END-OF-MESSAGE"))  # instance i.1, recipient_count=2
    assert await _reply(r) == b"action=DUNNO\n\n"
    # the next message on the same connection starts from nothing
    w.write(_rcpt("bob", "a@other.example", "i.2") + _req("bob", "END-OF-MESSAGE")
            .replace(b"instance=i.1", b"instance=i.2").replace(b"queue_id=Q1", b"queue_id=Q2"))
    assert await _reply(r) == b"action=DUNNO\n\n"
    assert await _reply(r) == b"action=DUNNO\n\n"
    # a refused recipient is not counted, and a message whose RCPTs this connection never
    # saw carries neither field (the contract: only when the relay knows)
    w.write(_rcpt("mallory", "m@refused.example", "i.3"))
    assert await _reply(r) == b"action=REJECT 5.7.1 locked\n\n"
    w.write(_req("carol", "END-OF-MESSAGE").replace(b"queue_id=Q1", b"queue_id=Q3")
            .replace(b"instance=i.1", b"instance=i.3"))
    assert await _reply(r) == b"action=DUNNO\n\n"
    w.close()
    first, second, third = events
    assert isinstance(first, SendEvent) and isinstance(second, SendEvent)
    assert isinstance(third, SendEvent)
    assert first.recipient_domains is not None and second.recipient_domains is not None
    assert third.recipient_domains is None and third.recipient_domain_count is None
    assert third.user == "carol"
    assert first.recipient_domains == tuple(f"d{i}.example" for i in range(32))
    assert first.recipient_domain_count == 40
    assert second.recipient_domains == ("other.example",)
    assert second.recipient_domain_count == 1
    import orjson

    validator = jsonschema.Draft202012Validator(_contract_send_schema())
    wire = [orjson.loads(encode_event(e)) for e in events]
    for d in wire:
        validator.validate(d)
    assert wire[0]["recipient_domain_count"] == 40 and len(wire[0]["recipient_domains"]) == 32
    assert "recipient_domains" not in wire[2] and "recipient_domain_count" not in wire[2]
    assert wire[2]["user"] == "carol"
