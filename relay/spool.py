"""Append-only disk spool for events that could not reach Kafka yet.

Layout: `<dir>/seg-<seq>.jsonl` segments, one record a line (`[key, value-json]`), plus a `cursor`
file (`<seq> <offset> <crc32>`, fixed width, rewritten in place) saying how far the lowest
segment has been replayed. Records are read oldest segment first, so replay keeps publish order.
A record is only dropped from disk after `commit()`, so a crash during replay re-sends
(consumers dedupe by event_id) but never loses. A drained tail segment is kept and written on
until it holds REUSE_BYTES (a quiet relay sends one event at a time), and records appended in
this run are read back from memory, not from the file.

Writes are flushed to the OS on every append (survives a process crash, SIGKILL included) and
fsync'd on a cadence (`fsync_interval`; an OS crash may lose the last interval). With
`auto_sync=False` the owner calls `sync_fd()` instead, e.g. from a thread, so the fsync does
not stall its event loop. Segment numbers only grow within a run, so a stale cursor can never
point into a newer segment. The spool never truncates itself:
once `max_bytes` would be exceeded, `append` refuses and returns False; the caller reports it.
All methods are synchronous and quick; the producer calls them from its event loop.
"""

from __future__ import annotations

import logging
import os
import time
import zlib
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import orjson

log = logging.getLogger(__name__)

_SEG_PREFIX = "seg-"
_SEG_SUFFIX = ".jsonl"
_FIRST_SEQ = 1_000_000_000  # room below for prepend()ed segments
# A drained tail segment is kept and written on until it holds this much: at low traffic every
# event is appended, sent and committed on its own, and removing and re-creating the segment
# file each time was most of its cost (with the cursor's rename: ~330 µs CPU an event).
REUSE_BYTES = 1 << 20
RECENT_BYTES = 4 << 20  # records appended this run kept in memory for read(), at most


@dataclass(frozen=True, slots=True)
class SpoolRecord:
    key: bytes
    value: bytes
    seq: int  # segment the record lives in
    end: int  # offset just past its line; commit(seq, end) drops it and everything before


class Spool:
    def __init__(
        self,
        directory: Path,
        *,
        max_bytes: int = 1 << 30,
        segment_bytes: int = 16 << 20,
        fsync_interval: float = 1.0,
        auto_sync: bool = True,
    ) -> None:
        self.dir = Path(directory)
        self.max_bytes = max_bytes
        self.segment_bytes = segment_bytes
        self.fsync_interval = fsync_interval
        self.auto_sync = auto_sync
        self.dir.mkdir(parents=True, exist_ok=True)
        self.corrupt_lines = 0
        self._writer: BinaryIO | None = None
        self._writer_seq: int | None = None
        self._dirty = False
        self._last_fsync = time.monotonic()
        self._sizes: dict[int, int] = {}
        # (start offset, record) of the newest records appended this run and not committed,
        # so read() need not read back and parse what it has just written (see _recent_read)
        self._recent: deque[tuple[int, SpoolRecord]] = deque()
        self._recent_bytes = 0
        self._cursor_fd: int | None = None
        for p in self.dir.glob(f"{_SEG_PREFIX}*{_SEG_SUFFIX}"):
            seq = int(p.name[len(_SEG_PREFIX) : -len(_SEG_SUFFIX)])
            self._sizes[seq] = self._repair_tail(p)
        self._cursor_seq, self._cursor_off = self._load_cursor()
        self._high_seq = max([*self._sizes, self._cursor_seq, _FIRST_SEQ - 1])
        self._drop_consumed()
        if self._cursor_seq not in self._sizes and (self._cursor_seq or self._cursor_off):
            # a kill between unlinking a replayed segment and saving the cursor: start afresh
            self._cursor_seq, self._cursor_off = 0, 0
            self._save_cursor()

    # ---- state -------------------------------------------------------------------------------

    def is_empty(self) -> bool:
        return self.pending_bytes() == 0

    def pending_bytes(self) -> int:
        """Bytes on disk not yet replayed."""
        total = sum(self._sizes.values())
        if self._cursor_seq in self._sizes:
            total -= self._cursor_off
        return total

    # ---- writing -----------------------------------------------------------------------------

    def append(self, key: bytes, value: bytes) -> bool:
        """Append one record at the tail. False (nothing written) if the spool is full."""
        line = self._line(key, value)
        if self.pending_bytes() + len(line) > self.max_bytes:
            return False
        w = self._tail_writer(len(line))
        w.write(line)
        w.flush()  # in the OS page cache now: a process crash cannot lose it
        seq = self._writer_seq
        assert seq is not None
        start = self._sizes[seq]
        self._sizes[seq] = end = start + len(line)
        self._dirty = True
        if self._recent_bytes + len(line) <= RECENT_BYTES:
            self._recent.append((start, SpoolRecord(key, value, seq, end)))
            self._recent_bytes += len(line)
        if self.auto_sync:
            self.maybe_sync()
        return True

    def tail(self) -> tuple[int, int]:
        """(segment, offset) just past the newest record: records at or before it exist now."""
        if not self._sizes:
            return (0, 0)
        seq = max(self._sizes)
        return (seq, self._sizes[seq])

    def prepend(self, records: list[tuple[bytes, bytes]]) -> bool:
        """Put records *before* everything spooled (sends that failed while newer events were
        already spooled), so replay order stays publish order. Ignores the size cap on purpose:
        these events were accepted earlier and must not be lost."""
        if not records:
            return True
        if self._cursor_seq in self._sizes and self._cursor_off >= self._sizes[self._cursor_seq]:
            # a drained tail kept for writing on (REUSE_BYTES): the cursor is about to move to
            # the new first segment, and must not leave that one to be replayed again
            self._remove(self._cursor_seq)
        seq = (min(self._sizes) if self._sizes else _FIRST_SEQ) - 1
        data = b"".join(self._line(k, v) for k, v in records)
        path = self._path(seq)
        with path.open("wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        self._sizes[seq] = len(data)
        if self._cursor_off and self._cursor_seq in self._sizes:
            # the producer only prepends before replay has started; say so if that ever breaks
            log.warning("spool: prepend during a partial replay; some events may be re-sent")
        return True

    def maybe_sync(self) -> None:
        if self._dirty and time.monotonic() - self._last_fsync >= self.fsync_interval:
            self.sync()

    def sync(self) -> None:
        if self._writer is not None and self._dirty:
            self._writer.flush()
            os.fsync(self._writer.fileno())
        self._dirty = False
        self._last_fsync = time.monotonic()

    def sync_due(self) -> bool:
        return self._dirty and time.monotonic() - self._last_fsync >= self.fsync_interval

    def sync_fd(self) -> int | None:
        """For `auto_sync=False`: a duplicate of the tail segment's descriptor to fsync (and
        close) elsewhere, or None when nothing is dirty. Its data was flushed on append."""
        if self._writer is None or not self._dirty:
            return None
        self._dirty = False
        self._last_fsync = time.monotonic()
        return os.dup(self._writer.fileno())

    def close(self) -> None:
        self.sync()
        if self._writer is not None:
            self._writer.close()
            self._writer = None
            self._writer_seq = None
        if self._cursor_fd is not None:
            os.fsync(self._cursor_fd)
            os.close(self._cursor_fd)
            self._cursor_fd = None

    # ---- reading -----------------------------------------------------------------------------

    def read(self, max_records: int = 500, max_bytes: int = 1 << 20) -> list[SpoolRecord]:
        """The oldest not-yet-committed records, in order (from one segment at a time)."""
        for seq in sorted(self._sizes):
            start = self._cursor_off if seq == self._cursor_seq else 0
            if start >= self._sizes[seq]:
                continue
            recent = self._recent_read(seq, start, max_records, max_bytes)
            if recent:
                return recent
            return self._read_segment(seq, start, max_records, max_bytes)
        return []

    def _recent_read(self, seq: int, start: int, max_records: int, max_bytes: int
                     ) -> list[SpoolRecord]:
        """What _read_segment would read, from memory: only when the oldest record kept is
        the very next one to replay (anything else, such as records appended past the memory
        cap or prepended, is read from disk)."""
        recent = self._recent
        if not recent or recent[0][0] != start or recent[0][1].seq != seq:
            return []
        out: list[SpoolRecord] = []
        for _, rec in recent:
            if rec.seq != seq or len(out) >= max_records or (
                    out and rec.end - start > max_bytes):
                break
            out.append(rec)
        return out

    def commit(self, seq: int, end: int) -> None:
        """Everything up to (seq, end) reached Kafka: forget it."""
        for s in [s for s in self._sizes if s < seq]:
            self._remove(s)
        recent = self._recent
        while recent and (recent[0][1].seq, recent[0][1].end) <= (seq, end):
            rec_start, rec = recent.popleft()
            self._recent_bytes -= rec.end - rec_start
        self._cursor_seq, self._cursor_off = seq, end
        self._drop_consumed()
        self._save_cursor()

    # ---- internals ---------------------------------------------------------------------------

    @staticmethod
    def _line(key: bytes, value: bytes) -> bytes:
        # value is already JSON (codec output): embed it as is, no double encoding
        return orjson.dumps([key.decode("utf-8", "replace"), orjson.Fragment(value)]) + b"\n"

    def _path(self, seq: int) -> Path:
        return self.dir / f"{_SEG_PREFIX}{seq:020d}{_SEG_SUFFIX}"

    def _tail_writer(self, need: int) -> BinaryIO:
        """The newest segment, opened for append; a new one once it would pass segment_bytes."""
        newest = max(self._sizes) if self._sizes else None
        if newest is None or newest < _FIRST_SEQ or (
                self._sizes[newest] and self._sizes[newest] + need > self.segment_bytes):
            seq = self._high_seq = self._high_seq + 1
            self._sizes[seq] = 0
        else:
            seq = newest
        if self._writer is None or self._writer_seq != seq:
            if self._writer is not None:
                self.sync()
                self._writer.close()
            self._writer = self._path(seq).open("ab")
            self._writer_seq = seq
        return self._writer

    def _read_segment(self, seq: int, start: int, max_records: int, max_bytes: int) -> list[
        SpoolRecord
    ]:
        out: list[SpoolRecord] = []
        with self._path(seq).open("rb") as f:
            f.seek(start)
            data = f.read(min(max_bytes, self._sizes[seq] - start))
        if b"\n" not in data and data:  # one line longer than max_bytes: read it whole
            with self._path(seq).open("rb") as f:
                f.seek(start)
                data = f.readline()
        pos = start
        for line in data.splitlines(keepends=True):
            if not line.endswith(b"\n") or len(out) >= max_records:
                break
            pos += len(line)
            try:
                key, value = orjson.loads(line)
                out.append(SpoolRecord(key.encode(), orjson.dumps(value), seq, pos))
            except (orjson.JSONDecodeError, ValueError, TypeError, AttributeError):
                self.corrupt_lines += 1
                log.error("spool %s: skipping corrupt line at offset %d", self._path(seq),
                          pos - len(line))
        if not out and pos > start:  # only corrupt lines: step past them
            self.commit(seq, pos)
            return self.read(max_records, max_bytes)
        return out

    def _repair_tail(self, path: Path) -> int:
        """A crash mid-write can leave a torn last line: cut it off (it was never acknowledged)."""
        data = path.read_bytes()
        cut = data.rfind(b"\n") + 1
        if cut != len(data):
            log.warning("spool %s: dropping %d bytes of torn last line", path, len(data) - cut)
            with path.open("r+b") as f:
                f.truncate(cut)
        return cut

    def _load_cursor(self) -> tuple[int, int]:
        """The saved cursor; (0, 0) (replay everything: re-sent, never lost) when the file is
        missing, torn or fails its check."""
        try:
            fields = (self.dir / "cursor").read_text().split()
            if len(fields) == 3:  # "seq off crc" (fixed width, written in place)
                seq, off, crc = fields
                if int(crc, 16) != zlib.crc32(f"{seq} {off}".encode()):
                    log.warning("spool %s: cursor fails its check; replaying from the start "
                                "(events may be sent twice, none lost)", self.dir)
                    return 0, 0
            else:  # "seq off", as spools before the in-place cursor wrote it
                seq, off = fields
            return int(seq), int(off)
        except (OSError, ValueError):
            return 0, 0

    def _save_cursor(self) -> None:
        """One pwrite of a fixed-width line in place (was a temp file and a rename per commit:
        three metadata operations for every batch sent). A torn line fails its crc and means
        "replay from the start"; a stale one (an OS crash before it reached the disk) replays
        from where it points: either way events are sent twice, never skipped."""
        text = f"{self._cursor_seq:020d} {self._cursor_off:020d}"
        line = f"{text} {zlib.crc32(text.encode()):08x}\n".encode()
        if self._cursor_fd is None:
            self._cursor_fd = os.open(self.dir / "cursor", os.O_WRONLY | os.O_CREAT, 0o600)
            os.ftruncate(self._cursor_fd, 0)  # an old shorter or longer format
        os.pwrite(self._cursor_fd, line, 0)

    def _drop_consumed(self) -> None:
        """Delete the cursor's segment once fully replayed. (Lower segments are removed by
        commit(); any found at start-up were prepend()ed and are still pending.)"""
        seq = self._cursor_seq
        if seq in self._sizes and self._cursor_off >= self._sizes[seq]:
            if seq == self._writer_seq and self._sizes[seq] < REUSE_BYTES:
                return  # the tail: appends go on after the cursor (see REUSE_BYTES)
            self._remove(seq)

    def _remove(self, seq: int) -> None:
        if seq == self._writer_seq and self._writer is not None:
            self._writer.close()
            self._writer = None
            self._writer_seq = None
        self._sizes.pop(seq, None)
        self._path(seq).unlink(missing_ok=True)
        if seq == self._cursor_seq:
            self._cursor_seq, self._cursor_off = 0, 0
