"""Load Postfix policy servers over loopback with a compiled client, same request mix for all.

    .venv/bin/python bench/policy_server_bench.py [--connections 1,16,50] [--requests 6000]
        [--only NAME,...] [--policyd-python PATH] [--baseline-tree DIR] [--rounds N]
    .venv/bin/python bench/policy_server_bench.py --own-cost [--baseline-tree DIR]

Each server runs in its own process; the client is bench/load_client.c (compiled on first use
into ~/.cache/relayguard/bench), one thread per connection, each sending Postfix 3.7's full
29-attribute requests one after another and waiting for every answer (as smtpd processes do).
The client's own CPU seconds are printed beside each row, so you can see it was not the limit.
Servers, measured in the same run:
  streams    : bare asyncio-streams server answering `action=DUNNO` per request, no parsing;
  protocol   : bare asyncio.Protocol server answering `action=DUNNO`, no parsing;
  buffered   : the same as an asyncio.BufferedProtocol (recv_into one buffer; not in the
               default list), as relayguard's server reads;
  relayguard : relay.policy_server.PolicyServer, 10 000 locks in its book (1 in 10 requests is
               for a locked user), END-OF-MESSAGE requests publishing to a no-op sink;
  +spool     : the same, publishing through relay.producer.EventProducer (write-ahead disk
               spool in a tmp dir; a stand-in Kafka client acknowledges at once);
  policyd-rl : policyd-rate-limit 1.2.0 (sqlite backend, limits by SASL user), installed by
               scripts/fetch-policyd-rate-limit.sh; skipped with a note when it is not there.
               --policyd-count-mode 0 (default): it counts at RCPT, the state this mix
               mostly sends (in its own default mode 1 it counts only DATA requests and
               answers every other request `dunno` untouched: that times its parser alone).
  relayguard@base : with --baseline-tree DIR, the same relayguard server imported from DIR (an
               export of an earlier commit: `git archive COMMIT | tar -x -C DIR`), so a change
               is measured against its own baseline in the same run (and +spool@base beside
               +spool when that is measured).
--requests is the total per server and connection count. Figures only; nothing is pass/fail.

--own-cost: relayguard's own CPU per request without sockets: the server's data_received fed
the request mix over 16 connections whose transport drops writes, in a child process per tree
(this one, and --baseline-tree's), the trees alternated three times, best of 7 passes each.
For a figure the host's load cannot move, count instructions: run the child under valgrind
at two sizes and divide the difference (instructions per request):

    valgrind --tool=cachegrind --cache-sim=no --cachegrind-out-file=/dev/null \
        .venv/bin/python bench/policy_server_bench.py --own-cost-child . 2000   # then 4000
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from multiprocessing.connection import Connection
from pathlib import Path

HERE = Path(__file__).resolve().parent
CACHE = Path.home() / ".cache" / "relayguard"
POLICYD_PYTHON = CACHE / "policyd-rate-limit" / "bin" / "python"

# Postfix 3.7's attributes (postfix.org/SMTPD_POLICY_README.html): all 29, in its order.
REQ = ("request=smtpd_access_policy\nprotocol_state={state}\nprotocol_name=ESMTP\n"
       "client_address=203.0.113.{ip}\nclient_name=mail.example.net\n"
       "reverse_client_name=mail.example.net\nhelo_name=mail.example.net\nsender={user}\n"
       "recipient={rcpt}\nrecipient_count={rc}\nqueue_id={q}\ninstance=8e1.6543abcd.{conn}.0\n"
       "size=2048\netrn_domain=\nstress=\nsasl_method=PLAIN\nsasl_username={user}\n"
       "sasl_sender=\nccert_subject=\nccert_issuer=\nccert_fingerprint=\n"
       "ccert_pubkey_fingerprint=\nencryption_protocol=TLSv1.3\n"
       "encryption_cipher=TLS_AES_256_GCM_SHA384\nencryption_keysize=256\n"
       "client_port={port}\npolicy_context=\nserver_address=127.0.0.1\nserver_port=587\n\n")


def request_mix(n: int = 2000) -> bytes:
    """RCPT checks, with every fourth an END-OF-MESSAGE; one in ten for a locked user."""
    out = []
    for i in range(n):
        conn = i % 64
        user = f"locked{i}@example.com" if i % 10 == 0 else f"user{conn}@example.com"
        state = "END-OF-MESSAGE" if i % 4 == 3 else "RCPT"
        out.append(REQ.format(state=state, ip=conn % 250, user=user, rcpt="rcpt@example.org"
                              if state == "RCPT" else "", rc=1 if state != "RCPT" else 0,
                              q=f"Q{conn}X{i}", conn=conn, port=40000 + conn))
    return "".join(out).encode()


def load_client() -> Path:
    """Compile bench/load_client.c once per source change."""
    src = HERE / "load_client.c"
    out = CACHE / "bench" / f"load_client-{int(src.stat().st_mtime)}"
    if not out.exists():
        out.parent.mkdir(parents=True, exist_ok=True)
        cc = shutil.which("cc") or shutil.which("gcc")
        if cc is None:
            sys.exit("bench/policy_server_bench.py needs a C compiler (apt-get install gcc)")
        subprocess.run([cc, "-O2", "-pthread", "-o", str(out), str(src)], check=True)
    return out


def _streams_server(ready: Connection) -> None:
    async def serve(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        try:
            while True:
                await r.readuntil(b"\n\n")
                w.write(b"action=DUNNO\n\n")
                await w.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            w.close()

    async def main() -> None:
        srv = await asyncio.start_server(serve, "127.0.0.1", 0, backlog=1024)
        ready.send(srv.sockets[0].getsockname()[1])
        await asyncio.Event().wait()

    asyncio.run(main())


class _DunnoProtocol(asyncio.Protocol):
    def __init__(self) -> None:
        self.buf = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buf += data
        n = self.buf.count(b"\n\n")
        if n:
            self.buf = self.buf[self.buf.rindex(b"\n\n") + 2:]
            self.transport.write(b"action=DUNNO\n\n" * n)


class _DunnoBufferedProtocol(asyncio.BufferedProtocol):
    """_DunnoProtocol reading into one preallocated buffer (recv_into) instead of asyncio's
    recv(256 KiB) per read, which allocates (and, above glibc's mmap threshold, maps and
    unmaps) 256 KiB each time."""

    _shared = bytearray(64 * 1024)
    _view = memoryview(_shared)

    def __init__(self) -> None:
        self.buf = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def get_buffer(self, sizehint: int) -> memoryview:
        return self._view

    def buffer_updated(self, nbytes: int) -> None:
        self.buf += self._shared[:nbytes]
        n = self.buf.count(b"\n\n")
        if n:
            self.buf = self.buf[self.buf.rindex(b"\n\n") + 2:]
            self.transport.write(b"action=DUNNO\n\n" * n)


def _serve_protocol(ready: Connection, factory: Callable[[], asyncio.BaseProtocol]) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        srv = await loop.create_server(factory, "127.0.0.1", 0, backlog=1024)
        ready.send(srv.sockets[0].getsockname()[1])
        await asyncio.Event().wait()

    asyncio.run(main())


def _protocol_server(ready: Connection) -> None:
    _serve_protocol(ready, _DunnoProtocol)


def _buffered_server(ready: Connection) -> None:
    _serve_protocol(ready, _DunnoBufferedProtocol)


def _relayguard_server(ready: Connection, spool: bool = False) -> None:
    from relayguard.relay.lock_book import LockBook
    from relayguard.relay.policy_protocol import DecisionConfig
    from relayguard.relay.policy_server import ListenAddress, PolicyServer
    from relayguard.stream.records import Event, LockCommand

    book = LockBook()
    for i in range(0, 10_000):
        book.apply(LockCommand(f"c{i}", f"locked{i}@example.com", "user", "lock", "bench", "d",
                               {}, 0.0, None, "bench", 1))

    def sink(_: Event) -> bool:
        return True

    async def main() -> None:
        publish: Callable[[Event], bool] = sink
        if spool:
            from relayguard.relay.producer import EventProducer

            producer = EventProducer("bench:0", "events", Path(tempfile.mkdtemp()) / "spool",
                                     producer_factory=_InstantKafka)
            await producer.start()
            publish = producer.publish_nowait
        srv = PolicyServer(ListenAddress("inet", "127.0.0.1", 0), book, DecisionConfig(),
                           "bench", publish=publish)
        await srv.start()
        ready.send(srv.bound.port)
        await asyncio.Event().wait()

    asyncio.run(main())


BASELINE_TREE: list[str] = []  # set by --baseline-tree before the server processes fork


def _relayguard_base_server(ready: Connection) -> None:
    sys.path.insert(0, BASELINE_TREE[0])  # forked before any relayguard import: DIR wins
    _relayguard_server(ready)


def _relayguard_spool_server(ready: Connection) -> None:
    _relayguard_server(ready, spool=True)


def _relayguard_spool_base_server(ready: Connection) -> None:
    sys.path.insert(0, BASELINE_TREE[0])
    _relayguard_server(ready, spool=True)


class _InstantKafka:
    """Stands in for AIOKafkaProducer: every send is acknowledged at once."""

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        pass

    async def send(self, topic: str, value: bytes, key: bytes) -> asyncio.Future[None]:
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        fut.set_result(None)
        return fut


# policyd-rate-limit's own start script drops privileges to a user that does not exist here;
# this does what it does after that: read the config, create the database, serve.
POLICYD_MAIN = """
import sys
from policyd_rate_limit import utils
from policyd_rate_limit.utils import config
from policyd_rate_limit.policyd import Policyd
config.setup(sys.argv[1])
utils.database_init()
p = Policyd()
p.socket()
p.run()
"""

POLICYD_CONF = """debug: False
pidfile: "{dir}/pid"
sqlite_config:
    database: "{dir}/db.sqlite3"
backend: 0
SOCKET: ["127.0.0.1", {port}]
limits:
    - [1000000000, 60]
limits_by_id: {{}}
sql_limits_by_id: ""
limit_by_sasl: True
limit_by_sender: False
limit_by_ip: False
limited_networks: []
success_action: "dunno"
fail_action: "defer_if_permit Rate limit reach, retry later"
db_error_action: "dunno"
report: False
delay_to_close: 300
count_mode: {count_mode}
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_port(port: int, deadline: float) -> None:
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"no server on port {port}")


def _client(client: Path, port: int, conns: int, per_conn: int, reqs: Path) -> dict[str, float]:
    out = subprocess.run([str(client), str(port), str(conns), str(per_conn), str(reqs)],
                         check=True, capture_output=True, text=True, timeout=600).stdout
    return {k: float(v) for k, v in (kv.split("=") for kv in out.split())}


def _cpu_seconds(pid: int) -> float:
    """User + system CPU of one process so far (Linux /proc; clock ticks, usually 10 ms)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _measure(name: str, port: int, client: Path, conns: int, total: int, reqs: Path,
             pid: int) -> None:
    """One row. Besides the rates, the server's own CPU per request: on this shared host the
    wall-clock rates move with other load, CPU per request much less (it is what the server
    would need on a quiet machine, so 1e6 / (it) is its one-core ceiling)."""
    per_conn = max(1, total // conns)
    _client(client, port, conns, max(1, per_conn // 10), reqs)  # warm-up
    cpu0 = _cpu_seconds(pid)
    f = _client(client, port, conns, per_conn, reqs)
    cpu_us = (_cpu_seconds(pid) - cpu0) / f["requests"] * 1e6
    print(f"{name:15s} {conns:3d} conn {f['rps']:9,.0f} req/s   p50 {f['p50_ms']:6.2f} ms   "
          f"p90 {f['p90_ms']:6.2f} ms   p99 {f['p99_ms']:6.2f} ms   p99.9 {f['p999_ms']:6.2f} ms   "
          f"server CPU {cpu_us:6.1f} us/req   client CPU "
          f"{f['client_cpu_s'] / f['wall_s']:4.0%} of a core   ({int(f['requests'])} requests)",
          flush=True)


def _run_python(name: str, target: Callable[[Connection], None], client: Path,
                conns: list[int], total: int, reqs: Path) -> None:
    parent, child = mp.Pipe()
    proc = mp.Process(target=target, args=(child,), daemon=True)
    proc.start()
    try:
        port = parent.recv()
        assert proc.pid is not None
        for c in conns:
            _measure(name, port, client, c, total, reqs, proc.pid)
    finally:
        proc.terminate()
        proc.join()


def _run_policyd(python: Path, client: Path, conns: list[int], total: int, reqs: Path,
                 count_mode: int) -> None:
    if not python.exists():
        print(f"policyd-rl  skipped: {python} missing (run scripts/fetch-policyd-rate-limit.sh)")
        return
    work = Path(tempfile.mkdtemp(prefix="relayguard-policyd-"))
    port = _free_port()
    (work / "conf.yaml").write_text(POLICYD_CONF.format(dir=work, port=port,
                                                        count_mode=count_mode))
    with open(work / "log", "w") as log:
        proc = subprocess.Popen([str(python), "-c", POLICYD_MAIN, str(work / "conf.yaml")],
                                stdout=subprocess.DEVNULL, stderr=log)
    try:
        _wait_port(port, time.monotonic() + 20)
        for c in conns:
            _measure("policyd-rl", port, client, c, total, reqs, proc.pid)
    finally:
        proc.terminate()
        proc.wait(10)
        shutil.rmtree(work, ignore_errors=True)


SERVERS: dict[str, Callable[[Connection], None]] = {
    "streams": _streams_server, "protocol": _protocol_server, "buffered": _buffered_server,
    "relayguard": _relayguard_server, "+spool": _relayguard_spool_server,
    "relayguard@base": _relayguard_base_server, "+spool@base": _relayguard_spool_base_server}


def _own_cost_child(tree: str, requests: int) -> None:
    """Feed `requests` requests (after one warm-up pass of the mix) to relayguard's server
    from `tree` through data_received, writes dropped; print CPU microseconds per request,
    best of 7 passes (requests 0: the passes only)."""
    sys.path.insert(0, str(Path(tree).resolve()))
    from relayguard.relay.lock_book import LockBook
    from relayguard.relay.policy_protocol import DecisionConfig
    from relayguard.relay.policy_server import ListenAddress, PolicyServer, _Connection
    from relayguard.stream.records import LockCommand

    class DropWrites(asyncio.Transport):
        def write(self, data: bytes | bytearray | memoryview) -> None:
            pass

        def is_closing(self) -> bool:
            return False

        def get_write_buffer_size(self) -> int:
            return 0

        def get_extra_info(self, name: str, default: object = None) -> object:
            return ("127.0.0.1", 1) if name == "peername" else default

    book = LockBook()
    for i in range(0, 10_000):
        book.apply(LockCommand(f"c{i}", f"locked{i}@example.com", "user", "lock", "bench", "d",
                               {}, 0.0, None, "bench", 1))
    mix = request_mix()
    reqs = [r + b"\n\n" for r in mix.split(b"\n\n") if r]

    async def run() -> None:
        srv = PolicyServer(ListenAddress("inet", "127.0.0.1", 0), book, DecisionConfig(),
                           "bench", publish=lambda _: True)
        conns = [_Connection(srv) for _ in range(16)]
        for c in conns:
            c.connection_made(DropWrites())
        for i, r in enumerate(reqs):  # warm-up: every cache filled
            conns[i & 15].data_received(r)
        n = len(reqs)
        if requests:
            for k in range(requests):
                conns[k & 15].data_received(reqs[k % n])
            return
        best = float("inf")
        for _ in range(7):
            t0 = time.process_time()
            for i, r in enumerate(reqs):
                conns[i & 15].data_received(r)
            best = min(best, (time.process_time() - t0) / n * 1e6)
        print(f"{best:.2f}")

    asyncio.run(run())


def _own_cost(trees: list[tuple[str, str]]) -> None:
    got: dict[str, list[float]] = {name: [] for name, _ in trees}
    for _ in range(3):
        for name, tree in trees:
            out = subprocess.run([sys.executable, __file__, "--own-cost-child", tree, "0"],
                                 check=True, capture_output=True, text=True).stdout
            got[name].append(float(out))
    for name, values in got.items():
        print(f"{name:15s} own code {min(values):6.2f} us/req (best of 3 x 7 passes; all "
              f"{', '.join(f'{v:.2f}' for v in values)})", flush=True)


def main() -> None:
    if len(sys.argv) == 4 and sys.argv[1] == "--own-cost-child":
        _own_cost_child(sys.argv[2], int(sys.argv[3]))
        return
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--connections", default="1,16,50", help="comma-separated counts")
    ap.add_argument("--requests", type=int, default=6000, help="per server and count")
    ap.add_argument("--only", default="streams,protocol,relayguard,+spool,policyd-rl")
    ap.add_argument("--policyd-python", type=Path, default=POLICYD_PYTHON)
    ap.add_argument("--policyd-count-mode", type=int, choices=(0, 1), default=0)
    ap.add_argument("--baseline-tree", type=Path, help="also run relayguard from this tree")
    ap.add_argument("--rounds", type=int, default=1,
                    help="repeat the whole list of servers this many times (interleaved)")
    ap.add_argument("--own-cost", action="store_true",
                    help="relayguard's own CPU per request without sockets (see above)")
    args = ap.parse_args()
    if args.own_cost:
        trees = [("relayguard", str(HERE.parent))]
        if args.baseline_tree is not None:
            trees.insert(0, ("relayguard@base", str(args.baseline_tree)))
        _own_cost(trees)
        return
    names = args.only.split(",")
    if args.baseline_tree is not None:
        if not (args.baseline_tree / "relayguard" / "relay" / "policy_server.py").exists():
            sys.exit(f"--baseline-tree {args.baseline_tree}: no relayguard/relay there")
        BASELINE_TREE.append(str(args.baseline_tree.resolve()))
        if "relayguard@base" not in names:
            names.insert(names.index("relayguard") if "relayguard" in names else len(names),
                         "relayguard@base")
        if "+spool" in names and "+spool@base" not in names:
            names.insert(names.index("+spool"), "+spool@base")
    conns = [int(c) for c in args.connections.split(",")]
    client = load_client()
    with tempfile.NamedTemporaryFile(suffix=".req", delete=False) as f:
        f.write(request_mix())
    reqs = Path(f.name)
    print(f"cores: {os.cpu_count()}; client: {client.name}; 29-attribute requests")
    try:
        for _ in range(args.rounds):
            for name in names:
                if name == "policyd-rl":
                    _run_policyd(args.policyd_python, client, conns, args.requests, reqs,
                                 args.policyd_count_mode)
                else:
                    _run_python(name, SERVERS[name], client, conns, args.requests, reqs)
    finally:
        reqs.unlink()


if __name__ == "__main__":
    main()
