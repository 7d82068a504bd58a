"""The `tail` click command: options and argument checks (running it is covered in tests/e2e)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import click
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


def _opts(cmd: click.Command) -> dict[str, click.Parameter]:
    return {p.name: p for p in cmd.params if p.name}


def test_tail_and_journal_share_the_follower_options() -> None:
    from relayguard.relay.journal_cli import journal

    t, j = _opts(tail), _opts(journal)
    for name in ("relay_id", "bootstrap", "checkpoint_dir", "spool_dir", "from_start",
                 "deliveries", "sent_deliveries"):
        assert t[name].opts == j[name].opts, name
        assert t[name].default == j[name].default, name
    assert isinstance(t["from_start"], click.Option) and t["from_start"].secondary_opts == [
        "--from-end"]
    help_t = CliRunner().invoke(tail, ["--help"], terminal_width=200).output
    help_j = CliRunner().invoke(journal, ["--help"], terminal_width=200).output
    assert "DATA_DIR/tail-checkpoints" in help_t and "DATA_DIR/tail-spool" in help_t
    assert "DATA_DIR/journal-checkpoints" in help_j and "DATA_DIR/journal-spool" in help_j
    assert "where the journal cursor is kept" in help_j
    assert help_t.index("--relay-id") < help_t.index("--from-start")  # order as declared


def test_follower_options_reach_the_command(tmp_path: Path) -> None:
    from relayguard.relay.follower_options import follower_options

    got: dict[str, object] = {}

    @click.command()
    @follower_options(name="x", kept="where x is kept", begin="somewhere")
    def cmd(**kw: object) -> None:
        got.update(kw)

    r = CliRunner().invoke(cmd, ["--relay-id", "r1", "--bootstrap", "b:1", "--checkpoint-dir",
                                 str(tmp_path / "c"), "--spool-dir", str(tmp_path / "s"),
                                 "--from-start", "--no-deliveries", "--sent-deliveries",
                                 "--single-records"])
    assert r.exit_code == 0, r.output
    assert got == {"relay_id": "r1", "bootstrap": "b:1", "checkpoint_dir": tmp_path / "c",
                   "spool_dir": tmp_path / "s", "from_start": True, "deliveries": False,
                   "sent_deliveries": True, "batch_records": False}
    r = CliRunner().invoke(cmd, [])
    assert r.exit_code == 0, r.output
    assert got["batch_records"] is None  # not given: the relay_batch_records setting decides
