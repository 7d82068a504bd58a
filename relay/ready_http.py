"""A tiny HTTP endpoint for the hook's readiness, for load balancers, systemd checks and tests:

    GET /ready   503 {"ready": false, ...} while the locks topic is still being read (the policy
                 service already answers, from the saved lock book), 200 once caught up
    GET /status  200 with the same JSON

Bytes from the socket are hostile: one request line and headers of at most 8 KiB within 5 s,
then the connection is closed. No keep-alive, no body, GET/HEAD only.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

import orjson

log = logging.getLogger(__name__)

MAX_HEAD = 8 * 1024
READ_TIMEOUT = 5.0
_REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed",
            503: "Service Unavailable"}


class ReadyServer:
    def __init__(self, host: str, port: int, status: Callable[[], dict[str, Any]]) -> None:
        """`status()` returns a JSON-able dict with a boolean "ready"."""
        self.host, self.port = host, port
        self.status = status
        self._server: asyncio.Server | None = None

    @property
    def bound_port(self) -> int:
        assert self._server is not None
        return int(self._server.sockets[0].getsockname()[1])

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, self.host, self.port,
                                                  limit=MAX_HEAD)
        log.info("readiness on http://%s:%d/ready", self.host, self.bound_port)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await self._server.wait_closed()
            self._server = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            try:
                head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), READ_TIMEOUT)
            except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError,
                    ConnectionError):
                head = b""
            code, body, method = self._answer(head)
            data = b"" if method == "HEAD" else body
            writer.write(b"HTTP/1.1 %d %s\r\nContent-Type: application/json\r\n"
                         b"Content-Length: %d\r\nConnection: close\r\n\r\n"
                         % (code, _REASONS[code].encode(), len(body)) + data)
            with contextlib.suppress(ConnectionError):
                await writer.drain()
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    def _answer(self, head: bytes) -> tuple[int, bytes, str]:
        line = head.split(b"\r\n", 1)[0].decode("latin-1")
        parts = line.split(" ")
        if len(parts) != 3 or not parts[2].startswith("HTTP/"):
            return 400, b'{"error": "bad request"}', "GET"
        method, target = parts[0], parts[1].split("?", 1)[0]
        if method not in ("GET", "HEAD"):
            return 405, b'{"error": "GET only"}', method
        if target not in ("/ready", "/status"):
            return 404, b'{"error": "try /ready or /status"}', method
        status = self.status()
        code = 200 if target == "/status" or status.get("ready") else 503
        return code, orjson.dumps(status), method
