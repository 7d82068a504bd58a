"""The Unlock button over Socket Mode: slack-sdk's real aiohttp SocketModeClient connects to the
local stand-in (apps.connections.open, hello, envelopes, acks by envelope_id). A listed user's
click unlocks (here a recording unlocker; the worker test uses lock_admin.issue on a real
broker); anyone else gets an ephemeral refusal."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from pydantic import SecretStr

from relayguard.agents.slack_socket import UnlockButton, allowed_users, parse_value
from relayguard.foundation.errors import ConfigError, DownstreamError
from relayguard.foundation.settings import Settings
from relayguard.stream.records import LockCommand, SubjectKind
from tests.fixtures.slack import FakeSlack

Slack = tuple[FakeSlack, str]
ALLOWED = "U0ALLOWED1"


def settings(url: str, users: str = ALLOWED) -> Settings:
    return Settings(slack_bot_token=SecretStr("xoxb-test"), slack_channel="#abuse",
                    slack_base_url=f"{url}/api/", slack_app_token=SecretStr("xapp-test"),
                    slack_unlock_user_ids=users)


class Recorder:
    def __init__(self, fail: bool = False) -> None:
        self.calls: list[tuple[str, str, str]] = []
        self.fail = fail

    async def __call__(self, kind: SubjectKind, subject: str, user_id: str) -> LockCommand:
        self.calls.append((kind, subject, user_id))
        if self.fail:
            raise DownstreamError("cannot reach Kafka at 127.0.0.1:1", "start the broker")
        return LockCommand("cmd-1", subject, kind, "unlock", "r", "operator", {}, 1.0, None,
                           f"slack:{user_id}", 2)


async def connected(fake: FakeSlack, url: str, unlocker: Any, users: str = ALLOWED
                    ) -> UnlockButton:
    fake._post({"channel": "#abuse", "text": "incident"})  # the message that has the button
    button = UnlockButton(settings(url, users), unlocker)
    await button.start()
    assert await fake.wait_for(lambda: fake.sockets, 10), "the client never connected"
    return button


async def test_listed_user_unlocks_and_the_envelope_is_acked(slack: Slack) -> None:
    fake, url = slack
    rec = Recorder()
    button = await connected(fake, url, rec)
    try:
        envelope = await fake.click(ALLOWED, "1700000000.000001", "user:carol@example.com")
        assert await fake.wait_for(lambda: fake.ephemerals, 10)
        assert envelope in fake.acks
        assert rec.calls == [("user", "carol@example.com", ALLOWED)]
        (told,) = fake.ephemerals
        assert told["user"] == ALLOWED and "cmd-1" in told["text"] and told["channel"] == "C1"
    finally:
        await button.close()


async def test_anyone_else_is_refused_ephemerally_and_logged(
        slack: Slack, caplog: pytest.LogCaptureFixture) -> None:
    fake, url = slack
    rec = Recorder()
    button = await connected(fake, url, rec)
    try:
        with caplog.at_level(logging.WARNING, "relayguard.slack"):
            envelope = await fake.click("U0STRANGER", "1700000000.000001", "user:carol@x.org")
            assert await fake.wait_for(lambda: fake.ephemerals, 10)
        assert envelope in fake.acks and rec.calls == []
        assert fake.ephemerals[0]["user"] == "U0STRANGER"
        assert "not allowed" in fake.ephemerals[0]["text"]
        assert "REFUSED" in caplog.text and "U0STRANGER" in caplog.text
        assert "xapp-test" not in caplog.text and "xoxb-test" not in caplog.text
    finally:
        await button.close()


async def test_failed_unlock_is_told_to_the_clicker(slack: Slack) -> None:
    fake, url = slack
    button = await connected(fake, url, Recorder(fail=True))
    try:
        await fake.click(ALLOWED, "1700000000.000001", "ip:192.0.2.7")
        assert await fake.wait_for(lambda: fake.ephemerals, 10)
        assert "Could not unlock 192.0.2.7" in fake.ephemerals[0]["text"]
    finally:
        await button.close()


async def test_other_buttons_and_bad_values_do_nothing(slack: Slack) -> None:
    fake, url = slack
    rec = Recorder()
    button = await connected(fake, url, rec)
    try:
        first = await fake.click(ALLOWED, "1700000000.000001", "user:a", action_id="other")
        second = await fake.click(ALLOWED, "1700000000.000001", "group:admins")
        assert await fake.wait_for(lambda: {first, second} <= set(fake.acks), 10)
        assert rec.calls == [] and fake.ephemerals == [] and button.refused == 1
    finally:
        await button.close()


def test_values_and_user_ids_are_checked() -> None:
    assert parse_value("user:a:b") == ("user", "a:b")
    assert parse_value("ip:192.0.2.1") == ("ip", "192.0.2.1")
    for bad in ("user:", "host:x", "user:a\nb", 7, "user:" + "x" * 400):
        assert parse_value(bad) is None
    with pytest.raises(ConfigError, match="not Slack user ids"):
        allowed_users(Settings(slack_unlock_user_ids="U0OK1, alice"))
    assert allowed_users(Settings(slack_unlock_user_ids="U0OK1, W0OK2 ,")) == {"U0OK1", "W0OK2"}
