"""RelayClient on the real broker: publishes login/send events, sees locks, watches commands."""

from __future__ import annotations

import asyncio
from pathlib import Path

import orjson
import pytest

from relayguard.foundation.settings import Settings
from relayguard.relay.client import RelayClient, password_hash
from tests.kafka_helpers import lock_cmd, make_topics, produce_locks, read_all

pytestmark = pytest.mark.integration


async def test_client_round_trip(kafka_settings: Settings, tmp_path: Path) -> None:
    s = kafka_settings
    await make_topics(s)
    await produce_locks(s.bootstrap_servers, s.topics.locks, [lock_cmd("old@example.com", 1)])
    client = RelayClient(s.bootstrap_servers, "relay-py", s.topics, spool_dir=tmp_path,
                         password_secret="fleet-secret")
    try:
        assert await client.start(ready_timeout=30)
        assert client.is_locked("old@example.com")
        assert not client.is_locked("new@example.com")
        watch = client.watch()
        nxt = asyncio.ensure_future(anext(watch))
        await asyncio.sleep(0)  # let the watcher register before the command arrives
        await produce_locks(s.bootstrap_servers, s.topics.locks, [lock_cmd("new@example.com", 1)])
        cmd = await asyncio.wait_for(nxt, 10)
        assert cmd.subject == "new@example.com" and client.is_locked("new@example.com")
        assert client.login("new@example.com", "192.0.2.50", success=False,
                            password="hunter2")
        assert client.sent("old@example.com", "192.0.2.51", sender="old@example.com",
                           recipient_count=2, size=10, event_id="py-send-1")
    finally:
        await client.stop()
    recs = await read_all(s.bootstrap_servers, s.topics.events, want=2, settle=1.0)
    kinds = sorted((orjson.loads(r.value)["type"], r.key) for r in recs)
    assert kinds == [("login", b"new@example.com"), ("send", b"old@example.com")]
    (login,) = [orjson.loads(r.value) for r in recs if orjson.loads(r.value)["type"] == "login"]
    assert login["password_hash"] == password_hash("hunter2", "fleet-secret")
    assert b"hunter2" not in b"".join(r.value for r in recs)
