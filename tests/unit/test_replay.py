"""`relayguard replay FILE`: the production core over a file, bad lines reported not fatal."""

from __future__ import annotations

import re
from pathlib import Path

import orjson
import pytest
from click.testing import CliRunner

from relayguard.roof.replay import replay
from relayguard.stream.timefmt import to_rfc3339

T0 = 1_796_000_000.0


def send(i: int, t: float, user: str = "mallory@example.com") -> bytes:
    return orjson.dumps({"type": "send", "event_id": f"s{i}", "event_time": to_rfc3339(t),
                         "relay_id": "r1", "user": user, "client_ip": "192.0.2.1",
                         "sender": user, "recipient_count": 1, "size": 100})


def login(i: int, t: float, geo: dict[str, object] | None = None) -> bytes:
    d: dict[str, object] = {"type": "login", "event_id": f"l{i}", "event_time": to_rfc3339(t),
                            "relay_id": "r1", "user": "alice@example.com",
                            "client_ip": f"203.0.113.{i}", "success": True,
                            "tls_protocol": "TLSv1.3"}
    if geo:
        d["geo"] = geo
    return orjson.dumps(d)


def commands(out: str) -> str:
    """COMMAND lines without their event time and line number (checked on their own)."""
    return "\n".join(re.sub(r"^COMMAND \S+ (line \d+|at end) ", "COMMAND ", ln)
                     for ln in out.splitlines() if ln.startswith("COMMAND"))


def write(path: Path, lines: list[bytes]) -> Path:
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


def test_replay_reports_findings_commands_and_bad_lines(tmp_path: Path) -> None:
    lines = [send(i, T0 + i) for i in range(12)]
    lines.insert(3, b"{not json")
    lines.insert(6, b'{"type": "send", "event_id": "x"}')
    lines.append(login(1, T0 + 100, {"lat": 51.5, "lon": -0.13, "radius_km": 10, "country": "GB"}))
    lines.append(login(2, T0 + 700, {"lat": 40.7, "lon": -74.0, "radius_km": 10, "country": "US"}))
    f = write(tmp_path / "events.jsonl", lines)
    res = CliRunner().invoke(replay, [str(f), "--progress-every", "5"])
    assert res.exit_code == 1, res.output  # lines were rejected
    assert "2 line(s) rejected (bad 2, too late 0)" in res.stdout
    out = res.stdout + commands(res.stdout)
    assert "line 4: not_json" in res.stderr
    assert "line 7: invalid" in res.stderr
    assert "... line" in res.stderr  # progress
    assert "FINDING" in out and "volume user:mallory@example.com" in out
    assert "COMMAND lock user:mallory@example.com by volume" in out
    assert "COMMAND lock user:alice@example.com by impossible_travel" in out
    assert "bad lines 2" in out and "events 14" in out
    assert "impossible_travel 1" in out and "volume 1" in out
    assert "users affected 2" in out
    assert "events/s" in out


def test_replay_config_and_dry_run(tmp_path: Path) -> None:
    cfg = tmp_path / "relayguard.toml"
    cfg.write_text('[policy]\ndry_run = true\n[detectors.volume.users."mallory@example.com"]\n'
                   'messages_1m = 20\n')
    f = write(tmp_path / "e.jsonl", [send(i, T0 + i) for i in range(15)])
    res = CliRunner().invoke(replay, [str(f), "--config", str(cfg)])
    assert res.exit_code == 0, res.output
    assert "findings 0" in res.stdout
    f2 = write(tmp_path / "e2.jsonl", [send(i, T0 + i) for i in range(25)])
    res = CliRunner().invoke(replay, [str(f2), "--config", str(cfg), "-q"])
    assert "lock 1" in res.stdout and "COMMAND" not in res.stdout
    res = CliRunner().invoke(replay, [str(f2), "--config", str(cfg)])
    assert "(dry run)" in res.stdout


def test_replay_bad_config_is_a_named_error(tmp_path: Path) -> None:
    cfg = tmp_path / "bad.toml"
    cfg.write_text("[detectors.nosuch]\nx = 1\n")
    f = write(tmp_path / "e.jsonl", [send(0, T0)])
    res = CliRunner().invoke(replay, [str(f), "--config", str(cfg)])
    assert res.exit_code == 2
    assert "configuration error" in res.stderr and "nosuch" in res.stderr


def test_replay_throttle_expiry_at_end(tmp_path: Path) -> None:
    lines = [send(i, T0 + i) for i in range(11)] + [send(99, T0 + 7200, "other@example.com")]
    f = write(tmp_path / "e.jsonl", lines)
    res = CliRunner().invoke(replay, [str(f)])
    assert "COMMAND unlock user:mallory@example.com by policy.expiry" in commands(res.stdout)
    assert re.search(r"^COMMAND \S+ line 12 unlock user:mallory", res.stdout, re.M)


def test_replay_postfix_log(tmp_path: Path) -> None:
    lines = [f"Nov 29 10:15:{i:02d} mx1 postfix/smtpd[78]: warning: unknown[203.0.113.9]: "
             "SASL PLAIN authentication failed: UGFzc3dvcmQ6".encode() for i in range(6)]
    f = write(tmp_path / "mail.log", lines)
    res = CliRunner().invoke(replay, [str(f), "--format", "postfix-log",
                                      "--reference-time", str(T0)])
    assert res.exit_code == 0, res.output
    assert "events 6" in res.stdout
    assert "auth_failures_ip ip:203.0.113.9" in res.stdout


def test_replay_enriches_with_a_city_db(tmp_path: Path) -> None:
    from relayguard.roof.demo_geodb import write_city_db

    db = write_city_db(tmp_path / "city.mmdb")
    ev = [orjson.loads(login(i, T0 + i * 600)) for i in (1, 2)]
    ev[0]["client_ip"], ev[1]["client_ip"] = "192.0.2.130", "192.0.2.200"  # London, New York
    f = write(tmp_path / "e.jsonl", [orjson.dumps(e) for e in ev])
    res = CliRunner().invoke(replay, [str(f), "--geoip-city-db", str(db)])
    assert res.exit_code == 0, res.output
    assert "impossible_travel user:alice@example.com" in res.stdout
    assert "London" in res.stdout and "New York" in res.stdout
    missing = CliRunner().invoke(replay, [str(f), "--geoip-city-db", str(tmp_path / "no.mmdb")])
    assert missing.exit_code == 2 and "does not exist" in missing.stderr


def _two_logs(tmp_path: Path) -> tuple[Path, Path]:
    """Old Postfix (no sasl_username) in the mail log, the user only in Dovecot's own log file;
    some verdicts share the failure's second, as they do on a fast machine."""
    mail, dove = [], []
    for i in range(6):
        s = 10 + i * 5
        dove.append(f"Nov 29 10:15:{s - (i % 2):02d} auth: Info: passwd-file(alice,203.0.113.9,"
                    f"<S{i}>): Password mismatch")
        mail.append(f"Nov 29 10:15:{s:02d} mx1 postfix/submission/smtpd[78]: warning: unknown"
                    f"[203.0.113.9]: SASL PLAIN authentication failed: UGFzc3dvcmQ6")
        mail.append(f"Nov 29 10:15:{s:02d} mx1 postfix/qmgr[21784]: 3F1A2B3C{i}D: removed")
    return (write(tmp_path / "mail.log", [x.encode() for x in mail]),
            write(tmp_path / "dovecot.log", [x.encode() for x in dove]))


def test_replay_merges_mail_and_dovecot_logs_by_time(tmp_path: Path) -> None:
    mail, dove = _two_logs(tmp_path)
    args = ["--format", "postfix-log", "--reference-time", str(T0)]
    for order in ([mail, dove], [dove, mail]):
        res = CliRunner().invoke(replay, [*map(str, order), *args])
        assert res.exit_code == 0, res.output
        assert "auth_failures user:alice" in res.stdout  # named by the other file's verdicts
        assert "COMMAND lock user:alice by auth_failures" in commands(res.stdout)
        assert "lines 18, events 6" in res.stdout


def test_replay_of_the_mail_log_alone_cannot_name_the_user(tmp_path: Path) -> None:
    mail, _ = _two_logs(tmp_path)
    res = CliRunner().invoke(replay, [str(mail), "--format", "postfix-log",
                                      "--reference-time", str(T0)])
    assert res.exit_code == 0, res.output
    assert "events 6" in res.stdout  # the same failures, but nobody to attribute them to
    assert "user:alice" not in res.stdout and "users affected 0" in res.stdout


def test_replay_merges_jsonl_files_by_event_time(tmp_path: Path) -> None:
    a = write(tmp_path / "a.jsonl", [send(i, T0 + 2 * i) for i in range(6)] + [b"{bad"])
    b = write(tmp_path / "b.jsonl", [send(100 + i, T0 + 2 * i + 1) for i in range(6)])
    res = CliRunner().invoke(replay, [str(a), str(b)])
    assert res.exit_code == 1, res.output  # a.jsonl line 7 was rejected
    assert "events 12" in res.stdout and "too late 0" in res.stdout
    assert "volume user:mallory@example.com" in res.stdout
    assert f"{a} line 7: not_json" in res.stderr


def test_replay_applies_its_own_locks(tmp_path: Path) -> None:
    """After the lock at the 11th send, relays refuse mallory's sends: they are counted, not fed
    (so no second volume finding); after the throttle's TTL (1 h) they count again."""
    burst = [send(i, T0 + i) for i in range(40)]
    later = [send(100 + i, T0 + 4000 + i) for i in range(12)]
    f = write(tmp_path / "e.jsonl", burst + later)
    res = CliRunner().invoke(replay, [str(f)])
    assert res.exit_code == 0, res.output
    assert "sends refused while locked 30" in res.stdout  # 29 of the burst, 1 after relock
    assert "commands: lock 2, unlock 1" in res.stdout
    cmds = commands(res.stdout).splitlines()
    assert [c.split()[1] for c in cmds] == ["lock", "unlock", "lock"]
    assert "by policy.expiry" in cmds[1]
    assert re.search(r"^COMMAND \S+ line 41 unlock", res.stdout, re.M)  # at T0+4000 > T0+3610
    fed_all = CliRunner().invoke(replay, [str(f), "--no-apply-locks"])
    assert "sends refused while locked 0" in fed_all.stdout


def test_replay_reports_out_of_order_lines_and_fails_on_too_late(tmp_path: Path) -> None:
    lines = [send(0, T0 + 100), send(1, T0 + 110), send(2, T0 + 50), send(3, T0 + 120)]
    f = write(tmp_path / "e.jsonl", lines)
    res = CliRunner().invoke(replay, [str(f)])
    assert res.exit_code == 0, res.output  # 60 s late is within the core's grace: accepted
    assert "line 3: out of order: event time" in res.stderr and "before line 2's" in res.stderr
    assert "out of order 1" in res.stdout and "too late 0" in res.stdout
    f2 = write(tmp_path / "late.jsonl", [*lines, send(4, T0 - 1000)])
    res = CliRunner().invoke(replay, [str(f2)])
    assert res.exit_code == 1
    assert "line 5: out of order" in res.stderr
    assert "too late 1" in res.stdout and "1 line(s) rejected" in res.stdout


def test_replay_json_lines(tmp_path: Path) -> None:
    f = write(tmp_path / "e.jsonl", [send(i, T0 + i) for i in range(14)] + [b"{bad"])
    res = CliRunner().invoke(replay, [str(f), "--json"])
    assert res.exit_code == 1
    docs = [orjson.loads(line) for line in res.stdout.splitlines()]
    by_type: dict[str, list[dict[str, object]]] = {}
    for d in docs:
        by_type.setdefault(str(d["type"]), []).append(d)
    (cmd,) = by_type["lock_command"]
    assert cmd["action"] == "lock" and cmd["line"] == 11 and cmd["command_id"]
    assert isinstance(cmd["version"], int) and cmd["event_time"] == to_rfc3339(T0 + 10)
    assert by_type["alert"][0]["command_id"] == cmd["command_id"]
    assert by_type["finding"][0]["detector"] == "volume"
    assert len(by_type["refused"]) == 3 and by_type["refused"][0]["locked_by"] == cmd["command_id"]
    assert by_type["bad_line"] == [{"type": "bad_line", "line": 15,
                                    "detail": by_type["bad_line"][0]["detail"]}]
    assert docs[-1]["type"] == "summary" and docs[-1]["rejected"] == 1
    assert docs[-1]["refused_while_locked"] == 3


def test_replay_honours_the_worker_settings(tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    from relayguard.roof.demo_geodb import write_city_db

    db = write_city_db(tmp_path / "city.mmdb")
    ev = [orjson.loads(login(i, T0 + i * 600)) for i in (1, 2)]
    ev[0]["client_ip"], ev[1]["client_ip"] = "192.0.2.130", "192.0.2.200"  # London, New York
    f = write(tmp_path / "e.jsonl", [orjson.dumps(e) for e in ev])
    assert "impossible_travel" not in CliRunner().invoke(replay, [str(f)]).stdout
    monkeypatch.setenv("RELAYGUARD_GEOIP_CITY_DB", str(db))
    cfg = tmp_path / "relayguard.toml"
    cfg.write_text("[policy]\ndry_run = true\n")
    monkeypatch.setenv("RELAYGUARD_CONFIG_FILE", str(cfg))
    res = CliRunner().invoke(replay, [str(f)])
    assert res.exit_code == 0, res.output
    assert "impossible_travel user:alice@example.com" in res.stdout
    assert "(dry run)" in res.stdout
    assert f"GeoIP {db}" in res.stderr and str(cfg) in res.stderr
