"""Incident messages follow the lock topic: the real slack-sdk client updates (chat.update) the
message it posted when the lock is lifted, expires or changes, against the local stand-in."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import pytest
from pydantic import SecretStr

from relayguard.agents.slack_incidents import IncidentStore, incident_key
from relayguard.agents.slack_notifier import SlackNotifier
from relayguard.foundation.settings import Settings
from relayguard.stream.records import Alert, LockCommand
from tests.fixtures.slack import FakeSlack

Slack = tuple[FakeSlack, str]


def alert(subject: str = "carol@example.com", command_id: str | None = "c1",
          remedy: str = "lock", detector: str = "impossible_travel") -> Alert:
    return Alert(f"a-{subject}-{command_id}", detector, "high", subject, "user",
                 f"{subject} tripped {detector}", {"speed_kmh": 80273.0}, 1796000000.0,
                 remedy, command_id)  # type: ignore[arg-type]


def command(action: str, version: int, subject: str = "carol@example.com",
            command_id: str = "c9", issuer: str = "cli:alice", detector: str = "operator",
            reason: str = "customer verified", expires_at: float | None = None,
            dry_run: bool = False) -> LockCommand:
    return LockCommand(command_id, subject, "user", action, reason, detector,  # type: ignore[arg-type]
                       {}, 1796000100.0, expires_at, issuer, version, dry_run=dry_run)


def bot(url: str, table: dict[str, bytes] | None = None, **extra: Any) -> SlackNotifier:
    return SlackNotifier(Settings(slack_bot_token=SecretStr("xoxb-test"), slack_channel="#abuse",
                                  slack_base_url=f"{url}/api/", **extra), table=table)


def flat(message: dict[str, Any]) -> str:
    return json.dumps(message.get("blocks", []))


async def test_operator_unlock_updates_the_incident_message(slack: Slack) -> None:
    fake, url = slack
    n = bot(url)
    assert await n.notify(alert()) == "posted"
    ts = "1700000000.000001"
    assert ts in fake.messages
    assert not await n.on_command(command("lock", 5, command_id="c1"))  # the lock it announced
    assert await n.on_command(command("unlock", 6))
    (update,) = fake.updates
    assert update["ts"] == ts and update["channel"] == "C1"  # the id, as chat.update wants
    assert "unlocked by cli:alice" in update["text"] and "customer verified" in flat(update)
    assert "relayguard_unlock" not in flat(update)  # no Unlock button once unlocked
    assert "80273.0" in flat(update)  # the alert's evidence is still shown
    assert len(n.incidents) == 0  # closed: the next alert is a new incident
    assert await n.notify(alert(command_id="c2")) == "posted"
    assert "thread_ts" not in fake.posts[-1]


async def test_expiry_unlock_says_expired(slack: Slack) -> None:
    fake, url = slack
    n = bot(url)
    await n.notify(alert(detector="volume"))
    assert await n.on_command(command("unlock", 7, issuer="relayguard",
                                      detector="policy.expiry", reason="throttle expired"))
    assert "[expired]" in fake.updates[0]["text"] and "lock expired at" in flat(fake.updates[0])


async def test_escalation_changes_the_message_and_keeps_it_open(slack: Slack) -> None:
    fake, url = slack
    n = bot(url)
    await n.notify(alert(detector="volume", remedy="throttle"))
    assert await n.on_command(command("lock", 8, command_id="c2", issuer="relayguard",
                                      detector="auth_failures", reason="escalated"))
    assert "[changed]" in fake.updates[0]["text"] and "until unlocked" in flat(fake.updates[0])
    assert not await n.on_command(command("lock", 8, command_id="c2"))  # redelivered: no news
    assert not await n.on_command(command("unlock", 3))  # older than what the message shows
    assert not await n.on_command(command("unlock", 9, dry_run=True))
    assert not await n.on_command(command("unlock", 9, subject="nobody@example.com"))
    assert len(fake.updates) == 1 and len(n.incidents) == 1


async def test_follow_up_alert_with_a_new_lock_updates_the_parent(slack: Slack) -> None:
    fake, url = slack
    n = bot(url)
    await n.notify(alert(detector="volume", remedy="throttle"))
    await n.notify(alert(detector="auth_failures", command_id="c2"))
    assert fake.posts[1]["thread_ts"] == "1700000000.000001"
    assert fake.updates[-1]["ts"] == "1700000000.000001"
    assert "[changed]" in fake.updates[-1]["text"]
    assert not await n.on_command(command("lock", 9, command_id="c2"))  # already shown


async def test_a_restarted_notifier_finds_the_message_in_its_table(slack: Slack) -> None:
    fake, url = slack
    table: dict[str, bytes] = {}  # the worker's Faust table, rebuilt from its changelog
    await bot(url, table).notify(alert())
    again = bot(url, table)
    assert await again.on_command(command("unlock", 6))
    assert fake.updates[0]["ts"] == "1700000000.000001"
    assert table == {}


async def test_slack_trouble_on_update_is_logged_not_raised(
        slack: Slack, caplog: pytest.LogCaptureFixture) -> None:
    fake, url = slack
    n = bot(url)
    await n.notify(alert())
    fake.fail_with = "message_not_found"
    assert not await n.on_command(command("unlock", 6))
    assert "message_not_found" in caplog.text and "xoxb-test" not in caplog.text


def test_store_is_bounded_and_drops_bad_entries() -> None:
    table: dict[str, bytes] = {}
    store = IncidentStore(table, limit=3)
    from relayguard.agents.slack_incidents import new_incident
    for i in range(5):
        store.put(new_incident(alert(subject=f"u{i}"), "C1", f"1.{i}"))
    assert sorted(table) == [incident_key("user", f"u{i}") for i in (2, 3, 4)]
    table[incident_key("user", "u3")] = b'{"channel": 1}'
    again = IncidentStore(table, limit=3)
    assert again.get(incident_key("user", "u3")) is None
    assert incident_key("user", "u3") not in table and len(again) == 2
    assert again.get(incident_key("user", "u4")) is not None


def test_huge_evidence_is_not_kept() -> None:
    from relayguard.agents.slack_incidents import decode, encode, new_incident
    big = Alert("a", "volume", "high", "u", "user", "s", {"x": "y" * 40_000}, 1.0, "lock", "c")
    kept = decode(encode(new_incident(big, "C1", "1.1")))
    assert "too large" in json.dumps(kept.alert["evidence"])


async def test_an_unlock_that_overtook_its_alert_still_updates_the_message(slack: Slack) -> None:
    fake, url = slack
    n = bot(url)
    expiry = replace(command("unlock", 7, issuer="relayguard", detector="policy.expiry",
                             reason="throttle expired"), evidence={"expired_command_id": "c1"})
    assert not await n.on_command(expiry)  # no message yet: remembered
    assert await n.notify(alert(detector="volume", remedy="throttle")) == "posted"
    assert "[expired]" in fake.updates[0]["text"] and len(n.incidents) == 0
    old = replace(command("unlock", 2, subject="dave@example.com"), issued_at=1795000000.0)
    await n.on_command(old)  # issued before dave's event: an earlier incident's unlock
    await n.notify(alert(subject="dave@example.com"))
    assert len(fake.updates) == 1 and len(n.incidents) == 1
