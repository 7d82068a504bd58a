"""The Unlock button through Socket Mode, end to end: the real worker's slack-sdk Socket Mode
client connects to the local stand-in; a click by a listed Slack user ends in a signed unlock
with issuer "slack:<user id>" on the locks topic and an updated incident message; a click by
anyone else is refused with an ephemeral message and issues nothing."""

from __future__ import annotations

import asyncio
import json
import time
import uuid

import pytest

from relayguard.stream import codec
from relayguard.stream.records import LockCommand
from tests.fixtures.signing import session_keyring
from tests.fixtures.slack import FakeSlack
from tests.fixtures.worker import StartWorker
from tests.integration.test_worker_slack import posted_for, slack_env, trip
from tests.kafka_helpers import Records, collect

pytestmark = pytest.mark.integration
ALLOWED = "U0ONCALL1"


def commands(records: Records, user: str) -> list[LockCommand]:
    keyring = session_keyring()
    out = []
    for r in records:
        c = codec.decode_signed_lock_command(r.value, keyring, time.time(), 300)
        if c.subject == user:
            out.append(c)
    return out


async def test_unlock_button_allowed_for_listed_user_only(start_worker: StartWorker,
                                                         slack: tuple[FakeSlack, str]) -> None:
    fake, url = slack
    w = await asyncio.to_thread(start_worker, **slack_env(
        url, RELAYGUARD_SLACK_APP_TOKEN="xapp-test", RELAYGUARD_SLACK_UNLOCK_USER_IDS=ALLOWED))
    assert await fake.wait_for(lambda: fake.sockets, 30), w.process.tail_log()
    user = f"btn-{uuid.uuid4().hex[:6]}"
    await trip(w, [user])
    assert await fake.wait_for(lambda: posted_for(fake, user), 40), w.process.tail_log()
    ((ts, message),) = posted_for(fake, user)
    assert "relayguard_unlock" in json.dumps(message["blocks"])

    refused = await fake.click("U0STRANGER", ts, f"user:{user}")
    assert await fake.wait_for(lambda: fake.ephemerals, 20), w.process.tail_log()
    assert refused in fake.acks
    assert fake.ephemerals[0]["user"] == "U0STRANGER" and "not allowed" in \
        fake.ephemerals[0]["text"]

    allowed = await fake.click(ALLOWED, ts, f"user:{user}")
    records = await collect(w.bootstrap, [w.topics.locks],
                            lambda rs: any(c.action == "unlock" for c in commands(rs, user)), 30)
    mine = commands(records, user)
    assert allowed in fake.acks
    unlocks = [c for c in mine if c.action == "unlock"]
    assert [c.issuer for c in unlocks] == [f"slack:{ALLOWED}"], w.process.tail_log()
    assert not any(c.issuer == "slack:U0STRANGER" for c in mine)
    assert await fake.wait_for(
        lambda: f"unlocked by slack:{ALLOWED}" in fake.messages[ts]["text"], 30), \
        (fake.updates, w.process.tail_log())
    assert "relayguard_unlock" not in json.dumps(fake.messages[ts]["blocks"])
    assert "REFUSED" in w.process.tail_log(200) and "U0STRANGER" in w.process.tail_log(200)
    log_text = w.process.log_path.read_text()
    assert "xapp-test" not in log_text and "xoxb-test" not in log_text
