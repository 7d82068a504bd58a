"""`relayguard lock / locks / unlock` against the real broker."""

from __future__ import annotations

import asyncio

import pytest
from click.testing import CliRunner

from relayguard.foundation.settings import Settings
from relayguard.foundation.topics import ensure_topics, standard_topics
from relayguard.roof.cli import main

pytestmark = pytest.mark.integration


def test_lock_list_unlock(kafka_settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    asyncio.run(ensure_topics(kafka_settings.bootstrap_servers, standard_topics(kafka_settings)))
    monkeypatch.setenv("RELAYGUARD_BOOTSTRAP_SERVERS", kafka_settings.bootstrap_servers)
    monkeypatch.setenv("RELAYGUARD_TOPICS__PREFIX", kafka_settings.topics.prefix)
    runner = CliRunner()

    def run(*args: str) -> str:
        result = runner.invoke(main, list(args), catch_exceptions=False)
        assert result.exit_code == 0, result.output
        return result.output

    assert "0 active lock(s)" in run("locks")
    assert "locked user mallory@example.com" in run(
        "lock", "mallory@example.com", "--reason", "abuse desk ticket 42")
    assert "locked ip 192.0.2.66" in run("lock", "192.0.2.66", "--ip", "--ttl", "600",
                                         "--reason", "scanner")
    listing = run("locks")
    assert "mallory@example.com" in listing and "until unlocked" in listing
    assert "192.0.2.66" in listing and "2 active lock(s)" in listing
    assert "unlocked user mallory@example.com" in run(
        "unlock", "mallory@example.com", "--reason", "password reset")
    listing = run("locks")
    assert "mallory@example.com" not in listing and "1 active lock(s)" in listing
