"""asyncio Postfix policy service around the sans-I/O core in relay/policy_protocol.py.

One parser per connection; connections stay open for as many requests as Postfix sends. Answers
come from the in-RAM lock book only: nothing here awaits Kafka. Send events are handed to the
producer's non-blocking `publish_nowait`. On any protocol trouble we log and close without a
reply, so Postfix applies its `default_action` (DUNNO when configured to fail open).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from relayguard.foundation.errors import ConfigError
from relayguard.relay.lock_book import LockView
from relayguard.relay.policy_protocol import (
    DUNNO,
    DecisionConfig,
    PolicyParser,
    PolicyRequest,
    ProtocolError,
    decide,
    format_reply,
    send_event_from,
)
from relayguard.stream.records import Event

log = logging.getLogger(__name__)

Publish = Callable[[Event], bool]


@dataclass(frozen=True, slots=True)
class ListenAddress:
    kind: str  # "inet" or "unix"
    host: str = ""
    port: int = 0
    path: str = ""

    def __str__(self) -> str:
        return f"unix:{self.path}" if self.kind == "unix" else f"inet:{self.host}:{self.port}"


def parse_listen(text: str) -> ListenAddress:
    """`inet:127.0.0.1:10040`, `inet:[::1]:10040`, `127.0.0.1:10040` or `unix:/path/sock`."""
    if text.startswith("unix:"):
        if not text[5:]:
            raise ConfigError(f"--listen {text!r}: no socket path",
                              "e.g. unix:/run/relayguard.sock")
        return ListenAddress("unix", path=text[5:])
    rest = text.removeprefix("inet:")
    host, sep, port = rest.rpartition(":")
    if not sep or not port.isdigit() or not host or int(port) > 65535:
        raise ConfigError(f"--listen {text!r} is not inet:HOST:PORT or unix:PATH",
                          "e.g. inet:127.0.0.1:10040, as in Postfix's check_policy_service")
    return ListenAddress("inet", host=host.strip("[]"), port=int(port))


@dataclass(slots=True)
class ServerStats:
    connections: int = 0
    open_connections: int = 0
    requests: int = 0
    rejected: int = 0  # any non-DUNNO answer
    protocol_errors: int = 0
    events_published: int = 0


class PolicyServer:
    def __init__(
        self,
        listen: ListenAddress,
        locks: LockView,
        config: DecisionConfig,
        relay_id: str,
        publish: Publish | None = None,
        *,
        clock: Callable[[], float] = time.time,
        idle_timeout: float = 600.0,
        unix_mode: int = 0o660,
    ) -> None:
        self.listen = listen
        self.locks = locks
        self.config = config
        self.relay_id = relay_id
        self.publish = publish
        self.clock = clock
        self.idle_timeout = idle_timeout
        self.unix_mode = unix_mode
        self.stats = ServerStats()
        self._server: asyncio.Server | None = None
        self._conns: set[asyncio.Task[None]] = set()

    @property
    def bound(self) -> ListenAddress:
        """The address actually listened on (port 0 resolved)."""
        if self._server is None or self.listen.kind == "unix":
            return self.listen
        host, port = self._server.sockets[0].getsockname()[:2]
        return ListenAddress("inet", host=host, port=port)

    async def start(self) -> None:
        try:
            await self._listen()
        except OSError as exc:
            raise ConfigError(f"cannot listen on {self.listen}: {exc.strerror or exc}",
                              "another policy service may be running there; pick another "
                              "--listen address or stop it") from exc
        log.info("policy service listening on %s", self.bound)

    async def _listen(self) -> None:
        if self.listen.kind == "unix":
            path = Path(self.listen.path)
            if path.is_socket():
                if await _unix_alive(path):
                    raise OSError(98, "a running service owns this socket")
                path.unlink()  # left over from a crash
            self._server = await asyncio.start_unix_server(self._serve, path=str(path))
            os.chmod(path, self.unix_mode)
        else:
            self._server = await asyncio.start_server(
                self._serve, host=self.listen.host, port=self.listen.port, reuse_address=True
            )

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            for task in list(self._conns):
                task.cancel()
            await asyncio.gather(*self._conns, return_exceptions=True)
            with contextlib.suppress(Exception):
                await self._server.wait_closed()
            self._server = None
            if self.listen.kind == "unix":
                Path(self.listen.path).unlink(missing_ok=True)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._conns.add(task)
        self.stats.connections += 1
        self.stats.open_connections += 1
        peer = writer.get_extra_info("peername") or "unix"
        try:
            await self._converse(reader, writer, peer)
        except (ConnectionError, asyncio.IncompleteReadError) as exc:
            log.debug("policy client %s went away: %s", peer, exc)
        except Exception:  # a bug must not kill the server: Postfix falls back to default_action
            log.exception("policy connection from %s failed; closing it", peer)
        finally:
            self.stats.open_connections -= 1
            self._conns.discard(task)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _converse(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, peer: object
    ) -> None:
        parser = PolicyParser()
        while True:
            try:
                async with asyncio.timeout(self.idle_timeout):  # no extra task, unlike wait_for
                    data = await reader.read(65536)
            except TimeoutError:
                log.info("policy client %s idle for %.0fs; closing", peer, self.idle_timeout)
                return
            if not data:
                if parser.pending:
                    log.debug("policy client %s disconnected mid-request", peer)
                return
            try:
                requests = parser.feed(data)
            except ProtocolError as exc:
                self.stats.protocol_errors += 1
                log.warning("policy client %s: protocol error (%s); closing without reply",
                            peer, exc)
                return
            if not requests:
                continue
            out = bytearray()
            for req in requests:
                if req.request != "smtpd_access_policy":
                    self.stats.protocol_errors += 1
                    log.warning("policy client %s: unsupported request=%r; closing", peer,
                                req.request)
                    return
                out += format_reply(self._answer(req))
            writer.write(bytes(out))
            await writer.drain()

    def _answer(self, req: PolicyRequest) -> str:
        now = self.clock()
        self.stats.requests += 1
        action = decide(req, self.locks, now, self.config)
        if action != DUNNO:
            self.stats.rejected += 1
            log.info("policy: %s user=%s client=%s state=%s", action, req.sasl_username,
                     req.client_address, req.protocol_state)
        elif self.publish is not None:
            event = send_event_from(req, self.relay_id, now)
            try:
                if event is not None and self.publish(event):
                    self.stats.events_published += 1
            except Exception:  # publishing trouble must never cost the answer
                log.exception("could not publish send event %s", event and event.event_id)
        return action


async def _unix_alive(path: Path) -> bool:
    try:
        _, w = await asyncio.open_unix_connection(str(path))
    except OSError:
        return False
    w.close()
    return True
