"""Slack alerts with the real slack-sdk clients against a local stand-in for Slack's API:
the message carries the evidence, incidents thread per subject, rate limits are retried, and
Slack trouble never raises."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest
from pydantic import SecretStr

from relayguard.agents.slack_format import FIELDS_MAX, HEADER_MAX, blocks
from relayguard.agents.slack_notifier import SlackNotifier
from relayguard.foundation.errors import ConfigError
from relayguard.foundation.settings import Settings
from relayguard.stream.records import Alert
from tests.fixtures.slack import FakeSlack


def alert(subject: str = "carol@example.com", remedy: str = "lock",
          severity: str = "high", **evidence: Any) -> Alert:
    return Alert("a1", "impossible_travel", severity, subject, "user",  # type: ignore[arg-type]
                 f"{subject} logged in from Berlin then Sydney", evidence or
                 {"distance_km": 16055.0, "speed_kmh": 80273.0,
                  "from": {"city": "Berlin", "ip": "192.0.2.20"},
                  "to": {"city": "Sydney", "ip": "198.51.100.7"}},
                 1796000000.0, remedy, "c1" if remedy != "alert" else None)  # type: ignore[arg-type]


def bot(url: str, **extra: Any) -> SlackNotifier:
    return SlackNotifier(Settings(slack_bot_token=SecretStr("xoxb-test"), slack_channel="#abuse",
                                  slack_base_url=f"{url}/api/", **extra))


async def test_alert_posts_evidence_and_threads_per_subject(slack: tuple[FakeSlack, str]) -> None:
    fake, url = slack
    n = bot(url)
    assert await n.notify(alert()) == "posted"
    assert await n.notify(alert(remedy="alert", severity="medium")) == "posted"
    assert await n.notify(alert(subject="dave@example.com")) == "posted"
    first, follow_up, other = fake.posts
    assert first["channel"] == "#abuse" and "thread_ts" not in first
    assert "Berlin then Sydney" in first["text"]
    flat = json.dumps(first["blocks"])
    assert "16055.0" in flat and "198.51.100.7" in flat and "relayguard unlock" in flat
    assert follow_up["thread_ts"] == "1700000000.000001"  # same subject: the incident's thread
    assert follow_up["channel"] == "C1"
    assert "thread_ts" not in other


async def test_rate_limit_is_retried(slack: tuple[FakeSlack, str]) -> None:
    fake, url = slack
    fake.rate_limit_next = 1
    assert await bot(url).notify(alert()) == "posted"
    assert len(fake.posts) == 1


async def test_slack_errors_are_logged_not_raised(slack: tuple[FakeSlack, str],
                                                  caplog: pytest.LogCaptureFixture) -> None:
    fake, url = slack
    fake.fail_with = "not_in_channel"
    n = bot(url)
    assert await n.notify(alert()) == "failed"
    assert n.failed == 1 and "not_in_channel" in caplog.text
    assert "xoxb-test" not in caplog.text and url not in caplog.text


async def test_webhook_and_min_severity(slack: tuple[FakeSlack, str]) -> None:
    fake, url = slack
    n = SlackNotifier(Settings(slack_webhook_url=SecretStr(f"{url}/hooks/T1/B1/x"),
                               slack_min_severity="high"))
    assert await n.notify(alert(severity="medium")) == "skipped"
    assert await n.notify(alert(severity="critical")) == "posted"
    assert len(fake.posts) == 1 and fake.posts[0]["blocks"][0]["type"] == "header"


def test_token_without_channel_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="SLACK_CHANNEL"):
        SlackNotifier(Settings(slack_bot_token=SecretStr("xoxb-test")))


def test_blocks_respect_slack_limits() -> None:
    many = {f"k{i}": "v" * 3000 for i in range(60)}
    out = blocks(alert(subject="x" * 400, **many))
    assert len(out) <= 50
    assert len(out[0]["text"]["text"]) <= HEADER_MAX
    for block in out:
        assert len(block.get("fields", [])) <= FIELDS_MAX
        for f in block.get("fields", []):
            assert len(f["text"]) <= 2000


async def test_webhook_url_and_token_stay_out_of_the_logs(caplog: pytest.LogCaptureFixture) -> None:
    from relayguard.roof.broker.config import free_port
    secret = f"http://127.0.0.1:{free_port()}/services/T1/B1/secret-part"
    n = SlackNotifier(Settings(slack_webhook_url=SecretStr(secret)))
    with caplog.at_level(logging.DEBUG):
        assert await n.notify(alert()) == "failed"  # nobody listens there: retried, then given up
    assert "could not post alert a1" in caplog.text
    assert "secret-part" not in caplog.text and "127.0.0.1" not in caplog.text
