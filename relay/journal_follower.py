"""Follow the systemd journal for the mail units and hand their login events to the producer.

Runs ``journalctl --follow --output=json --all [--directory D] -u UNIT...`` and feeds every
entry (SYSLOG_IDENTIFIER, pid, MESSAGE) to the same LogParser as `hook tail`, so formats and
Dovecot attribution are the same. Position: the cursor of the last entry whose events were
handed over is saved (relay.checkpoint.CursorStore) at least every `save_interval` seconds
while entries arrive, every `save_every` entries, and on stop; a restart passes it to
``--after-cursor``, so nothing is lost or repeated. Entries replayed after a crash between
hand-off and save carry the same event ids (journal seqnum), which consumers drop.

Back-pressure as in relay.log_follower: a refused event is retried and nothing more is read
meanwhile (journalctl then blocks on its pipe). If journalctl exits (journal directory missing,
rotated away, killed), it is restarted after `restart_delay` from the last handed cursor.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from relayguard.relay.checkpoint import CursorStore
from relayguard.relay.journal_entry import parse_entry
from relayguard.relay.log_follower import Publisher, check_publisher, publish_any
from relayguard.relay.log_parser import LogParser
from relayguard.stream.records import DeliveryEvent, Event

log = logging.getLogger(__name__)

DEFAULT_UNITS = ("postfix@-", "dovecot", "exim4")
# journalctl --all prints whole entries; one over this is dropped (with what asyncio discards
# of it; the entry after it may be lost too, a case of 16 MiB entries only).
MAX_JSON_LINE = 16 << 20


@dataclass(slots=True)
class JournalStats:
    entries: int = 0
    bad_lines: int = 0
    events: int = 0
    refusals: int = 0
    checkpoints: int = 0
    restarts: int = 0


class JournalFollower:
    def __init__(
        self,
        parser: LogParser,
        publisher: Publisher,
        cursors: CursorStore,
        *,
        units: Sequence[str] = DEFAULT_UNITS,
        directory: Path | None = None,
        from_end: bool = True,
        journalctl: str = "journalctl",
        save_interval: float = 0.5,
        save_every: int = 500,
        retry_interval: float = 1.0,
        restart_delay: float = 2.0,
    ) -> None:
        self.parser = parser
        check_publisher(parser, publisher)
        self.publisher = publisher
        self.cursors = cursors
        self.units = tuple(units)
        self.directory = directory
        self.from_end = from_end
        self.journalctl = journalctl
        self.save_interval = save_interval
        self.save_every = save_every
        self.retry_interval = retry_interval
        self.restart_delay = restart_delay
        self.stats = JournalStats()
        self._cursor: str | None = None  # last entry handed over
        self._saved: str | None = None
        self._stop = asyncio.Event()
        self._proc: asyncio.subprocess.Process | None = None

    def command(self, after_cursor: str | None) -> list[str]:
        """The journalctl command line for a start after `after_cursor` (or from start/end)."""
        cmd = [self.journalctl, "--follow", "--output=json", "--all", "--no-pager", "--quiet"]
        if self.directory is not None:
            cmd.append(f"--directory={self.directory}")
        for unit in self.units:
            cmd.append(f"--unit={unit}")
        if after_cursor is not None:
            cmd += [f"--after-cursor={after_cursor}", "--no-tail"]
        elif self.from_end:
            cmd.append("--lines=0")
        else:
            cmd.append("--no-tail")
        return cmd

    async def run(self) -> None:
        """Follow until stop(); journalctl is restarted if it exits on its own."""
        self._cursor = self._saved = self.cursors.load()
        first = True
        while not self._stop.is_set():
            if not first:
                self.stats.restarts += 1
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), self.restart_delay)
                if self._stop.is_set():
                    break
            first = False
            await self._run_once()
        self._save()

    def stop(self) -> None:
        self._stop.set()
        if self._proc is not None and self._proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self._proc.terminate()

    async def _run_once(self) -> None:
        if self._cursor is None and self.from_end:
            # A fresh start at the end: restarts must continue from here, not from a later
            # end, so the newest entry's cursor is the starting position.
            self._cursor = await self._newest_cursor()
            self._save()
        cmd = self.command(self._cursor)
        try:
            proc = await asyncio.create_subprocess_exec(
                *cmd, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE, limit=MAX_JSON_LINE)
        except OSError as exc:
            log.error("journal: cannot run %s: %s (install systemd's journalctl or pass "
                      "--journalctl)", cmd[0], exc)
            return
        self._proc = proc
        log.info("journal: following %s (units %s)%s", self.directory or "the system journal",
                 ", ".join(self.units),
                 " after the saved cursor" if self._cursor else
                 (" from its end" if self.from_end else " from its start"))
        assert proc.stdout is not None and proc.stderr is not None
        errors = asyncio.create_task(self._log_stderr(proc.stderr))
        pending = 0
        last_save = time.monotonic()
        try:
            while True:
                try:
                    raw = await asyncio.wait_for(proc.stdout.readline(), self.save_interval)
                except TimeoutError:
                    self._save()
                    pending, last_save = 0, time.monotonic()
                    continue
                except ValueError:  # line over MAX_JSON_LINE
                    self.stats.bad_lines += 1
                    continue
                if not raw:
                    break  # journalctl ended
                await self._entry(raw)
                pending += 1
                if pending >= self.save_every or time.monotonic() - last_save >= \
                        self.save_interval:
                    self._save()
                    pending, last_save = 0, time.monotonic()
        finally:
            self._save()
            if proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.terminate()
            rc = await proc.wait()
            await errors
            self._proc = None
            if not self._stop.is_set():
                log.warning("journal: journalctl exited with status %s; restarting in %.0fs",
                            rc, self.restart_delay)

    async def _newest_cursor(self) -> str | None:
        cmd = [c for c in self.command(None) if c not in ("--follow", "--lines=0")]
        cmd.append("--lines=1")
        try:
            proc = await asyncio.create_subprocess_exec(
                *cmd, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.DEVNULL, limit=MAX_JSON_LINE)
        except OSError:
            return None
        try:
            out, _ = await asyncio.wait_for(proc.communicate(), 60)
        except (TimeoutError, ValueError):
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
            return None
        lines = out.splitlines()
        entry = parse_entry(lines[-1], 0.0) if lines else None
        return entry.cursor if entry is not None else None

    async def _entry(self, raw: bytes) -> None:
        entry = parse_entry(raw, time.time())
        if entry is None:
            self.stats.bad_lines += 1
            return
        self.stats.entries += 1
        if entry.message:
            for event in self.parser.feed_entry(entry.time, entry.prog, entry.pid,
                                                entry.message, entry.entry_id):
                if not await self._hand_over(event):
                    return  # stopping while refused: the cursor stays before this entry
            if self.parser.deliveries:
                for delivery in self.parser.pop_deliveries():
                    if not await self._hand_over(delivery):
                        return  # as above (the queue id map is gone after a restart anyway)
        self._cursor = entry.cursor

    async def _hand_over(self, event: Event | DeliveryEvent) -> bool:
        while True:
            ok = await publish_any(self.publisher, event)
            if ok is None or ok:
                self.stats.events += 1
                return True
            self.stats.refusals += 1
            if self._stop.is_set():
                return False
            log.warning("journal: producer refused event %s; retrying", event.event_id)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), self.retry_interval)

    def _save(self) -> None:
        if self._cursor is None or self._cursor == self._saved:
            return
        self.cursors.save(self._cursor)
        self._saved = self._cursor
        self.stats.checkpoints += 1

    @staticmethod
    async def _log_stderr(stream: asyncio.StreamReader) -> None:
        while True:
            line = await stream.readline()
            if not line:
                return
            log.warning("journalctl: %s", line.decode("utf-8", "replace").rstrip()[:500])
