"""Load the Postfix policy server over loopback and compare it with a do-nothing baseline.

    .venv/bin/python bench/policy_server_bench.py [--connections 50] [--requests 400]

N persistent connections each send requests one after another (as Postfix smtpd processes do),
waiting for every answer. Measured in the same run:
  baseline : asyncio server that answers `action=DUNNO` per empty line, without parsing;
  relayguard: relay.policy_server.PolicyServer with 10 000 locks in its book (1 in 10 requests
              is for a locked user), END-OF-MESSAGE requests publishing to a no-op sink;
  +spool    : the same, publishing through relay.producer.EventProducer: every send event is
              written ahead to the disk spool (a tmp dir) before the answer, and a stand-in
              Kafka client acknowledges at once (what is measured is the write-ahead, not Kafka).
Each server runs in its own process so client and server do not share one core.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import statistics
import time
from collections.abc import Callable
from multiprocessing.connection import Connection

REQ = ("request=smtpd_access_policy\nprotocol_state={state}\nprotocol_name=ESMTP\n"
       "client_address=203.0.113.{ip}\nclient_name=mail.example.net\nhelo_name=mail.example.net\n"
       "sender={user}\nrecipient=rcpt@example.org\nrecipient_count={rc}\nqueue_id={q}\n"
       "instance=8e1.6543abcd.1234.{conn}\nsize=2048\nsasl_method=PLAIN\nsasl_username={user}\n"
       "encryption_protocol=TLSv1.3\nencryption_cipher=TLS_AES_256_GCM_SHA384\n"
       "encryption_keysize=256\nstress=\nccert_subject=\nccert_issuer=\n"
       "ccert_fingerprint=\nclient_port=50000\nserver_address=127.0.0.1\nserver_port=25\n\n")


def _baseline_server(ready: Connection) -> None:
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
            import tempfile
            from pathlib import Path

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


def _relayguard_spool_server(ready: Connection) -> None:
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


async def _client(port: int, conn: int, n: int, lat: list[float]) -> None:
    r, w = await asyncio.open_connection("127.0.0.1", port)
    for i in range(n):
        user = f"locked{i}@example.com" if i % 10 == 0 else f"user{conn}@example.com"
        state = "END-OF-MESSAGE" if i % 4 == 3 else "RCPT"
        data = REQ.format(state=state, ip=conn % 250, user=user, rc=1 if state != "RCPT" else 0,
                          q=f"Q{conn}x{i}", conn=conn).encode()
        t0 = time.perf_counter()
        w.write(data)
        await r.readuntil(b"\n\n")
        lat.append(time.perf_counter() - t0)
    w.close()


async def _load(port: int, conns: int, n: int) -> tuple[float, list[float]]:
    lat: list[float] = []
    t0 = time.perf_counter()
    await asyncio.gather(*(_client(port, c, n, lat) for c in range(conns)))
    return time.perf_counter() - t0, lat


def _run(name: str, target: Callable[[Connection], None], conns: int, n: int) -> None:
    parent, child = mp.Pipe()
    proc = mp.Process(target=target, args=(child,), daemon=True)
    proc.start()
    try:
        port = parent.recv()
        asyncio.run(_load(port, conns, max(1, n // 10)))  # warm-up
        wall, lat = asyncio.run(_load(port, conns, n))
    finally:
        proc.terminate()
        proc.join()
    lat.sort()
    total = len(lat)
    print(f"{name:11s} {total / wall:10.0f} req/s   p50 {statistics.median(lat) * 1e3:6.2f} ms"
          f"   p99 {lat[int(total * 0.99) - 1] * 1e3:6.2f} ms   ({total} requests, "
          f"{conns} connections)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--connections", type=int, default=50)
    ap.add_argument("--requests", type=int, default=400, help="per connection")
    args = ap.parse_args()
    _run("baseline", _baseline_server, args.connections, args.requests)
    _run("relayguard", _relayguard_server, args.connections, args.requests)
    _run("+spool", _relayguard_spool_server, args.connections, args.requests)


if __name__ == "__main__":
    main()
