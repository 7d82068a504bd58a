"""Operators and signing on the real broker: `relayguard lock/unlock` need a key; `relayguard
locks` and GET /api/locks show only verified records and count the rest, so forged, huge and
year-9999 records never break the listing; `relayguard keys` makes keys that work."""

from __future__ import annotations

import asyncio
import json
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import orjson
import pytest
from click.testing import CliRunner

from relayguard.foundation import signing
from relayguard.foundation.settings import Settings
from relayguard.foundation.topics import ensure_topics, standard_topics
from relayguard.roof.cli import main
from relayguard.stream import codec, signed
from relayguard.stream.records import LockCommand
from tests.fixtures.signing import session_signer
from tests.fixtures.worker import StartWorker
from tests.kafka_helpers import produce

pytestmark = pytest.mark.integration


def _cmd(subject: str, **over: object) -> dict[str, object]:
    now = time.time()
    c = LockCommand(str(uuid.uuid4()), subject, "user", "lock", "r", "operator", {}, now, None,
                    "cli:x", int(now * 1000))
    return {**codec.lock_command_to_dict(c), **over}


def _junk() -> list[tuple[bytes, bytes]]:
    """One good record and four bad ones, each keyed by its own subject."""
    good = signed.sign(_cmd("real@example.com"), session_signer())
    bad = [
        _cmd("unsigned@example.com"),
        signed.sign(_cmd("huge@example.com", version=2**60), session_signer()),
        {**_cmd("float@example.com", version=1e300), "signature": good["signature"]},
        signed.sign(_cmd("y9999@example.com", expires_at="9999-12-31T23:59:59Z"),
                    session_signer()),
    ]
    return [(codec.lock_key("user", str(d["subject"])), orjson.dumps(d)) for d in [good, *bad]]


def test_locks_lists_only_verified_records_and_counts_the_rest(
        kafka_settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    s = kafka_settings
    asyncio.run(ensure_topics(s.bootstrap_servers, standard_topics(s)))
    asyncio.run(produce(s.bootstrap_servers, s.topics.locks, _junk()))
    monkeypatch.setenv("RELAYGUARD_BOOTSTRAP_SERVERS", s.bootstrap_servers)
    monkeypatch.setenv("RELAYGUARD_TOPICS__PREFIX", s.topics.prefix)
    result = CliRunner().invoke(main, ["locks"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "real@example.com" in result.output and "1 active lock(s)" in result.output
    for name in ("unsigned@", "huge@", "float@", "y9999@"):
        assert name not in result.output
    assert ("4 record(s) refused as untrusted and not shown (time_out_of_range 1, unsigned 1, "
            "version_out_of_range 2)") in result.output


def test_lock_and_unlock_refuse_to_run_without_a_signing_key(
        kafka_settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RELAYGUARD_BOOTSTRAP_SERVERS", kafka_settings.bootstrap_servers)
    monkeypatch.setenv("RELAYGUARD_SIGNING_KEY", "")
    for args in (["lock", "a@example.com", "--reason", "r"],
                 ["unlock", "a@example.com", "--reason", "r"]):
        result = CliRunner().invoke(main, args, catch_exceptions=False)
        assert result.exit_code == 2, result.output
        assert "configuration error: no signing key" in result.output
        assert "relayguard keys generate" in result.output


def test_generated_keys_sign_commands_a_relay_keyring_accepts(
        kafka_settings: Settings, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    s = kafka_settings
    asyncio.run(ensure_topics(s.bootstrap_servers, standard_topics(s)))
    runner = CliRunner()
    made = runner.invoke(main, ["keys", "generate", "--out", str(tmp_path), "--name", "ops1"],
                         catch_exceptions=False)
    assert made.exit_code == 0, made.output
    kid = runner.invoke(main, ["keys", "id", str(tmp_path / "ops1.pub")]).output.strip()
    assert f"key id {kid}" in made.output
    assert (tmp_path / "ops1.key").read_text() not in made.output
    for var, value in {"RELAYGUARD_BOOTSTRAP_SERVERS": s.bootstrap_servers,
                       "RELAYGUARD_TOPICS__PREFIX": s.topics.prefix, "RELAYGUARD_SIGNING_KEY": "",
                       "RELAYGUARD_VERIFY_KEYS": "",
                       "RELAYGUARD_SIGNING_KEY_FILE": str(tmp_path / "ops1.key"),
                       "RELAYGUARD_VERIFY_KEYS_DIR": str(tmp_path)}.items():
        monkeypatch.setenv(var, value)
    done = runner.invoke(main, ["lock", "k@example.com", "--reason", "r"],
                         catch_exceptions=False)
    assert done.exit_code == 0, done.output
    listing = runner.invoke(main, ["locks"], catch_exceptions=False).output
    assert "k@example.com" in listing and "1 active lock(s)" in listing
    ring = signing.Keyring([signing.load_public((tmp_path / "ops1.pub").read_text(), "pub")])
    assert set(ring.keys) == {kid}


async def test_api_listing_skips_and_counts_untrusted_records(start_worker: StartWorker) -> None:
    w = await asyncio.to_thread(start_worker)
    await produce(w.bootstrap, w.topics.locks, _junk())

    def get(path: str) -> tuple[int, dict[str, Any]]:
        with urllib.request.urlopen(f"{w.process.url}{path}", timeout=15) as resp:
            return resp.status, json.loads(resp.read())

    status, body = await asyncio.to_thread(get, "/api/locks")
    assert status == 200, body
    assert [c["subject"] for c in body["locks"]] == ["real@example.com"]
    assert body["refused"] == {"unsigned": 1, "version_out_of_range": 2, "time_out_of_range": 1}
    status, one = await asyncio.to_thread(get, "/api/locks/user/real@example.com")
    assert status == 200 and one["active"] is True
