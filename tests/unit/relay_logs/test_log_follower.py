"""LogFollower + FileTail + CheckpointStore on real files in a temp dir (publisher is a list)."""

from __future__ import annotations

import asyncio
import os
import shutil
from pathlib import Path

from relayguard.relay.checkpoint import CheckpointStore
from relayguard.relay.log_follower import LogFollower
from relayguard.relay.log_parser import LogParser
from relayguard.stream.records import Event

REF = 1795996800.0  # 2026-11-30T00:00:00Z


def fail_line(n: int) -> str:
    return (f"Nov 29 10:15:{n % 60:02d} mx1 postfix/smtpd[{1000 + n}]: warning: unknown"
            f"[192.0.2.{n % 250 + 1}]: SASL PLAIN authentication failed: (reason unavailable), "
            f"sasl_username=u{n}\n")


def append(path: Path, *ns: int, raw: str = "") -> None:
    with path.open("a") as f:
        f.write("".join(fail_line(n) for n in ns) + raw)


class ListPublisher:
    def __init__(self, refuse_first: int = 0) -> None:
        self.events: list[Event] = []
        self.refuse = refuse_first

    async def publish(self, event: Event) -> bool:
        if self.refuse > 0:
            self.refuse -= 1
            return False
        self.events.append(event)
        return True

    def users(self) -> list[str | None]:
        return [e.user for e in self.events]


def follower(tmp: Path, paths: list[Path], pub: ListPublisher, from_end: bool = False
             ) -> LogFollower:
    return LogFollower(paths, LogParser("relay-t"), pub, CheckpointStore(tmp / "ckpt"),
                       from_end=from_end, retry_interval=0.01, clock=lambda: REF)


async def drain(f: LogFollower, polls: int = 4) -> None:
    for _ in range(polls):
        await f.poll_once()


async def test_reads_existing_lines_from_start_and_saves_checkpoint(tmp_path: Path) -> None:
    log = tmp_path / "maillog"
    append(log, 1, 2, 3)
    pub = ListPublisher()
    f = follower(tmp_path, [log], pub)
    await drain(f)
    assert pub.users() == ["u1", "u2", "u3"]
    pos = CheckpointStore(tmp_path / "ckpt").load(str(log))
    assert pos is not None and pos.offset == log.stat().st_size
    assert pos.ino == log.stat().st_ino


async def test_from_end_skips_history(tmp_path: Path) -> None:
    log = tmp_path / "maillog"
    append(log, 1, 2, raw="Nov 29 10:15:09 mx1 postfix/smtpd[5]: warning: unkn")
    pub = ListPublisher()
    f = follower(tmp_path, [log], pub, from_end=True)
    await drain(f)
    assert pub.users() == []
    # The partial line being written when we started is completed and counted as a whole.
    append(log, raw="own[192.0.2.9]: SASL PLAIN authentication failed: x, sasl_username=p\n")
    append(log, 4)
    await drain(f)
    assert pub.users() == ["p", "u4"]


async def test_partial_line_waits_for_its_newline(tmp_path: Path) -> None:
    log = tmp_path / "maillog"
    whole = fail_line(7)
    append(log, 1, raw=whole[:40])
    pub = ListPublisher()
    f = follower(tmp_path, [log], pub)
    await drain(f)
    assert pub.users() == ["u1"]
    append(log, raw=whole[40:-1])
    await drain(f)
    assert pub.users() == ["u1"]
    append(log, raw="\n")
    await drain(f)
    assert pub.users() == ["u1", "u7"]


async def test_restart_from_checkpoint_neither_loses_nor_repeats(tmp_path: Path) -> None:
    log = tmp_path / "maillog"
    append(log, 1, 2)
    pub = ListPublisher()
    f = follower(tmp_path, [log], pub)
    await drain(f)
    f.close()
    append(log, 3, 4)  # written while the follower is down
    f2 = follower(tmp_path, [log], pub, from_end=True)  # the checkpoint wins over --from-end
    await drain(f2)
    append(log, 5)
    await drain(f2)
    assert pub.users() == ["u1", "u2", "u3", "u4", "u5"]


async def test_crash_before_checkpoint_replays_same_event_ids(tmp_path: Path) -> None:
    log = tmp_path / "maillog"
    append(log, 1, 2)
    pub = ListPublisher()
    f = follower(tmp_path, [log], pub)
    await drain(f)
    first_ids = [e.event_id for e in pub.events]
    shutil.rmtree(tmp_path / "ckpt")  # as if we died after hand-off, before the checkpoint
    pub2 = ListPublisher()
    await drain(follower(tmp_path, [log], pub2))
    assert [e.event_id for e in pub2.events] == first_ids


async def test_rename_rotation_finishes_old_file_then_new(tmp_path: Path) -> None:
    log = tmp_path / "maillog"
    append(log, 1)
    pub = ListPublisher()
    f = follower(tmp_path, [log], pub)
    await drain(f)
    append(log, 2)  # written to the old file just before the rename
    log.rename(tmp_path / "maillog.1")
    append(tmp_path / "maillog.1", 3)  # the writer still had the old file open
    append(log, 4, 5)  # new file
    await drain(f)
    assert pub.users() == ["u1", "u2", "u3", "u4", "u5"]
    append(log, 6)
    await drain(f)
    assert pub.users()[-1] == "u6" and len(pub.events) == 6
    assert len({e.event_id for e in pub.events}) == 6


async def test_rotation_while_down_finishes_rotated_sibling(tmp_path: Path) -> None:
    log = tmp_path / "maillog"
    append(log, 1)
    pub = ListPublisher()
    f = follower(tmp_path, [log], pub)
    await drain(f)
    f.close()
    append(log, 2)
    log.rename(tmp_path / "maillog.1")
    append(log, 3)
    await drain(follower(tmp_path, [log], pub))
    assert pub.users() == ["u1", "u2", "u3"]


async def test_rotated_while_down_and_not_yet_recreated(tmp_path: Path) -> None:
    log = tmp_path / "maillog"
    append(log, 1)
    pub = ListPublisher()
    f = follower(tmp_path, [log], pub)
    await drain(f)
    f.close()
    append(log, 2)
    log.rename(tmp_path / "maillog.1")
    f2 = follower(tmp_path, [log], pub)
    await drain(f2)
    assert pub.users() == ["u1", "u2"]
    append(log, 3)
    await drain(f2)
    assert pub.users() == ["u1", "u2", "u3"]


async def test_rotated_file_without_final_newline_is_flushed(tmp_path: Path) -> None:
    log = tmp_path / "maillog"
    append(log, 1, raw=fail_line(2).rstrip("\n"))
    pub = ListPublisher()
    f = follower(tmp_path, [log], pub)
    await drain(f)
    assert pub.users() == ["u1"]
    log.rename(tmp_path / "maillog.1")
    append(log, 3)
    await drain(f)
    assert pub.users() == ["u1", "u2", "u3"]


async def test_copytruncate_starts_over_with_new_event_ids(tmp_path: Path) -> None:
    log = tmp_path / "maillog"
    append(log, 1, 2, 3)
    pub = ListPublisher()
    f = follower(tmp_path, [log], pub)
    await drain(f)
    shutil.copy(log, tmp_path / "maillog.1")
    os.truncate(log, 0)
    append(log, 1)  # same text at the same offset as before the truncation
    await drain(f)
    assert pub.users() == ["u1", "u2", "u3", "u1"]
    assert pub.events[0].event_id != pub.events[3].event_id


async def test_copytruncate_then_regrown_past_offset_is_detected(tmp_path: Path) -> None:
    log = tmp_path / "maillog"
    append(log, 1)
    pub = ListPublisher()
    f = follower(tmp_path, [log], pub)
    await drain(f)
    os.truncate(log, 0)
    append(log, 20, 21, 22)  # longer than what we had read, before our next poll
    await drain(f)
    assert pub.users() == ["u1", "u20", "u21", "u22"]


async def test_copytruncate_while_down(tmp_path: Path) -> None:
    log = tmp_path / "maillog"
    append(log, 1, 2)
    pub = ListPublisher()
    f = follower(tmp_path, [log], pub)
    await drain(f)
    f.close()
    os.truncate(log, 0)
    append(log, 3)
    await drain(follower(tmp_path, [log], pub))
    assert pub.users() == ["u1", "u2", "u3"]


async def test_missing_file_is_followed_once_it_appears(tmp_path: Path) -> None:
    log = tmp_path / "maillog"
    pub = ListPublisher()
    f = follower(tmp_path, [log], pub, from_end=True)
    await drain(f)
    append(log, 1)
    await drain(f)
    assert pub.users() == ["u1"]


async def test_overlong_line_is_dropped_and_following_lines_read(tmp_path: Path) -> None:
    log = tmp_path / "maillog"
    append(log, 1, raw="x" * 200_000 + "\n")
    append(log, 2)
    pub = ListPublisher()
    await drain(follower(tmp_path, [log], pub))
    assert pub.users() == ["u1", "u2"]


async def test_refused_events_are_retried_not_skipped(tmp_path: Path) -> None:
    log = tmp_path / "maillog"
    append(log, 1, 2)
    pub = ListPublisher(refuse_first=3)
    f = follower(tmp_path, [log], pub)
    await drain(f)
    assert pub.users() == ["u1", "u2"] and f.stats.refusals == 3


async def test_two_files_share_one_parser(tmp_path: Path) -> None:
    maillog, dovecot = tmp_path / "maillog", tmp_path / "dovecot.log"
    dovecot.write_text(
        "Nov 29 10:15:01 auth: Info: passwd-file(zed,192.0.2.77): Password mismatch\n")
    pub = ListPublisher()
    f = LogFollower([dovecot, maillog], LogParser("r"), pub, CheckpointStore(tmp_path / "c"),
                    from_end=False, clock=lambda: REF)
    await f.poll_once()
    maillog.write_text("Nov 29 10:15:03 mx1 postfix/smtpd[3]: warning: unknown[192.0.2.77]: "
                       "SASL LOGIN authentication failed: UGFzc3dvcmQ6\n")
    await f.poll_once()
    assert pub.users() == ["zed"]


async def test_run_until_stopped(tmp_path: Path) -> None:
    log = tmp_path / "maillog"
    pub = ListPublisher()
    f = LogFollower([log], LogParser("r"), pub, CheckpointStore(tmp_path / "c"), from_end=True,
                    poll_interval=0.05)
    f.restore()  # the file does not exist yet: once it appears it is read from its start
    task = asyncio.create_task(f.run())
    append(log, 1)
    async with asyncio.timeout(10):
        while not pub.events:
            await asyncio.sleep(0.05)
    f.stop()
    await asyncio.wait_for(task, 5)
    f.close()
    assert pub.users() == ["u1"]


def test_same_inode_and_head_with_new_device_number_is_the_same_file(tmp_path: Path) -> None:
    from relayguard.relay.checkpoint import FilePosition
    from relayguard.relay.file_tail import FileTail

    log = tmp_path / "maillog"
    append(log, 1, 2)
    st = log.stat()
    head = log.read_bytes()[:64].hex()
    tail = FileTail(str(log))
    tail.restore(FilePosition(str(log), st.st_dev + 1, st.st_ino, len(fail_line(1)), 0, head),
                 from_end=False)
    lines = tail.read()
    tail.close()
    assert [ln.text for ln in lines] == [fail_line(2).rstrip("\n")]


async def test_dovecot_log_named_after_the_mail_log_still_names_the_user(tmp_path: Path) -> None:
    """Both files gain lines in one poll; the mail log is read first, but the parser sees the
    Dovecot verdict (one second earlier, or the same second) before the Postfix failure."""
    mail, dove = tmp_path / "mail.log", tmp_path / "dovecot.log"
    mail.write_text("")
    dove.write_text("")
    pub = ListPublisher()
    f = follower(tmp_path, [mail, dove], pub)
    await drain(f, 1)
    mail.write_text(
        "Nov 29 10:15:04 mx1 postfix/smtpd[77]: warning: unknown[192.0.2.5]: SASL PLAIN "
        "authentication failed: UGFzc3dvcmQ6\n"
        "Nov 29 10:15:09 mx1 postfix/smtpd[77]: warning: unknown[192.0.2.6]: SASL PLAIN "
        "authentication failed: UGFzc3dvcmQ6\n")
    dove.write_text(
        "Nov 29 10:15:03 auth: Info: passwd-file(alice,192.0.2.5): Password mismatch\n"
        "Nov 29 10:15:09 auth-worker(9): Info: sql(bob,192.0.2.6): unknown user\n")
    await drain(f, 1)
    assert [(e.user, getattr(e, "failure_reason", None)) for e in pub.events] == [
        ("alice", "bad_credentials"), ("bob", "unknown_user")]
    for path in (mail, dove):  # both positions saved after the hand-off
        pos = CheckpointStore(tmp_path / "ckpt").load(str(path))
        assert pos is not None and pos.offset == path.stat().st_size


class RawListPublisher(ListPublisher):
    """Also takes raw keyed records, as EventProducer.publish_raw does (refusing the first
    `refuse_raw`)."""

    def __init__(self, refuse_raw: int = 0) -> None:
        super().__init__()
        self.raw: list[tuple[bytes, bytes]] = []
        self.refuse_raw = refuse_raw

    def publish_raw(self, key: bytes, value: bytes) -> bool:
        if self.refuse_raw > 0:
            self.refuse_raw -= 1
            return False
        self.raw.append((key, value))
        return True


BOUNCE = (
    "Nov 29 10:15:02 mx1 postfix/submission/smtpd[7]: 4D2F81E0A3: client=unknown[192.0.2.7], "
    "sasl_method=PLAIN, sasl_username=Eve\n"
    "Nov 29 10:15:03 mx1 postfix/smtp[8]: 4D2F81E0A3: to=<x@dead.example>, relay=mx.dead."
    "example[192.0.2.9]:25, delay=1, delays=0/0/0/1, dsn=5.1.1, status=bounced (550 no)\n")


async def test_delivery_events_are_published_raw_and_retried(tmp_path: Path) -> None:
    import orjson

    log = tmp_path / "maillog"
    log.write_text(BOUNCE)
    pub = RawListPublisher(refuse_raw=2)
    f = LogFollower([log], LogParser("relay-t", deliveries=True), pub,
                    CheckpointStore(tmp_path / "ckpt"), from_end=False, retry_interval=0.01,
                    clock=lambda: REF)
    assert await f.poll_once() == 2
    assert pub.users() == ["eve"]  # the login, user canonical (RELAYGUARD_USER_NAMES)
    [(key, value)] = pub.raw
    d = orjson.loads(value)
    assert key == d["user"].encode() == pub.users()[0].encode()  # type: ignore[union-attr]
    assert (d["type"], d["status"], d["queue_id"], d["dsn"]) == (
        "delivery", "bounced", "4D2F81E0A3", "5.1.1")
    assert (f.stats.deliveries, f.stats.refusals, f.stats.events) == (1, 2, 2)


def test_deliveries_need_a_raw_publisher(tmp_path: Path) -> None:
    import pytest

    with pytest.raises(TypeError, match="publish_raw"):
        LogFollower([tmp_path / "x"], LogParser("r", deliveries=True), ListPublisher(),
                    CheckpointStore(tmp_path / "ckpt"))
