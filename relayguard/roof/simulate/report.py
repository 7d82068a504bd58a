"""The scorer's figures as the table `relayguard simulate --score` prints."""

from __future__ import annotations

from typing import Any, TextIO

import click

from relayguard.stream.timefmt import to_rfc3339


def _pct(x: float | None, digits: int = 1) -> str:
    return "n/a" if x is None else f"{100 * x:.{digits}f}%"


def print_report(r: dict[str, Any], out: TextIO, top: int = 25) -> None:
    def echo(line: str = "") -> None:
        click.echo(line, file=out)

    rate = f"{r['events_per_s']:,} events/s" if r["events_per_s"] else "n/a"
    cpu = r.get("events_per_cpu_s")
    echo(f"replayed {r['events']:,} events in {r['seconds']:.1f} s ({rate}"
         + (f"; {cpu:,} per CPU second" if cpu else "") + f"); bad lines {r['bad_lines']}")
    echo(f"scored {r['scored_days']:g} days, {r['benign_users']} benign users, "
         f"{r['attacks']} attacks")
    echo()
    echo(f"{'kind':<20} {'attacks':>7} {'caught':>7} {'<=60s':>7} {'alerted':>7} "
         f"{'median delay':>13}")
    for kind, k in sorted(r["by_kind"].items()):
        med = "-" if k["median_delay_s"] is None else f"{k['median_delay_s']:.0f} s"
        echo(f"{kind:<20} {k['attacks']:>7} {k['caught']:>7} {k['within_60s']:>7} "
             f"{k['alerted']:>7} {med:>13}")
    echo(f"{'all':<20} {r['attacks']:>7} {r['caught']:>7} {r['within_60s']:>7} "
         f"{r['alerted']:>7}")
    echo()
    echo(f"recall {_pct(r['recall'])}")
    echo(f"recall within 60 s {_pct(r['recall_60s'])}")
    echo(f"false locks per benign user per day {_pct(r['false_lock_rate'], 3)} "
         f"({r['false_lock_user_days']} user-days; "
         f"user locks {_pct(r['false_user_lock_rate'], 3)}, "
         f"IP blocks refusing authenticated users {_pct(r['false_ip_block_rate'], 3)})")
    echo(f"false alerts per benign user per day {_pct(r['false_alert_rate'], 3)} "
         f"({r['false_alert_user_days']} user-days)")
    missed = [a for a in r["attack_results"] if not a["within_60s"]]
    if missed:
        echo()
        echo("attacks not locked within 60 s:")
        for a in missed:
            how = (f"locked after {a['delay_s']:.0f} s by {a['locked_by']}" if a["caught"]
                   else "never locked")
            seen = f", first signal {a['first_signal']}" if a["first_signal"] else ""
            echo(f"  {a['id']} {a['kind']:<18} {','.join(a['victims']) or '-'}: {how}{seen}")
    echo()
    acted = r["benign_acted_on"]
    users = len({e["user"] for e in acted})
    echo(f"benign users acted on: {users} ({len(acted)} user/action/detector rows"
         + (f", first {top} shown)" if len(acted) > top else ")"))
    for e in acted[:top]:
        echo(f"  {to_rfc3339(e['first_at'])} {e['action']:<8} {e['detector']:<20} "
             f"{e['user']} [{', '.join(e['tags']) or 'no special habit'}] x{e['days']}d")
    if r["causes"]:
        echo()
        echo("top causes (remedy, detector, honest habit: user-days):")
        for c in r["causes"][:10]:
            echo(f"  {c['remedy']:<6} {c['detector']:<20} {c['tag']:<18} {c['user_days']}")
