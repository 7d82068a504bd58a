"""The worker's Slack agents: post alerts, follow the lock topic to update incident messages,
keep the storm digest current, and (optionally) run the Socket Mode Unlock button.

Who posts: the alerts and locks topics and the incidents table's changelog all have ONE
partition, and Faust's assignor gives same-sized co-subscribed topics' partition 0 to the same
worker; so exactly one worker of the group posts, and it is the one that sees the lock commands
and holds the incident table. (Run every worker with the same Slack settings, or subscriptions
differ and that guarantee is gone.) The table is rebuilt from its changelog on a restart or a
rebalance, so incident messages posted before are still updated afterwards.

The Unlock button runs on every worker with an app token: Slack hands each click to one of the
open connections; the unlock goes to the lock topic, and the posting worker updates the message.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import faust

from relayguard.agents.metrics import Metrics
from relayguard.agents.slack_notifier import SlackNotifier
from relayguard.agents.slack_socket import UnlockButton
from relayguard.foundation.settings import Settings
from relayguard.stream import codec
from relayguard.stream.signed import Verifier

log = logging.getLogger("relayguard.slack")
TABLE = "slack-incidents"


def register(app: faust.App, settings: Settings, alerts: Any, locks: Any, keyring: Verifier,
             metrics: Metrics) -> SlackNotifier | None:
    """Add the Slack agents to `app` when Slack is configured (the notifier, else None)."""
    probe = SlackNotifier(settings)
    if not probe.enabled:
        return None
    table = app.Table(TABLE, default=None, partitions=1, key_type=str, value_type=bytes)
    notifier = SlackNotifier(settings, table=table)
    skew = settings.signing_max_skew_seconds

    @app.agent(alerts, concurrency=1)
    async def notify_slack(stream: Any) -> None:
        """One poster for the fleet: the alerts topic has a single partition."""
        async for ev in stream.events():
            try:
                alert = codec.alert_from_dict(codec.parse_record(ev.value, ("alert",)))
            except (codec.Rejected, KeyError, TypeError, ValueError) as exc:
                log.error("unreadable alert skipped: %s", exc)
                continue
            try:
                outcome = await notifier.notify(alert)
            except Exception:  # never let one record stop the agent
                log.exception("unexpected error posting alert %s; skipped", alert.alert_id)
                continue
            if outcome != "skipped":
                metrics.inc("slack_messages_total", outcome=outcome)

    @app.agent(locks, concurrency=1)
    async def slack_follow_locks(stream: Any) -> None:
        """Lock commands (operators, expiry, escalation) update the incident's message.
        Verified like follow_locks does: a forged unlock must not paint a lock as lifted."""
        async for ev in stream.events():
            if ev.value is None:
                continue
            try:
                command = codec.decode_signed_lock_command(ev.value, keyring, time.time(), skew)
            except codec.Rejected:
                continue  # follow_locks counts and logs the refusal
            try:
                if await notifier.on_command(command):
                    metrics.inc("slack_messages_total", outcome="updated")
            except Exception:
                log.exception("unexpected error updating Slack for command %s; skipped",
                              command.command_id)

    @app.timer(interval=min(1.0, settings.slack_digest_update_seconds))  # type: ignore[untyped-decorator]
    async def slack_digest() -> None:
        await notifier.flush()

    button = UnlockButton(settings) if settings.slack_app_token is not None else None
    # (a ConfigError on bad user ids comes here, before the worker starts)
    if button is not None:

        @app.task  # type: ignore[untyped-decorator]
        async def slack_socket_mode() -> None:
            await button.start()

    @app.on_before_shutdown.connect  # type: ignore[arg-type]
    async def slack_close(app: Any, **kwargs: Any) -> None:
        if button is not None:
            await button.close()
        await notifier.close()

    return notifier
