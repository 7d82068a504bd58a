"""Policy server + lock follower + producer on the real broker: DUNNO, then REJECT once a lock
command is on the locks topic; send events reach the events topic."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import orjson
import pytest

from relayguard.foundation.settings import Settings
from relayguard.relay.lock_follower import LockFollower
from relayguard.relay.policy_protocol import DecisionConfig
from relayguard.relay.policy_server import ListenAddress, PolicyServer
from relayguard.relay.producer import EventProducer
from tests.kafka_helpers import lock_cmd, make_topics, produce_locks, read_all

pytestmark = pytest.mark.integration


def _req(user: str, state: str = "RCPT", queue_id: str = "") -> bytes:
    return (f"request=smtpd_access_policy\nprotocol_state={state}\nprotocol_name=ESMTP\n"
            f"sasl_username={user}\nsasl_method=PLAIN\nclient_address=203.0.113.7\n"
            f"sender={user}\nrecipient=x@example.org\nqueue_id={queue_id}\n"
            "instance=a1.msg1\nrecipient_count=1\nsize=1234\n"
            "encryption_protocol=TLSv1.3\n\n").encode()


async def test_dunno_then_reject_after_lock(kafka_settings: Settings, tmp_path: Path) -> None:
    s = kafka_settings
    await make_topics(s)
    follower = LockFollower(s.bootstrap_servers, s.topics.locks, s.topics.lock_acks, "relay-it")
    producer = EventProducer(s.bootstrap_servers, s.topics.events, tmp_path / "spool")
    server = PolicyServer(ListenAddress("inet", "127.0.0.1", 0), follower.book,
                          DecisionConfig(reject_text="locked by test"), "relay-it",
                          publish=producer.publish_nowait)
    await follower.start()
    await producer.start()
    await server.start()
    try:
        assert await follower.ready(timeout=30)
        r, w = await asyncio.open_connection("127.0.0.1", server.bound.port)
        w.write(_req("mallory"))  # RCPT TO:<x@example.org>, the message's one recipient
        assert await asyncio.wait_for(r.readuntil(b"\n\n"), 5) == b"action=DUNNO\n\n"
        w.write(_req("mallory", "END-OF-MESSAGE", queue_id="4XkQ1z2ZbLz9vQ"))
        assert await asyncio.wait_for(r.readuntil(b"\n\n"), 5) == b"action=DUNNO\n\n"

        await produce_locks(s.bootstrap_servers, s.topics.locks, [lock_cmd("mallory", 1)])
        deadline = time.monotonic() + 10
        while True:  # same persistent connection, as Postfix does
            w.write(_req("mallory"))
            reply = await asyncio.wait_for(r.readuntil(b"\n\n"), 5)
            if reply != b"action=DUNNO\n\n" or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.1)
        assert reply == b"action=REJECT 5.7.1 locked by test\n\n"
        w.close()
    finally:
        await server.stop()
        await producer.stop()
        await follower.stop()

    (rec,) = await read_all(s.bootstrap_servers, s.topics.events, want=1, settle=1.0)
    ev = orjson.loads(rec.value)
    assert rec.key == b"mallory"
    assert ev["type"] == "send" and ev["user"] == "mallory" and ev["size"] == 1234
    assert ev["queue_id"] == "4XkQ1z2ZbLz9vQ" and ev["tls_protocol"] == "TLSv1.3"
    # the recipient-domain summary of this message's RCPT requests (issue 9)
    assert ev["recipient_domains"] == ["example.org"] and ev["recipient_domain_count"] == 1
