"""Alert storms: more than `threshold` subjects within the window give one digest message
(posted once, then updated) instead of one message each; calm again, alerts are posted one by
one. Real slack-sdk clients against the local stand-in, a hand-driven clock."""

from __future__ import annotations

import json
from typing import Any

from pydantic import SecretStr

from relayguard.agents.slack_digest import Digest, StormGate, digest_blocks
from relayguard.agents.slack_notifier import SlackNotifier
from relayguard.foundation.settings import Settings
from relayguard.stream.records import Alert
from tests.fixtures.slack import FakeSlack

Slack = tuple[FakeSlack, str]


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def alert(i: int, detector: str = "password_spray") -> Alert:
    return Alert(f"a{i}", detector, "high", f"user{i}@example.com", "user", f"user{i} tripped",
                 {}, 1796000000.0 + i, "throttle", f"c{i}")


def notifier(url: str, clock: Clock, **extra: Any) -> SlackNotifier:
    settings = Settings(slack_storm_threshold=10, slack_storm_window_seconds=60,
                        slack_digest_update_seconds=5, **extra)
    return SlackNotifier(settings, clock=clock, wall=lambda: 1796000000.0 + clock.t)


def bot_settings(url: str) -> dict[str, Any]:
    return {"slack_bot_token": SecretStr("xoxb-test"), "slack_channel": "#abuse",
            "slack_base_url": f"{url}/api/"}


async def test_a_storm_of_60_subjects_gives_one_digest(slack: Slack) -> None:
    fake, url = slack
    clock = Clock()
    n = notifier(url, clock, **bot_settings(url))
    outcomes = []
    for i in range(60):
        outcomes.append(await n.notify(alert(i, "password_spray" if i % 3 else "auth_failures")))
        clock.t += 0.2
    assert outcomes[:10] == ["posted"] * 10 and set(outcomes[10:]) == {"digested"}
    digests = [p for p in fake.posts if "alert storm" in p["text"]]
    assert len(digests) == 1 and len(fake.posts) == 11  # 10 one by one, then the digest
    clock.t += 5
    await n.flush()  # brings the digest up to date while the storm goes on
    ts = "1700000000.000011"
    assert "50 subjects" in fake.messages[ts]["text"] and "ongoing" in fake.messages[ts]["text"]
    clock.t += 61
    await n.flush()  # calm: the storm is over, the digest says so
    final = fake.messages[ts]
    assert "(ended)" in final["text"] and len(fake.posts) == 11
    body = json.dumps(final["blocks"])
    assert "user59@example.com" in body and "user10@example.com" in body
    # detector counts over the 50 digested alerts (i = 10..59): 16 auth_failures, 34 spray
    assert "*auth_failures*\\n16" in body and "*password_spray*\\n34" in body
    assert await n.notify(alert(99)) == "posted"  # back to normal
    assert len(fake.top_level()) == 12


async def test_webhook_storm_posts_one_digest_when_it_is_over(slack: Slack) -> None:
    fake, url = slack
    clock = Clock()
    n = notifier(url, clock, slack_webhook_url=SecretStr(f"{url}/hooks/T1/B1/x"))
    for i in range(30):
        await n.notify(alert(i))
    assert len(fake.posts) == 10  # a webhook cannot update, so nothing during the storm
    clock.t += 61
    await n.flush()
    assert len(fake.posts) == 11 and "20 subjects" in fake.posts[-1]["text"]


def test_repeat_alerts_of_one_subject_are_no_storm() -> None:
    gate = StormGate(threshold=3, window=60)
    assert {gate.admit(alert(1), float(t), 0.0) for t in range(50)} == {"post"}


def test_digest_blocks_stay_within_slack_limits() -> None:
    d = Digest(started=1796000000.0)
    for i in range(5000):
        d.add(Alert(f"a{i}", f"detector{i % 40}", "high", "x" * 300 + str(i), "user", "s", {},
                    1.0, "lock", "c"))
    out = digest_blocks(d, "relayguard.alerts")
    assert len(out) <= 50 and len(out[0]["text"]["text"]) <= 150
    for block in out:
        assert len(block.get("fields", [])) <= 10
        assert len(block.get("text", {}).get("text", "")) <= 3000
    assert d.distinct == 5000 and len(d.subjects) <= 200 and "more" in out[3]["text"]["text"]
