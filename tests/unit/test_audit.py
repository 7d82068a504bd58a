"""Audit records match their schema; the reader refuses anything else; operator input checks."""

from __future__ import annotations

import jsonschema
import orjson
import pytest

from relayguard import schemas
from relayguard.foundation import audit
from relayguard.foundation.settings import Settings
from relayguard.foundation.topics import standard_topics
from relayguard.roof import cli_input
from relayguard.stream.records import LockCommand

T0 = 1_796_000_000.0
LOCK = LockCommand("c1", "alice@example.com", "user", "lock", "too many", "volume", {}, T0,
                   T0 + 3600, "relayguard-worker:w1", 17, "high", False)
EXPIRY = LockCommand("c2", "192.0.2.1", "ip", "unlock", "expired", "policy.expiry", {}, T0 + 3600,
                     None, "relayguard-worker:w1", 18)


@pytest.mark.parametrize(("command", "source", "event"), [
    (LOCK, "worker", "lock"), (EXPIRY, "worker", "expiry"),
    (LOCK, audit.source_of("cli:root@host"), "lock"), (EXPIRY, audit.source_of("api"), "expiry"),
])
def test_audit_records_validate_and_decode(command: LockCommand, source: str, event: str) -> None:
    record = audit.audit_record(command, source, T0 + 1)
    jsonschema.Draft202012Validator(schemas.load("audit-record"),
                                    format_checker=jsonschema.FormatChecker()).validate(record)
    back = audit.decode(audit.encode(record))
    assert back["event"] == event and back["audit_id"] == f"{command.command_id}:{event}"
    assert back["source"] == source and back["version"] == command.version
    assert audit.key(record) == f"{command.subject_kind}:{command.subject}".encode()


@pytest.mark.parametrize("raw", [None, b"", b"junk", b"[]", b'{"type": "audit"}', b"x" * 20000,
                                 orjson.dumps({**audit.audit_record(LOCK, "cli", T0),
                                               "version": 1.5}),
                                 orjson.dumps({**audit.audit_record(LOCK, "cli", T0),
                                               "recorded_at": "9999-99-99T00:00:00Z"})])
def test_the_reader_refuses_junk(raw: bytes | None) -> None:
    with pytest.raises(ValueError):
        audit.decode(raw)


def test_audit_topic_is_not_compacted_and_keeps_the_configured_retention() -> None:
    spec = {s.name: s for s in standard_topics(Settings())}["relayguard.audit"]
    assert spec.configs == {"cleanup.policy": "delete", "retention.ms": str(90 * 86_400_000)}
    custom = Settings(topics={"audit_retention_days": 7})
    spec = {s.name: s for s in standard_topics(custom)}["relayguard.audit"]
    assert spec.configs["retention.ms"] == str(7 * 86_400_000)


def test_subjects_and_since() -> None:
    assert cli_input.subject("2001:DB8::1", True) == ("2001:db8::1", "ip")
    assert cli_input.subject("alice@example.com", False) == ("alice@example.com", "user")
    for text, is_ip in [("nope", True), ("", False), (" ", False), ("a" * 321, False),
                        ("a b", False), ("a\x00b", False)]:
        with pytest.raises(cli_input.BadInput):
            cli_input.subject(text, is_ip)
    assert cli_input.since("2h", now=T0) == T0 - 7200
    assert cli_input.since("90s", now=T0) == T0 - 90
    assert cli_input.since("2026-11-29T10:00:00Z") == pytest.approx(1795946400.0)
    with pytest.raises(cli_input.BadInput):
        cli_input.since("yesterday")
