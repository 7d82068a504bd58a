"""The one `relayguard` command. Each group lives in its own module; this file only mounts them."""

from __future__ import annotations

import logging
import sys
from typing import Any

import click

from relayguard.foundation.cli_errors import friendly_errors
from relayguard.foundation.errors import RelayguardError
from relayguard.roof.kind_errors import explain_one_line, one_line

SETTINGS_HELP = """
Configuration comes from RELAYGUARD_* environment variables and an optional TOML file named by
RELAYGUARD_CONFIG_FILE. The main ones: RELAYGUARD_BOOTSTRAP_SERVERS (default 127.0.0.1:9092),
RELAYGUARD_TOPICS__PREFIX (default "relayguard."), RELAYGUARD_PARTITIONS (default 4),
RELAYGUARD_GEOIP_CITY_DB (MaxMind/DB-IP City .mmdb), RELAYGUARD_DATA_DIR (default
/var/lib/relayguard for services and root, else $XDG_STATE_HOME/relayguard).
"""


QUIET_COMMANDS = {"lock", "unlock", "locks", "relays", "audit", "replay"}


class KindGroup(click.Group):
    """Every failure ends with ONE line on stderr and a non-zero exit code, never a traceback:
    usage errors (exit 2), our errors (exit 2: whose fault, what to do), Kafka client errors
    and anything unexpected (exit 1; `relayguard -v ...` shows the traceback)."""

    def main(self, args: Any = None, prog_name: str | None = None,
             complete_var: str | None = None, standalone_mode: bool = True,
             **extra: Any) -> Any:
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode, **extra)
        argv = list(sys.argv[1:] if args is None else args)
        try:
            return super().main(argv, prog_name, complete_var, False, **extra)
        except click.exceptions.Exit as exc:
            sys.exit(exc.exit_code)
        except click.exceptions.NoArgsIsHelpError as exc:  # `relayguard`, `relayguard keys`
            click.echo(exc.ctx.get_help() if exc.ctx else exc.format_message())
            sys.exit(exc.exit_code)
        except click.UsageError as exc:
            where = exc.ctx.command_path if exc.ctx else "relayguard"
            click.echo(one_line(f"error: {exc.format_message()} (see '{where} --help')"),
                       err=True)
            sys.exit(exc.exit_code)
        except click.ClickException as exc:
            click.echo(one_line(f"error: {exc.format_message()}"), err=True)
            sys.exit(exc.exit_code)
        except click.Abort:
            click.echo("aborted", err=True)
            sys.exit(1)
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            sys.exit(130)
        except RelayguardError as exc:
            click.echo(explain_one_line(exc), err=True)
            sys.exit(2)
        except Exception as exc:
            if "-v" in argv or "--verbose" in argv:
                raise
            click.echo(one_line(f"unexpected error: {type(exc).__name__}: {exc} (run "
                                "'relayguard -v ...' for the traceback)")[:1000], err=True)
            sys.exit(1)


@click.group(cls=KindGroup,
             help="relayguard: real-time abuse monitor for fleets of SMTP relays.\n"
             + SETTINGS_HELP)
@click.option("-v", "--verbose", is_flag=True, help="debug logging")
@click.pass_context
def main(ctx: click.Context, verbose: bool) -> None:
    # Operator commands print results, not logs: their stderr is for the one error line.
    quiet = ctx.invoked_subcommand in QUIET_COMMANDS
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.WARNING if quiet else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # aiokafka logs each failed connect at ERROR; the operator gets our one line instead.
    logging.getLogger("aiokafka").setLevel(
        logging.DEBUG if verbose else logging.CRITICAL if quiet else logging.WARNING)


@main.command(help="Run the detection worker (Faust) against the configured Kafka.\n"
              + SETTINGS_HELP)
@click.option("--loglevel", default="info", show_default=True)
@friendly_errors
def worker(loglevel: str) -> None:
    from relayguard.agents.worker_main import run_worker
    from relayguard.foundation.settings import load_settings

    run_worker(load_settings(), loglevel)


def _mount() -> None:
    from relayguard.relay.hook_cli import hook
    from relayguard.roof.broker.cli import broker
    from relayguard.roof.demo import demo
    from relayguard.roof.keys_cli import keys
    from relayguard.roof.operator_cli import audit_cmd, lock, locks, relays, unlock
    from relayguard.roof.replay import replay
    from relayguard.roof.simulate.cli import simulate
    from relayguard.roof.status_cli import status

    for command in (broker, demo, hook, keys, lock, unlock, locks, relays, audit_cmd, replay,
                    simulate, status):
        main.add_command(command)


_mount()
