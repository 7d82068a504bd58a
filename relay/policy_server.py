"""asyncio Postfix policy service around the sans-I/O core in relay/policy_protocol.py.

One parser per connection (an asyncio.Protocol: no task, no stream buffer per connection);
connections stay open for as many requests as Postfix sends. Answers come from the in-RAM lock
book only: nothing here awaits Kafka. Send events are handed to the producer's non-blocking
`publish_nowait` (written ahead to the spool). On any protocol trouble we log and close without
a reply, so Postfix applies its `default_action` (DUNNO when configured to fail open).

Holding the line under load: at most `max_connections` are open (kept below RLIMIT_NOFILE with
room for the accept backlog and Kafka, so accept() never meets EMFILE); a new client over the
cap closes the longest-idle one (Postfix reopens its persistent connections). A request must
end within `request_deadline` seconds of its first byte and within `max_request_bytes`, and a
client that does not read its answers is closed once `MAX_WRITE_BUFFER` bytes wait for it.
Memory is bounded by max_connections x CONNECTION_BYTES_BOUND on top of the base process.

Each connection also tracks the distinct recipient domains of the message in progress (its RCPT
requests share one `instance`; relay/recipient_domains.py), so the END-OF-MESSAGE send event
carries `recipient_domains` and `recipient_domain_count`; refused recipients are not counted.

The hot path (issue 12): a whole request per read is checked by one regex that also captures
the attributes we read (after a connection's first request, a literal regex of its layout),
with no dict built (PolicyParser, PolicyRequest.hot); lock-book keys and recipient domains are
cached, replies are encoded once, reads go into one buffer per server, one write per read;
bench/policy_server_bench.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import resource
import time
from collections import Counter, OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from relayguard.foundation.errors import ConfigError
from relayguard.relay.lock_book import LockView
from relayguard.relay.log_throttle import RateLimitFilter
from relayguard.relay.policy_protocol import (
    DUNNO,
    MAX_ATTRIBUTES,
    MAX_REQUEST_BYTES,
    DecisionConfig,
    HotAttributes,
    PolicyParser,
    PolicyRequest,
    ProtocolError,
    decide_on,
    end_of_message_event,
    format_reply,
)
from relayguard.relay.recipient_domains import (
    DEFAULT_MAX_COUNTED,
    RecipientTracker,
    tracker_bytes_bound,
)
from relayguard.stream.records import Event

log = logging.getLogger(__name__)
# misbehaving clients: under attack these come by the hundred a second, so one line per 5 s
# (with the count held back); the ServerStats counters stay exact
clients_log = logging.getLogger(__name__ + ".clients")
clients_log.addFilter(RateLimitFilter(5.0))

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


# Per connection: an unfinished request (MAX_REQUEST_BYTES raw, plus up to MAX_ATTRIBUTES str
# objects of ~150 bytes overhead each), the write buffer cap, and the protocol, transport,
# socket and timer objects (~8 KiB). Measured RSS stays well below it (tests/integration/
# test_hook_under_load.py).
# The recipient-domain tracker (relay/recipient_domains.py) adds its own bound.
MAX_WRITE_BUFFER = 16 * 1024
READ_BUFFER = 64 * 1024  # one per server: a read takes at most this much


def connection_bytes_bound(max_counted_domains: int = DEFAULT_MAX_COUNTED) -> int:
    return (MAX_REQUEST_BYTES + MAX_ATTRIBUTES * 150 + MAX_WRITE_BUFFER + 8 * 1024
            + tracker_bytes_bound(max_counted_domains))


CONNECTION_BYTES_BOUND = connection_bytes_bound()
DEFAULT_MAX_CONNECTIONS = 2048
BACKLOG = 100
# descriptors kept free for what is not a policy connection: Kafka sockets, spool and log
# files, epoll, the resolver's threads, plus log(2) slack
RESERVED_FDS = 192  # Kafka client sockets, spool and lock-book files, threads, logs


def connection_cap(wanted: int, nofile: int, backlog: int = BACKLOG) -> int:
    """The connection cap that keeps accept() clear of EMFILE under an open-file limit.

    asyncio accepts up to `backlog` sockets in one go before any connection_made() can evict,
    and an evicted socket is closed one loop turn later: hence 2 x backlog of headroom."""
    room = nofile - 2 * backlog - RESERVED_FDS
    if room < 16:
        raise ConfigError(f"open-file limit {nofile} leaves no room for policy connections",
                          "raise LimitNOFILE (systemd) or `ulimit -n`; 65536 is usual")
    return max(1, min(wanted, room))


def raise_nofile_limit() -> tuple[int, int]:
    """Raise the soft RLIMIT_NOFILE to the hard one; return (soft, hard) now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
    if soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError) as exc:
            log.warning("could not raise the open-file limit from %d to %d: %s", soft, target,
                        exc)
    return soft, hard


@dataclass(slots=True)
class ServerStats:
    connections: int = 0
    open_connections: int = 0
    requests: int = 0
    rejected: int = 0  # any non-DUNNO answer
    refused_by: Counter[str] = field(default_factory=Counter)  # rejected, by the action's verb
    protocol_errors: int = 0
    events_published: int = 0
    evicted: int = 0  # closed to make room under the connection cap
    deadline_closed: int = 0  # request not finished within request_deadline
    idle_closed: int = 0
    slow_readers_closed: int = 0


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
        request_deadline: float = 10.0,
        max_request_bytes: int = MAX_REQUEST_BYTES,
        max_connections: int | None = None,
        unix_mode: int = 0o660,
        max_counted_domains: int = DEFAULT_MAX_COUNTED,
    ) -> None:
        """`max_counted_domains`: distinct recipient domains counted per message (Postfix's
        smtpd_recipient_limit); each connection may hold that many 64-bit hashes."""
        self.listen = listen
        self.locks = locks
        self.config = config
        self.relay_id = relay_id
        self.publish = publish
        self.clock = clock
        self.idle_timeout = idle_timeout
        self.request_deadline = request_deadline
        self.max_request_bytes = max_request_bytes
        nofile = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        self.max_connections = connection_cap(max_connections or DEFAULT_MAX_CONNECTIONS, nofile)
        if max_connections is not None and self.max_connections < max_connections:
            log.warning("connection cap lowered from %d to %d to stay below the open-file "
                        "limit %d", max_connections, self.max_connections, nofile)
        self.unix_mode = unix_mode
        RecipientTracker(max_counted_domains)  # a bad limit fails here, not per connection
        self.max_counted_domains = max_counted_domains
        self.connection_bytes_bound = connection_bytes_bound(max_counted_domains)
        # the three actions decide() returns, encoded once
        self._replies = {a: format_reply(a) for a in (DUNNO, config.reject_action,
                                                       config.throttle_action)}
        self.stats = ServerStats()
        self._read_view = memoryview(bytearray(READ_BUFFER))  # shared by the connections
        self._server: asyncio.Server | None = None
        # open connections, least recently active first (the eviction order)
        self._conns: OrderedDict[_Connection, None] = OrderedDict()
        self._last_evict_log = 0.0
        self._evicted_since_log = 0

    @property
    def memory_bound(self) -> int:
        """Bytes the open connections can hold at most, on top of the base process."""
        return self.max_connections * self.connection_bytes_bound

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
        log.info("policy service listening on %s (at most %d connections, request deadline "
                 "%gs, %d bytes a request; memory bound %d MiB)", self.bound,
                 self.max_connections, self.request_deadline, self.max_request_bytes,
                 self.memory_bound >> 20)

    async def _listen(self) -> None:
        loop = asyncio.get_running_loop()
        if self.listen.kind == "unix":
            path = Path(self.listen.path)
            if path.is_socket():
                if await _unix_alive(path):
                    raise OSError(98, "a running service owns this socket")
                path.unlink()  # left over from a crash
            self._server = await loop.create_unix_server(
                lambda: _Connection(self), path=str(path), backlog=BACKLOG)
            os.chmod(path, self.unix_mode)
        else:
            self._server = await loop.create_server(
                lambda: _Connection(self), host=self.listen.host, port=self.listen.port,
                reuse_address=True, backlog=BACKLOG)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            for conn in list(self._conns):
                conn.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 5)
            self._server = None
            if self.listen.kind == "unix":
                Path(self.listen.path).unlink(missing_ok=True)

    # ---- connection registry (called by _Connection) -------------------------------------------

    def _admit(self, conn: _Connection) -> None:
        self.stats.connections += 1
        while len(self._conns) >= self.max_connections:
            oldest, _ = self._conns.popitem(last=False)
            oldest.close()
            self.stats.evicted += 1
            self._evicted_since_log += 1
        self._conns[conn] = None
        self.stats.open_connections = len(self._conns)
        if self._evicted_since_log:
            now = time.monotonic()
            if now - self._last_evict_log >= 10:  # a flood must not flood the log
                log.warning("connection cap %d reached: closed %d longest-idle connection(s) "
                            "(%d in total)", self.max_connections, self._evicted_since_log,
                            self.stats.evicted)
                self._last_evict_log = now
                self._evicted_since_log = 0

    def _forget(self, conn: _Connection) -> None:
        self._conns.pop(conn, None)
        self.stats.open_connections = len(self._conns)

    def _answer(self, req: PolicyRequest, hot: HotAttributes, conn: _Connection) -> str:
        """`hot` is `req.hot`, read once for the request."""
        now = self.clock()
        self.stats.requests += 1
        state = hot.protocol_state
        if state is not None and state != "RCPT" and state != "END-OF-MESSAGE":
            state = state.upper()  # Postfix writes them upper-case; others may not
        action = decide_on(hot.sasl_username or None, state or "", hot.client_address,
                           self.locks, now, self.config)
        recipients = None
        if state == "RCPT":
            if action == DUNNO:  # a refused recipient is not one of the message's
                conn.recipients.rcpt(hot.instance, hot.recipient)
        elif state == "END-OF-MESSAGE":
            recipients = conn.recipients.finish(hot.instance)
        if action != DUNNO:
            self.stats.rejected += 1
            self.stats.refused_by[action.split(" ", 1)[0]] += 1
            log.info("policy: %s user=%s client=%s state=%s", action, req.sasl_username,
                     req.client_address, req.protocol_state)
        elif self.publish is not None and state == "END-OF-MESSAGE":  # as send_event_from
            event = end_of_message_event(req, self.relay_id, now, self.config.user_names,
                                         recipients)
            try:
                if event is not None and self.publish(event):
                    self.stats.events_published += 1
            except Exception:  # publishing trouble must never cost the answer
                log.exception("could not publish send event %s", event and event.event_id)
        return action


class _Connection(asyncio.BufferedProtocol):
    """One policy client. A single timer per connection, re-armed lazily: it fires at the
    earliest of idle expiry and request deadline and re-checks, so a request costs no timer.

    Reads go into the server's one read buffer (`recv_into`; asyncio calls get_buffer, reads,
    then buffer_updated, with nothing in between), not into the fresh 256 KiB bytes object a
    plain Protocol's recv() allocates per read: above glibc's mmap threshold that is an mmap
    and munmap per request (~10 us) until the threshold happens to have grown."""

    def __init__(self, server: PolicyServer) -> None:
        self.server = server
        self.parser = PolicyParser(max_request_bytes=server.max_request_bytes)
        self.recipients = RecipientTracker(server.max_counted_domains)
        self.transport: asyncio.Transport | None = None
        self.peer: object = "unix"
        self.last_active = 0.0
        self.request_started = 0.0
        self.timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.peer = transport.get_extra_info("peername") or "unix"
        self.last_active = time.monotonic()
        self.server._admit(self)
        self._arm(self.last_active + self.server.idle_timeout)

    def get_buffer(self, sizehint: int) -> memoryview:
        return self.server._read_view

    def buffer_updated(self, nbytes: int) -> None:
        self.data_received(bytes(self.server._read_view[:nbytes]))

    def data_received(self, data: bytes) -> None:
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        srv = self.server
        parser = self.parser
        was_pending = parser.pending
        try:
            requests = parser.feed(data)
        except ProtocolError as exc:
            srv.stats.protocol_errors += 1
            clients_log.warning("policy client %s: protocol error (%s); closing without "
                                "reply", self.peer, exc)
            self.close()
            return
        now = time.monotonic()
        if requests:
            out: list[bytes] = []
            failed = False
            replies = srv._replies
            try:
                for req in requests:
                    hot = req.hot
                    if hot.request != "smtpd_access_policy":
                        srv.stats.protocol_errors += 1
                        clients_log.warning("policy client %s: unsupported request=%r; "
                                            "closing", self.peer, req.request)
                        failed = True
                        break
                    action = srv._answer(req, hot, self)
                    out.append(replies.get(action) or format_reply(action))
            except Exception:  # a bug must not kill the server: Postfix uses default_action
                log.exception("policy connection from %s failed; closing it", self.peer)
                failed = True
            if out:  # the answers before the trouble still count; one write per read
                transport.write(out[0] if len(out) == 1 else b"".join(out))
            if failed:
                self.close()
                return
            if transport.get_write_buffer_size() > MAX_WRITE_BUFFER:
                srv.stats.slow_readers_closed += 1
                clients_log.warning("policy client %s does not read its answers; closing",
                                    self.peer)
                self.close()
                return
            self.last_active = now
            conns = srv._conns  # most recently active last (the eviction order)
            if self in conns:
                conns.move_to_end(self)
        if parser.pending and (requests or not was_pending):
            self.request_started = now  # a request began in this read
            due = now + srv.request_deadline
            if self.timer is None or due < self.timer.when():
                self._arm(due)

    def eof_received(self) -> bool:
        if self.parser.pending:
            log.debug("policy client %s disconnected mid-request", self.peer)
        return False  # close our side too

    def connection_lost(self, exc: Exception | None) -> None:
        if exc is not None:
            log.debug("policy client %s went away: %s", self.peer, exc)
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        self.server._forget(self)

    def close(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if self.transport is not None:
            self.transport.abort()  # no lingering: the descriptor is what we are short of

    def _arm(self, when: float) -> None:
        if self.timer is not None:
            self.timer.cancel()
        self.timer = asyncio.get_running_loop().call_at(when, self._expire)

    def _expire(self) -> None:
        self.timer = None
        now = time.monotonic()
        srv = self.server
        if self.parser.pending:
            due = self.request_started + srv.request_deadline
            if now >= due:
                srv.stats.deadline_closed += 1
                clients_log.info("policy client %s: request unfinished after %gs; closing",
                                 self.peer, srv.request_deadline)
                self.close()
                return
        else:
            due = self.last_active + srv.idle_timeout
            if now >= due:
                srv.stats.idle_closed += 1
                clients_log.info("policy client %s idle for %.0fs; closing", self.peer,
                                 srv.idle_timeout)
                self.close()
                return
        self._arm(due)


async def _unix_alive(path: Path) -> bool:
    try:
        _, w = await asyncio.open_unix_connection(str(path))
    except OSError:
        return False
    w.close()
    return True
