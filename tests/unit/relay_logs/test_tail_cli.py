"""The `tail` click command: options and argument checks (running it is covered in tests/e2e)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from click.testing import CliRunner

from relayguard.relay.tail_cli import _zone, local_zone, tail


def test_help_lists_options() -> None:
    result = CliRunner().invoke(tail, ["--help"])
    assert result.exit_code == 0
    for opt in ("--relay-id", "--bootstrap", "--checkpoint-dir", "--from-start", "--from-end",
                "--timezone", "--spool-dir"):
        assert opt in result.output


def test_needs_a_file() -> None:
    result = CliRunner().invoke(tail, [])
    assert result.exit_code == 2 and "FILES" in result.output


def test_unknown_zone_is_a_usage_error() -> None:
    result = CliRunner().invoke(tail, ["/nonexistent/maillog", "--timezone", "Mars/Olympus"])
    assert result.exit_code == 2 and "unknown time zone" in result.output


def test_zones() -> None:
    assert _zone("UTC") is UTC
    assert _zone("Europe/Berlin").utcoffset(None) is None  # a ZoneInfo, offset depends on date
    assert _zone("local") is not None


def test_local_zone_follows_tz(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TZ", "Europe/Berlin")
    berlin = local_zone()
    summer = datetime(2026, 7, 1, 12, tzinfo=berlin).utcoffset()
    winter = datetime(2026, 1, 1, 12, tzinfo=berlin).utcoffset()
    assert (summer, winter) == (timedelta(hours=2), timedelta(hours=1))  # DST rules kept
