"""The hook's readiness endpoint: 503 while catching up, 200 after; junk gets 400/404/405."""

from __future__ import annotations

import asyncio

import orjson

from relayguard.relay.ready_http import ReadyServer


async def _get(port: int, raw: bytes) -> tuple[int, bytes]:
    r, w = await asyncio.open_connection("127.0.0.1", port)
    w.write(raw)
    data = await asyncio.wait_for(r.read(), 5)
    w.close()
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split(b" ")[1]), body


async def test_ready_follows_the_status() -> None:
    state = {"ready": False, "locks_known": 3}
    srv = ReadyServer("127.0.0.1", 0, lambda: dict(state))
    await srv.start()
    try:
        port = srv.bound_port
        code, body = await _get(port, b"GET /ready HTTP/1.1\r\nHost: x\r\n\r\n")
        assert code == 503 and orjson.loads(body) == state
        assert (await _get(port, b"GET /status HTTP/1.0\r\n\r\n"))[0] == 200
        state["ready"] = True
        assert (await _get(port, b"GET /ready?x=1 HTTP/1.1\r\n\r\n"))[0] == 200
        assert await _get(port, b"HEAD /ready HTTP/1.1\r\n\r\n") == (200, b"")
        assert (await _get(port, b"GET /other HTTP/1.1\r\n\r\n"))[0] == 404
        assert (await _get(port, b"POST /ready HTTP/1.1\r\n\r\n"))[0] == 405
        assert (await _get(port, b"\x00\xff garbage\r\n\r\n"))[0] == 400
        assert (await _get(port, b"GET /ready HTTP/1.1\r\nX: " + b"a" * 9000))[0] == 400
    finally:
        await srv.stop()


def test_hook_postfix_refuses_a_bad_http_address() -> None:
    from click.testing import CliRunner

    from relayguard.roof.cli import main

    result = CliRunner().invoke(main, ["hook", "postfix", "--listen", "inet:127.0.0.1:0",
                                       "--http", "nohost", "--ready-timeout", "3"])
    assert result.exit_code == 2, result.output
    assert "--http 'nohost' is not HOST:PORT" in result.output
