"""The real worker and Slack (a local stand-in for its API, real slack-sdk clients): alerts are
posted with the evidence; the incident message is updated when an operator unlocks or the
throttle expires; a storm of subjects becomes one digest, with every alert still in the topic."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from typing import Any

import orjson
import pytest

from relayguard.foundation.lock_admin import issue
from relayguard.foundation.settings import Settings
from relayguard.stream import codec
from relayguard.stream.records import SendEvent
from tests.fixtures.slack import FakeSlack
from tests.fixtures.worker import RunningWorker, StartWorker
from tests.kafka_helpers import collect, produce

pytestmark = pytest.mark.integration
Slack = tuple[FakeSlack, str]


def slack_env(url: str, **extra: str) -> dict[str, str]:
    return {"RELAYGUARD_SLACK_BOT_TOKEN": "xoxb-test", "RELAYGUARD_SLACK_CHANNEL": "#mail-abuse",
            "RELAYGUARD_SLACK_BASE_URL": f"{url}/api/", **extra}


async def trip(w: RunningWorker, users: list[str]) -> None:
    """12 messages in a minute from each user: the volume detector throttles them."""
    now = time.time()
    await produce(w.bootstrap, w.topics.events, [
        (user.encode(), codec.encode_event(SendEvent(str(uuid.uuid4()), now + i, "r", user,
                                                     "192.0.2.5", user, 1, 100)))
        for user in users for i in range(12)])


def posted_for(fake: FakeSlack, user: str) -> list[tuple[str, dict[str, Any]]]:
    return [(ts, m) for ts, m in fake.messages.items()
            if user in m.get("text", "") and "thread_ts" not in m]


async def test_worker_posts_lock_alert_to_slack(start_worker: StartWorker, slack: Slack) -> None:
    fake, url = slack
    w = await asyncio.to_thread(start_worker, **slack_env(url))
    user = f"slack-{uuid.uuid4().hex[:6]}"
    await trip(w, [user])
    assert await fake.wait_for(lambda: fake.posts, 40), w.process.tail_log()
    post = fake.posts[0]
    assert post["channel"] == "#mail-abuse" and user in post["text"]
    flat = json.dumps(post["blocks"])
    assert "messages_1m" in flat and "throttled" in flat
    assert "relayguard_unlock" not in flat  # no app token: no button
    metrics = w.process.get("/metrics") or ""
    assert 'relayguard_worker_slack_messages_total{outcome="posted"} 1' in metrics


async def test_operator_unlock_updates_the_message(start_worker: StartWorker,
                                                  slack: Slack) -> None:
    fake, url = slack
    w = await asyncio.to_thread(start_worker, **slack_env(url))
    user = f"unl-{uuid.uuid4().hex[:6]}"
    await trip(w, [user])
    assert await fake.wait_for(lambda: posted_for(fake, user), 40), w.process.tail_log()
    ((ts, _),) = posted_for(fake, user)
    settings = Settings(bootstrap_servers=w.bootstrap, topics=w.topics)
    await issue(settings, "unlock", user, "user", "customer verified", None, "cli:oncall")
    updated = await fake.wait_for(
        lambda: [u for u in fake.updates if u["ts"] == ts and "unlocked by cli:oncall" in
                 u["text"]], 30)
    assert updated, (fake.updates, w.process.tail_log())
    assert "customer verified" in json.dumps(fake.messages[ts]["blocks"])
    metrics = w.process.get("/metrics") or ""
    assert 'relayguard_worker_slack_messages_total{outcome="updated"} 1' in metrics


async def test_expiry_updates_the_message(start_worker: StartWorker, slack: Slack) -> None:
    fake, url = slack
    w = await asyncio.to_thread(start_worker, **slack_env(
        url, RELAYGUARD_POLICY=orjson.dumps({"detectors": {"volume": {"ttl_seconds": 3}}}).decode(),
        RELAYGUARD_EXPIRY_CHECK_SECONDS="1"))
    user = f"exp-{uuid.uuid4().hex[:6]}"
    await trip(w, [user])
    assert await fake.wait_for(lambda: posted_for(fake, user), 40), w.process.tail_log()
    ((ts, _),) = posted_for(fake, user)
    assert await fake.wait_for(lambda: "[expired]" in fake.messages[ts]["text"], 30), \
        (fake.updates, w.process.tail_log())
    assert "lock expired at" in json.dumps(fake.messages[ts]["blocks"])


async def test_a_storm_of_55_subjects_gives_one_digest(start_worker: StartWorker,
                                                      slack: Slack) -> None:
    fake, url = slack
    w = await asyncio.to_thread(start_worker, **slack_env(
        url, RELAYGUARD_SLACK_STORM_THRESHOLD="5", RELAYGUARD_SLACK_STORM_WINDOW_SECONDS="120",
        RELAYGUARD_SLACK_DIGEST_UPDATE_SECONDS="1"))
    tag = uuid.uuid4().hex[:4]
    users = [f"storm{tag}-{i:02d}" for i in range(55)]
    await trip(w, users)

    def digests() -> list[dict[str, Any]]:
        return [m for m in fake.messages.values() if "alert storm" in m.get("text", "")]

    assert await fake.wait_for(lambda: [d for d in digests() if "50 subjects" in d["text"]], 60), \
        (len(fake.posts), [d["text"] for d in digests()], w.process.tail_log())
    (digest,) = digests()  # one digest message, updated in place
    singles = [p for p in fake.top_level() if "alert storm" not in p["text"]]
    assert len(singles) == 5  # the ones before the storm was recognised
    body = json.dumps(digest["blocks"])
    named = {u for u in users if u in body}
    assert len(named) == 50 and not named & {u for u in users if any(u in p["text"]
                                                                      for p in singles)}
    assert "*volume*" in body
    alerts = await collect(w.bootstrap, [w.topics.alerts],
                           lambda rs: len({orjson.loads(r.value)["subject"] for r in rs}) >= 55,
                           30)
    assert {orjson.loads(r.value)["subject"] for r in alerts} >= set(users)  # none lost


async def test_restarted_worker_still_updates_the_message(start_worker: StartWorker,
                                                          slack: Slack) -> None:
    """The incident table is rebuilt from its changelog: the new process knows the ts."""
    fake, url = slack
    w = await asyncio.to_thread(start_worker, **slack_env(url))
    user = f"rst-{uuid.uuid4().hex[:6]}"
    await trip(w, [user])
    assert await fake.wait_for(lambda: posted_for(fake, user), 40), w.process.tail_log()
    ((ts, _),) = posted_for(fake, user)
    await asyncio.to_thread(w.process.stop)
    again = await asyncio.to_thread(start_worker, w.tag, **slack_env(url))
    await issue(Settings(bootstrap_servers=again.bootstrap, topics=again.topics), "unlock", user,
                "user", "false positive", None, "cli:oncall")
    assert await fake.wait_for(lambda: "[lifted]" in fake.messages[ts]["text"], 40), \
        (fake.updates, again.process.tail_log(60))
    assert "recovered" in again.process.tail_log(400)
