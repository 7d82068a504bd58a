"""The real worker posts its alerts to Slack (a local stand-in for its API) with the evidence."""

from __future__ import annotations

import asyncio
import json
import time
import uuid

import pytest

from relayguard.stream import codec
from relayguard.stream.records import SendEvent
from tests.fixtures.slack import FakeSlack
from tests.fixtures.worker import StartWorker
from tests.kafka_helpers import produce

pytestmark = pytest.mark.integration


async def test_worker_posts_lock_alert_to_slack(start_worker: StartWorker,
                                                slack: tuple[FakeSlack, str]) -> None:
    fake, url = slack
    w = await asyncio.to_thread(start_worker, RELAYGUARD_SLACK_BOT_TOKEN="xoxb-test",
                                RELAYGUARD_SLACK_CHANNEL="#mail-abuse",
                                RELAYGUARD_SLACK_BASE_URL=f"{url}/api/")
    user = f"slack-{uuid.uuid4().hex[:6]}"
    now = time.time()
    await produce(w.bootstrap, w.topics.events, [
        (user.encode(), codec.encode_event(SendEvent(str(uuid.uuid4()), now + i, "r", user,
                                                     "192.0.2.5", user, 1, 100)))
        for i in range(12)])
    deadline = time.monotonic() + 40
    while not fake.posts and time.monotonic() < deadline:
        await asyncio.sleep(0.2)  # the stand-in answers from this test's event loop
    assert fake.posts, w.process.tail_log()
    post = fake.posts[0]
    assert post["channel"] == "#mail-abuse" and user in post["text"]
    flat = json.dumps(post["blocks"])
    assert "messages_1m" in flat and "throttled" in flat
    metrics = w.process.get("/metrics") or ""
    assert 'relayguard_worker_slack_messages_total{outcome="posted"} 1' in metrics
