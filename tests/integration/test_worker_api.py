"""The worker's HTTP API on the real broker: list, inspect, lock and unlock, with the token rule."""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request
from typing import Any

import pytest

from relayguard.foundation import audit
from tests.fixtures.worker import StartWorker

pytestmark = pytest.mark.integration


def call(url: str, method: str = "GET", body: Any = None,
         token: str | None = None) -> tuple[int, Any]:
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=15) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


async def test_lock_inspect_unlock_over_http(start_worker: StartWorker) -> None:
    w = await asyncio.to_thread(start_worker, RELAYGUARD_API_TOKEN="s3cret")
    api = f"{w.process.url}/api/locks"

    def go(*args: Any, **kw: Any) -> tuple[int, Any]:
        return call(*args, **kw)

    status, body = await asyncio.to_thread(go, api)
    assert status == 200 and body["count"] == 0
    order = {"subject": "mallory@example.com", "action": "lock", "reason": "ticket 42",
             "ttl_seconds": 600}
    assert (await asyncio.to_thread(go, api, "POST", order))[0] == 401  # no token
    assert (await asyncio.to_thread(go, api, "POST", order, "wrong"))[0] == 401
    assert (await asyncio.to_thread(go, api, "POST", {"subject": "x"}, "s3cret"))[0] == 400
    status, cmd = await asyncio.to_thread(go, api, "POST", order, "s3cret")
    assert status == 201 and cmd["action"] == "lock" and cmd["issuer"] == "api"
    assert cmd["expires_at"] is not None

    status, body = await asyncio.to_thread(go, api)
    assert body["count"] == 1 and body["locks"][0]["subject"] == "mallory@example.com"
    status, one = await asyncio.to_thread(go, f"{api}/user/mallory@example.com")
    assert status == 200 and one["active"] and one["command"]["command_id"] == cmd["command_id"]
    assert (await asyncio.to_thread(go, f"{api}/user/nobody@example.com"))[0] == 404

    unlock = {**order, "action": "unlock", "reason": "verified"}
    status, cmd2 = await asyncio.to_thread(go, api, "POST", unlock, "s3cret")
    assert status == 201 and cmd2["version"] > cmd["version"]
    status, body = await asyncio.to_thread(go, api)
    assert body["count"] == 0

    # Both HTTP actions are in the audit trail, through lock_admin.issue.
    trail = await audit.read(w.settings, None, "mallory@example.com", "user")
    assert [(r["event"], r["source"], r["issuer"], r["reason"], r["command_id"])
            for r in trail.records] == [
        ("lock", "api", "api", "ticket 42", cmd["command_id"]),
        ("unlock", "api", "api", "verified", cmd2["command_id"])]


async def test_changes_refused_without_configured_token(start_worker: StartWorker) -> None:
    w = await asyncio.to_thread(start_worker)
    status, body = await asyncio.to_thread(
        call, f"{w.process.url}/api/locks", "POST",
        {"subject": "a", "action": "lock", "reason": "r"}, "anything")
    assert status == 403 and "RELAYGUARD_API_TOKEN" in body["error"]
