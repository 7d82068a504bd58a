"""`--metrics-listen HOST:PORT`: a small HTTP endpoint serving GET /metrics for a hook.

It runs on the hook's own event loop (asyncio server, no thread), so scraping reads the hook's
objects where they live. Whoever connects is untrusted: the request head is capped at
MAX_HEAD_BYTES and DEADLINE seconds, at most MAX_CLIENTS connections are served at once, and
only `GET /metrics` (or HEAD) gets an answer other than 4xx.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from relayguard.foundation.errors import ConfigError
from relayguard.relay.metrics import CONTENT_TYPE, HookMetrics

log = logging.getLogger(__name__)
MAX_HEAD_BYTES = 8192
DEADLINE = 5.0
MAX_CLIENTS = 16

Render = Callable[[], Awaitable[bytes]]


def parse_host_port(text: str) -> tuple[str, int]:
    """`127.0.0.1:9464` or `[::1]:9464` -> (host, port)."""
    host, sep, port = text.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise ConfigError(f"--metrics-listen {text!r} is not HOST:PORT",
                          "e.g. --metrics-listen 127.0.0.1:9464 ([::1]:9464 for IPv6)")
    return host, int(port)


class MetricsEndpoint:
    def __init__(self, host: str, port: int, render: Render) -> None:
        self.host = host
        self.requested_port = port
        self.render = render
        self._server: asyncio.Server | None = None
        self._clients = 0

    @property
    def port(self) -> int:
        """The bound port (the one asked for, or the kernel's pick for 0)."""
        if self._server is None or not self._server.sockets:
            return self.requested_port
        return int(self._server.sockets[0].getsockname()[1])

    async def start(self) -> None:
        try:
            self._server = await asyncio.start_server(self._client, self.host,
                                                      self.requested_port, limit=MAX_HEAD_BYTES)
        except OSError as exc:
            raise ConfigError(f"cannot serve metrics on {self.host}:{self.requested_port}: "
                              f"{exc.strerror or exc}",
                              "pick a free port for --metrics-listen, or stop what holds it"
                              ) from None
        log.info("metrics at http://%s:%d/metrics", self.host, self.port)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), DEADLINE)
            self._server = None

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._clients >= MAX_CLIENTS:
            writer.close()
            return
        self._clients += 1
        try:
            await asyncio.wait_for(self._serve(reader, writer), DEADLINE)
        except (TimeoutError, ConnectionError, asyncio.IncompleteReadError,
                asyncio.LimitOverrunError):
            pass  # slow, oversized or vanished client: just close
        except Exception:  # a bug here must not take the hook down
            log.exception("metrics endpoint: request failed")
        finally:
            self._clients -= 1
            writer.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        parts = head.split(b"\r\n", 1)[0].decode("latin-1").split(" ")
        if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
            status, body, ctype = "400 Bad Request", b"bad request\n", "text/plain"
        elif parts[0] not in ("GET", "HEAD"):
            status, body, ctype = "405 Method Not Allowed", b"GET /metrics only\n", "text/plain"
        elif parts[1].split("?", 1)[0] != "/metrics":
            status, body, ctype = "404 Not Found", b"see /metrics\n", "text/plain"
        else:
            status, body, ctype = "200 OK", await self.render(), CONTENT_TYPE
        writer.write(f"HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: "
                     f"{len(body)}\r\nConnection: close\r\n\r\n".encode())
        if parts[0] != "HEAD":
            writer.write(body)
        await writer.drain()


class HookMetricsService:
    """A hook's metrics and their endpoint, stopped together (endpoint None: not served)."""

    def __init__(self, metrics: HookMetrics, endpoint: MetricsEndpoint | None) -> None:
        self.metrics = metrics
        self.endpoint = endpoint

    async def stop(self) -> None:
        if self.endpoint is not None:
            await self.endpoint.stop()
        await self.metrics.stop()


async def serve_hook_metrics(listen: str | None, metrics: HookMetrics) -> HookMetricsService:
    """Serve `metrics` on `listen` (HOST:PORT, from --metrics-listen); None: not at all."""
    if not listen:
        return HookMetricsService(metrics, None)
    host, port = parse_host_port(listen)
    endpoint = MetricsEndpoint(host, port, metrics.render)
    await endpoint.start()
    await metrics.start()
    return HookMetricsService(metrics, endpoint)
