"""Read complete new lines of one log file, across rename rotation and copytruncate. No asyncio.

- Rename rotation (logrotate default, `postfix logrotate`): when the path names a new inode, the old
  file is read to its end first (until one poll reads nothing more), then the new file from 0.
- copytruncate: the file got shorter than what we read, or its first bytes changed -> read again
  from 0 with `generation + 1`, so event ids of the new lines differ from the old ones.
- A last line without its newline is kept back until the newline arrives; only when a rotated
  file is finished is such a remainder taken as a line.
- Restart: `restore()` takes a checkpoint. If the checkpointed inode is no longer at the path
  (rotated while we were down), a sibling with that inode (e.g. maillog.1) is finished first.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass

from relayguard.relay.checkpoint import FilePosition

CHUNK = 1 << 20  # most bytes read per poll per file, so one busy file cannot starve the others
MAX_LINE_BYTES = 64 * 1024  # a longer "line" is junk: dropped up to its next newline
HEAD_BYTES = 64


@dataclass(frozen=True, slots=True)
class Line:
    text: str
    line_id: str  # file identity + start offset: stable across restarts, for event ids
    after: FilePosition  # checkpoint that covers this line


class FileTail:
    def __init__(self, path: str) -> None:
        self.path = path
        self._fd: int | None = None
        self._dev = self._ino = self._gen = self._offset = 0
        self._head = b""
        self._buf = b""
        self._discarding = False
        self._rotated_seen = False

    # -- opening and restoring ------------------------------------------------------------
    def restore(self, pos: FilePosition | None, from_end: bool) -> None:
        """Choose where to start: the checkpoint if it still applies, else start or end."""
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            # Rotated and not yet re-created: finish the rotated file first. A file that
            # appears at the path later is opened from 0, since everything in it is new.
            old = self._find_sibling(pos.dev, pos.ino) if pos is not None else None
            if pos is not None and old is not None:
                self._open(old, pos.offset, pos.generation)
            return
        # Same inode with the same first bytes is the same file even if the device number
        # changed (some filesystems renumber devices across reboots).
        same = pos is not None and (pos.dev, pos.ino) == (st.st_dev, st.st_ino)
        if pos is not None and not same and pos.ino == st.st_ino and pos.head:
            with open(self.path, "rb") as fh:
                same = fh.read(HEAD_BYTES).hex().startswith(pos.head)
        if pos is not None and same:
            self._open(self.path, pos.offset, pos.generation)
            if st.st_size < pos.offset or (pos.head and self._head.hex()[: len(pos.head)]
                                           != pos.head):
                self._reset_truncated()
            return
        if pos is not None:
            old = self._find_sibling(pos.dev, pos.ino)
            if old is not None:
                self._open(old, pos.offset, pos.generation)
                return
            self._open(self.path, 0, 0)  # the checkpointed file is gone: new file from its start
            return
        self._open(self.path, 0, 0)
        if from_end:
            self._offset = self._last_line_end(st.st_size)

    def _open(self, path: str, offset: int, gen: int) -> None:
        fd = os.open(path, os.O_RDONLY)
        st = os.fstat(fd)
        self.close()
        self._fd, self._dev, self._ino = fd, st.st_dev, st.st_ino
        self._offset, self._gen, self._buf, self._discarding = offset, gen, b"", False
        self._rotated_seen = False
        self._head = os.pread(fd, HEAD_BYTES, 0)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def _find_sibling(self, dev: int, ino: int) -> str | None:
        folder = os.path.dirname(os.path.abspath(self.path))
        base = os.path.basename(self.path)
        try:
            entries = list(os.scandir(folder))
        except OSError:
            return None
        for entry in entries:
            if entry.name.startswith(base) and entry.is_file(follow_symlinks=False):
                st = entry.stat(follow_symlinks=False)
                if (st.st_dev, st.st_ino) == (dev, ino):
                    return entry.path
        return None

    def _last_line_end(self, size: int) -> int:
        """Offset just after the last newline before `size` (0 if none in the last 64 KiB)."""
        assert self._fd is not None
        start = max(0, size - MAX_LINE_BYTES)
        tail = os.pread(self._fd, size - start, start)
        nl = tail.rfind(b"\n")
        return 0 if nl < 0 else start + nl + 1

    def _reset_truncated(self) -> None:
        assert self._fd is not None
        self._offset, self._gen, self._buf, self._discarding = 0, self._gen + 1, b"", False
        self._head = os.pread(self._fd, HEAD_BYTES, 0)

    # -- reading ----------------------------------------------------------------------------
    def position(self) -> FilePosition | None:
        if self._fd is None:
            return None
        return FilePosition(self.path, self._dev, self._ino, self._offset, self._gen,
                            self._head.hex())

    def read(self) -> list[Line]:
        """Complete lines appended since the last call (may be empty)."""
        if self._fd is None:
            try:
                self._open(self.path, 0, 0)
            except FileNotFoundError:
                return []
        assert self._fd is not None
        self._check_truncation()
        data = os.pread(self._fd, CHUNK, self._offset + len(self._buf))
        lines = self._split(data)
        if not data and self._path_moved():
            # The old file was idle for a whole poll after rotation: finish it and switch.
            if self._rotated_seen:
                lines += self._flush_remainder()
                with contextlib.suppress(FileNotFoundError):
                    self._open(self.path, 0, 0)
            else:
                self._rotated_seen = True
        return lines

    def _path_moved(self) -> bool:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return False  # rotated, new file not created yet: keep reading the old one
        return (st.st_dev, st.st_ino) != (self._dev, self._ino)

    def _check_truncation(self) -> None:
        assert self._fd is not None
        size = os.fstat(self._fd).st_size
        if size < self._offset + len(self._buf):
            self._reset_truncated()
            return
        now = os.pread(self._fd, HEAD_BYTES, 0)
        if now[: len(self._head)] != self._head:
            self._reset_truncated()
        elif len(now) > len(self._head):
            self._head = now  # the file was shorter than HEAD_BYTES when we first saw it

    def _split(self, data: bytes) -> list[Line]:
        buf = self._buf + data
        out: list[Line] = []
        start = 0
        while True:
            nl = buf.find(b"\n", start)
            if nl < 0:
                break
            if self._discarding:
                self._discarding = False
            else:
                out.append(self._line(buf[start:nl], self._offset + start, self._offset + nl + 1))
            start = nl + 1
        self._offset += start
        self._buf = buf[start:]
        if len(self._buf) > MAX_LINE_BYTES:
            self._offset += len(self._buf)
            self._buf, self._discarding = b"", True
        return out

    def _flush_remainder(self) -> list[Line]:
        if not self._buf or self._discarding:
            return []
        end = self._offset + len(self._buf)
        line = self._line(self._buf, self._offset, end)
        self._offset, self._buf = end, b""
        return [line]

    def _line(self, raw: bytes, start: int, end: int) -> Line:
        base = f"{self._dev:x}.{self._ino:x}.{self._gen}"
        after = FilePosition(self.path, self._dev, self._ino, end, self._gen, self._head.hex())
        return Line(raw.decode("utf-8", "replace").rstrip("\r"), f"{base}:{start:x}", after)
