"""The Slack webhook URL and bot token never reach the log: not through slack-sdk's retry and
debug lines, not through our own error lines."""

from __future__ import annotations

import logging

import pytest
from pydantic import SecretStr

from relayguard.agents.slack_notifier import SlackNotifier
from relayguard.foundation.settings import Settings
from tests.fixtures.slack import FakeSlack
from tests.unit.test_slack import alert, bot

SECRET_PATH = "/hooks/T1/B1/x"


def logged(caplog: pytest.LogCaptureFixture) -> str:
    """What the worker's side logged (the stand-in server's access log names its own paths)."""
    return "\n".join(r.getMessage() for r in caplog.records if r.name != "aiohttp.access")


async def test_webhook_url_is_not_logged_on_retries(slack: tuple[FakeSlack, str],
                                                    caplog: pytest.LogCaptureFixture) -> None:
    fake, url = slack
    fake.rate_limit_next = 2  # two 429s: slack-sdk's retry handler runs twice
    caplog.set_level(logging.DEBUG)
    n = SlackNotifier(Settings(slack_webhook_url=SecretStr(url + SECRET_PATH)))
    assert await n.notify(alert()) == "posted"
    assert len(fake.posts) == 1 and fake.rate_limit_next == 0
    assert SECRET_PATH not in logged(caplog)


async def test_bot_token_is_not_logged(slack: tuple[FakeSlack, str],
                                       caplog: pytest.LogCaptureFixture) -> None:
    fake, url = slack
    fake.rate_limit_next = 1
    caplog.set_level(logging.DEBUG)
    assert await bot(url).notify(alert()) == "posted"
    assert "xoxb-test" not in logged(caplog)


async def test_unreachable_webhook_error_names_no_secret(
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    n = SlackNotifier(Settings(slack_webhook_url=SecretStr("http://127.0.0.1:9" + SECRET_PATH)))
    assert await n.notify(alert()) == "failed"
    assert "could not post alert" in logged(caplog)
    assert SECRET_PATH not in logged(caplog)
