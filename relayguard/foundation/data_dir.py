"""Where relayguard keeps its files (spools, checkpoints, journal cursor, worker tables) when
RELAYGUARD_DATA_DIR / `data_dir` does not say.

- A service: systemd's StateDirectory= sets $STATE_DIRECTORY (the units in deploy/systemd/ use
  StateDirectory=relayguard, i.e. /var/lib/relayguard); root gets /var/lib/relayguard too, as
  does a service user that may write an existing /var/lib/relayguard.
- Anyone else running a command by hand: $XDG_STATE_HOME/relayguard, else
  ~/.local/state/relayguard (the XDG base-directory default for state), never the working
  directory, so the spool and checkpoints do not depend on where a command was started.
The choice is logged once per process, so an operator can see where data goes.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path

SYSTEM_DIR = Path("/var/lib/relayguard")

log = logging.getLogger(__name__)
_logged: set[Path] = set()


def default_data_dir(euid: int | None = None, environ: Mapping[str, str] | None = None,
                     system_dir: Path = SYSTEM_DIR) -> Path:
    """The default data directory for this process (see the module text)."""
    env = os.environ if environ is None else environ
    uid = os.geteuid() if euid is None else euid
    state = env.get("STATE_DIRECTORY", "").split(":")[0]
    if state and Path(state).is_absolute():
        chosen, why = Path(state), "systemd StateDirectory"
    elif uid == 0:
        chosen, why = system_dir, "running as root"
    elif system_dir.is_dir() and os.access(system_dir, os.W_OK | os.X_OK):
        chosen, why = system_dir, "writable system directory"
    else:
        xdg = env.get("XDG_STATE_HOME", "")
        base = Path(xdg) if xdg and Path(xdg).is_absolute() else \
            Path(env.get("HOME") or Path.home()) / ".local" / "state"
        chosen, why = base / "relayguard", "not root, no writable system directory"
    if chosen not in _logged:
        _logged.add(chosen)
        log.info("data directory %s (%s; set RELAYGUARD_DATA_DIR to choose another)", chosen,
                 why)
    return chosen
