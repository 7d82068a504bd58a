"""The relay's lock book on disk, so a hook restarted while Kafka is down still refuses the users
locked before (relay/lock_follower.py saves it; relay/hook_cli.py loads it before listening).

One JSON file holding, per subject, the latest command applied, exactly as signed on the lock
topic (signature included). It is replaced atomically (write a temp file in the same directory,
fsync, rename, fsync the directory), so a crash leaves the old or the new file, never a torn one.

The file is an input like any Kafka record: on load every entry is verified again with the
relay's keyring and the same range checks (codec.verified_lock_command). An entry someone edited,
an unsigned one, or one signed by a key since removed from the keyring is refused, counted by
reason and logged, never obeyed; an unreadable file is logged and the relay starts with what the
locks topic gives it (as before this file existed).
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from relayguard.relay.lock_book import LockBook
from relayguard.stream.codec import Rejected, verified_lock_command
from relayguard.stream.signed import Verifier

log = logging.getLogger(__name__)

FORMAT = "relayguard-lock-book"
FORMAT_VERSION = 1
MAX_FILE_BYTES = 256 << 20  # ~400k subjects; a bigger file is not ours


@dataclass
class LoadResult:
    subjects: int = 0  # entries obeyed
    refused: Counter[str] = field(default_factory=Counter)  # reason -> entries not obeyed
    saved_at: float | None = None  # when the file was written (its own stamp)
    problem: str | None = None  # why the whole file was not used, if it was not


class LockBookStore:
    def __init__(self, path: Path, keyring: Verifier, max_skew: float, *,
                 clock: Callable[[], float] = time.time) -> None:
        self.path = path
        self.keyring = keyring
        self.max_skew = max_skew
        self.clock = clock
        self._records: dict[str, dict[str, Any]] = {}  # book key -> signed wire object
        self.saves = 0
        self._seq = itertools.count(1)
        self._write_lock = threading.Lock()  # writes come from threads: one at a time, and
        self._written = 0  # never an older snapshot over a newer one

    def remember(self, key: str, raw: bytes) -> None:
        """Note the signed record just applied for book key `key` (kept for the next save)."""
        self._records[key] = orjson.loads(raw)

    def load(self, book: LockBook) -> LoadResult:
        """Apply every valid entry of the file to `book`; never raises on a bad file."""
        result = LoadResult()
        try:
            size = self.path.stat().st_size
            if size > MAX_FILE_BYTES:
                raise ValueError(f"{size} bytes, more than the {MAX_FILE_BYTES} allowed")
            data = orjson.loads(self.path.read_bytes())
            if not isinstance(data, dict) or data.get("format") != FORMAT:
                raise ValueError(f"not a {FORMAT} file")
            if data.get("format_version") != FORMAT_VERSION:
                raise ValueError(f"format_version {data.get('format_version')!r}, this relay "
                                 f"reads {FORMAT_VERSION}")
            records = data.get("records")
            if not isinstance(records, list):
                raise ValueError("no records list")
            saved_at = data.get("saved_at")
            result.saved_at = float(saved_at) if isinstance(saved_at, int | float) else None
        except FileNotFoundError:
            result.problem = "no saved lock book yet"
            return result
        except (OSError, ValueError) as exc:  # orjson.JSONDecodeError is a ValueError
            result.problem = f"unreadable ({type(exc).__name__}: {str(exc)[:200]})"
            log.error("lock book %s %s: not used; starting with the locks topic alone (the "
                      "file is rewritten at the next applied command)", self.path,
                      result.problem)
            return result
        now = self.clock()
        for rec in records:
            try:
                cmd = verified_lock_command(rec, self.keyring, now, self.max_skew)
            except Rejected as exc:
                result.refused[exc.reason] += 1
                continue
            if cmd.dry_run:
                result.refused["dry_run"] += 1
                continue
            if book.apply(cmd):
                self._records[book.key(cmd.subject_kind, cmd.subject)] = rec
                result.subjects += 1
        if result.refused:
            log.error("lock book %s: REFUSED %d entries (%s): not obeyed; tampered with, "
                      "unsigned, or signed by a key no longer in the keyring", self.path,
                      sum(result.refused.values()),
                      ", ".join(f"{r} {n}" for r, n in sorted(result.refused.items())))
        return result

    def save(self, book: LockBook) -> None:
        """Write the records of the subjects in `book` atomically. Raises OSError (the caller
        logs it and keeps enforcing from RAM)."""
        self.write(*self.snapshot(book))
        self.saves += 1

    def snapshot(self, book: LockBook) -> tuple[int, bytes]:
        """(sequence number, the file's bytes) for `book` now (in RAM: the event loop may
        call it)."""
        keys = {key for key, _ in book.commands()}
        records = [rec for key, rec in self._records.items() if key in keys]
        return next(self._seq), orjson.dumps({"format": FORMAT, "format_version": FORMAT_VERSION,
                                              "saved_at": self.clock(), "records": records})

    def write(self, seq: int, body: bytes) -> None:
        """Replace the file with snapshot `seq` atomically, unless a newer one was written
        (blocking I/O: the follower runs it in a thread so an fsync never delays answers)."""
        with self._write_lock:
            if seq <= self._written:
                return
            self._write(body)
            self._written = seq

    def _write(self, body: bytes) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                view = memoryview(body)
                while view:
                    view = view[os.write(fd, view):]
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, self.path)
        except BaseException:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise
        dir_fd = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
