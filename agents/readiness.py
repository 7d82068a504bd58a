"""What `/ready` answers: 200 only once this worker's group assignment is known and its tables
have been recovered from their changelogs, 503 before that and during every later rebalance.

Faust's own web server (the one serving our pages) starts before recovery, so merely
answering is no sign of readiness. Signals: `on_partitions_revoked` starts a rebalance,
`on_rebalance_complete` is sent once its table recovery is done; `tables.recovery.completed`
is set after the first recovery (and never cleared), `app.rebalancing` and
`recovery.in_recovery` cover the rest.
"""

from __future__ import annotations

from typing import Any

import faust


class Readiness:
    def __init__(self, app: faust.App) -> None:
        self.app = app
        self.settled = False  # a rebalance's recovery finished since the last revocation
        app.on_partitions_revoked.connect(self._revoked)  # type: ignore[arg-type]
        app.on_rebalance_complete.connect(self._complete)  # type: ignore[arg-type]

    def _revoked(self, sender: Any, *args: Any, signal: Any = None, **kwargs: Any) -> None:
        self.settled = False

    def _complete(self, sender: Any, *args: Any, signal: Any = None, **kwargs: Any) -> None:
        self.settled = True

    def status(self) -> tuple[bool, str]:
        app = self.app
        recovery: Any = app.tables.recovery  # type: ignore[attr-defined]
        if not recovery.completed.is_set():
            if recovery.in_recovery:
                return False, "recovering tables from their changelogs"
            return False, "waiting for the group's partition assignment"
        if app.rebalancing or recovery.in_recovery or not self.settled:
            return False, "rebalancing"
        actives = app.assignor.assigned_actives()
        return True, f"ready: {len(actives)} partitions assigned"
