"""Where a log follower is in each file: file identity (dev, inode, generation) + byte offset;
where the journal follower is in the systemd journal: a cursor (CursorStore, at the end).

One small JSON file per followed path, replaced atomically (write temp, fsync, rename), so a crash
leaves either the old or the new checkpoint, never a torn one. The follower saves only after the
events up to `offset` were handed to the producer: a restart then neither loses nor repeats lines
(a repeat after a crash between hand-off and save gives the same event ids, which consumers drop).

`generation` counts copytruncate resets of the same inode, so offsets after a truncation get event
ids distinct from the lines that were at those offsets before. `head` is the hex of the file's
first bytes when the checkpoint was taken: a different head means the file was truncated and
rewritten even if it has grown past the offset again.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path


@dataclass(frozen=True, slots=True)
class FilePosition:
    path: str
    dev: int
    ino: int
    offset: int
    generation: int = 0
    head: str = ""

    @property
    def line_base(self) -> str:
        """Prefix of event ids for lines of this file (offset is appended)."""
        return f"{self.dev:x}.{self.ino:x}.{self.generation}"


class CheckpointStore:
    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def _file(self, path: str) -> Path:
        digest = hashlib.sha256(os.path.abspath(path).encode()).hexdigest()[:20]
        return self.directory / f"tail-{digest}.json"

    def load(self, path: str) -> FilePosition | None:
        """The saved position for `path`; None when there is none or it is unreadable."""
        try:
            data = json.loads(self._file(path).read_text())
            pos = FilePosition(
                path=str(data["path"]), dev=int(data["dev"]), ino=int(data["ino"]),
                offset=int(data["offset"]), generation=int(data.get("generation", 0)),
                head=str(data.get("head", "")),
            )
        except (OSError, ValueError, KeyError, TypeError):
            return None
        return pos if pos.offset >= 0 else None

    def save(self, pos: FilePosition) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        target = self._file(pos.path)
        tmp = target.with_suffix(f".tmp{os.getpid()}")
        data = json.dumps(asdict(pos), sort_keys=True).encode()
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, target)


class CursorStore:
    """The saved position in a systemd journal: the cursor of the last entry whose events were
    handed to the producer. One small JSON file, replaced atomically like the file checkpoints;
    `key` names the journal read (its directory, or the system journal)."""

    def __init__(self, directory: Path, key: str) -> None:
        digest = hashlib.sha256(key.encode()).hexdigest()[:20]
        self.path = directory / f"journal-{digest}.json"
        self.key = key

    def load(self) -> str | None:
        """The saved cursor; None when there is none or the file is unreadable."""
        try:
            data = json.loads(self.path.read_text())
            cursor = data["cursor"]
        except (OSError, ValueError, KeyError, TypeError):
            return None
        return cursor if isinstance(cursor, str) and cursor and "\n" not in cursor else None

    def save(self, cursor: str) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(f".tmp{os.getpid()}")
        data = json.dumps({"journal": self.key, "cursor": cursor}, sort_keys=True).encode()
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, self.path)
