"""The demo's screen: a live rich view on a terminal (events/s, findings and locks as they
happen, each attack's time to lock and to the relays' acks), plain lines otherwise; and the
summary table per injected attack at the end (rendered by rich either way)."""

from __future__ import annotations

import sys
from collections import deque
from typing import Any

import click
from rich import box
from rich.console import Console, Group
from rich.live import Live
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from relayguard.roof.demo_track import Tracker


def _secs(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}s"


class DemoView:
    def __init__(self, tracker: Tracker, live: bool | None = None) -> None:
        self.tracker = tracker
        self.live_mode = sys.stdout.isatty() if live is None else live
        # Off a terminal rich would wrap at 80 columns; the table needs more.
        self.console = Console() if self.live_mode else Console(width=200, no_color=True,
                                                                highlight=False)
        self.recent: deque[tuple[str, str]] = deque(maxlen=14)
        self._live: Live | None = None

    def __enter__(self) -> DemoView:
        if self.live_mode:
            self._live = Live(self._render(), console=self.console, refresh_per_second=4,
                              transient=False)
            self._live.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._live is not None:
            self._live.update(self._render())
            self._live.__exit__(*exc)
            self._live = None

    def line(self, text: str, style: str = "") -> None:
        """One happening: a row of the live view, or a plain line on stdout."""
        if self._live is not None:
            self.recent.append((text, style))
            self._live.update(self._render())
        else:
            click.echo(text)

    def step(self, text: str) -> None:
        if self._live is not None:
            self.line(f"==> {text}", "cyan")
        else:
            click.secho(f"==> {text}", fg="cyan", err=True)

    def refresh(self) -> None:
        if self._live is not None:
            self._live.update(self._render())

    def _render(self) -> Group:
        t = self.tracker
        stats = Text.assemble(
            ("events/s ", "bold"), (f"{t.rate():8.1f}   ", "green"),
            ("events ", "bold"), (f"{t.events}   ", ""),
            ("findings ", "bold"), (f"{t.findings}   ", "yellow"),
            ("locks ", "bold"), (f"{t.locks}   ", "red"),
            ("relay acks ", "bold"), (f"{t.acks}", "magenta"))
        feed = Text("\n").join(Text(text, style=style) for text, style in self.recent) \
            if self.recent else Text("waiting for the fleet...", style="dim")
        return Group(Panel(stats, title="relayguard demo: live"),
                     Panel(feed, title="findings and locks as they happen"),
                     self.attack_table(live=True))

    def attack_table(self, live: bool = False) -> Table:
        t = self.tracker
        n = len(t.relays)
        table = Table(title="attacks so far" if live else "summary per injected attack",
                      box=box.SIMPLE_HEAVY if self.live_mode else box.ASCII)
        table.add_column("attack", no_wrap=True, max_width=26 if self.live_mode else None)
        table.add_column("user", no_wrap=True, min_width=12)
        table.add_column("verdict", no_wrap=True, min_width=7)
        if not self.live_mode:  # the live feed names the detector already
            table.add_column("detector", no_wrap=True)
        heads = (("lock", "1st ack", f"all {n} acks") if self.live_mode
                 else ("to lock", "to first ack", f"to all acks ({n} relays)"))
        for col in heads:
            table.add_column(col, no_wrap=True, min_width=7, justify="right")
        for a in t.attacks.values():
            verdict = "locked" if a.hit else ("pending" if live and a.lock is None else "MISSED")
            style = "green" if a.hit else ("" if verdict == "pending" else "red")
            all_acks = (_secs(a.to_last_ack()) if len(a.acks) >= n
                        else f"{len(a.acks)}/{n} acked")
            detector = [] if self.live_mode else [a.lock.detector if a.lock else "-"]
            table.add_row(a.story, a.user, Text(verdict, style=style), *detector,
                          _secs(a.to_lock()), _secs(a.to_first_ack()), all_acks)
        return table

    def summary(self, normal_users: tuple[str, ...]) -> None:
        self.console.print(self.attack_table())
        for user in normal_users:
            wrong = user in self.tracker.locked
            mark = click.style("LOCKED", fg="red") if wrong else click.style("left alone",
                                                                              fg="green")
            click.echo(f"  {mark}  {user:20} normal traffic")
