"""Post alerts to Slack: a bot token (chat.postMessage; one message per incident, follow-ups in
its thread, the message updated by chat.update when the lock is lifted, expires or changes) or
an incoming webhook (one fixed channel; no threads, no updates).

Alert storms become one digest message (agents/slack_digest.py). Async clients with the async
rate-limit retry handler (the sync one sleeps and blocks the loop); Slack allows about one
message per second per channel. Slack trouble is logged and never stops the worker: every alert
stays in the alerts topic. Log lines never carry the token or the webhook URL: only Slack's
error code or the exception's type.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any, Literal

import aiohttp
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_async_handlers import (
    AsyncConnectionErrorRetryHandler,
    AsyncRateLimitErrorRetryHandler,
)
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.webhook.async_client import AsyncWebhookClient

from relayguard.agents.slack_digest import Digest, StormGate, digest_blocks, digest_text
from relayguard.agents.slack_format import blocks, fallback_text, status_text
from relayguard.agents.slack_incidents import (
    Incident,
    IncidentStore,
    after_command,
    after_follow_up,
    incident_key,
    lifts,
    new_incident,
)
from relayguard.foundation.errors import ConfigError
from relayguard.foundation.settings import Settings
from relayguard.stream.records import Alert, LockCommand

log = logging.getLogger("relayguard.slack")
# slack-sdk logs request URLs (a webhook URL is a secret) and headers at INFO/DEBUG: its clients
# get this logger, which passes warnings and errors only, whatever the worker's log level.
SDK_LOG = logging.getLogger("relayguard.slack.sdk")
SDK_LOG.setLevel(logging.WARNING)
SEVERITY_ORDER = ("info", "low", "medium", "high", "critical")
Outcome = Literal["posted", "digested", "failed", "skipped"]
EARLY_UNLOCKS_KEPT = 1000
SLACK_TROUBLE = (SlackApiError, aiohttp.ClientError, RuntimeError, OSError, TimeoutError)


def retry_handlers() -> list[Any]:
    return [AsyncRateLimitErrorRetryHandler(max_retry_count=3),
            AsyncConnectionErrorRetryHandler(max_retry_count=2)]


def web_client(settings: Settings) -> AsyncWebClient:
    assert settings.slack_bot_token is not None
    extra: dict[str, Any] = {"base_url": settings.slack_base_url} \
        if settings.slack_base_url else {}
    return AsyncWebClient(token=settings.slack_bot_token.get_secret_value(),
                          retry_handlers=retry_handlers(), logger=SDK_LOG, **extra)


def trouble(exc: BaseException) -> str:
    """What went wrong, without URLs or tokens (aiohttp errors name the host and path)."""
    if isinstance(exc, SlackApiError):
        return f"Slack said {exc.response.get('error', 'unknown_error')!s:.80}"
    if isinstance(exc, RuntimeError):
        return str(exc)[:200]  # our own messages, see _send_webhook
    return type(exc).__name__


class SlackNotifier:
    def __init__(self, settings: Settings, table: MutableMapping[str, bytes] | None = None,
                 clock: Callable[[], float] = time.monotonic,
                 wall: Callable[[], float] = time.time) -> None:
        self.min_severity = SEVERITY_ORDER.index(settings.slack_min_severity)
        self.channel = settings.slack_channel
        self.alerts_topic = settings.topics.alerts
        self.web: AsyncWebClient | None = None
        self.webhook: AsyncWebhookClient | None = None
        self.incidents = IncidentStore(table if table is not None else {},
                                       settings.slack_incidents_kept)
        self.gate = StormGate(settings.slack_storm_threshold, settings.slack_storm_window_seconds)
        self.digest_every = settings.slack_digest_update_seconds
        self.clock, self.wall = clock, wall
        self.posted = self.failed = self.updated = self.digested = 0
        self._lock = asyncio.Lock()  # one Slack conversation at a time: agents and the timer
        # unlocks for subjects with no message yet: the alert may still be on its way
        self.early_unlocks: OrderedDict[str, LockCommand] = OrderedDict()
        if settings.slack_bot_token is not None:
            if not self.channel:
                raise ConfigError("RELAYGUARD_SLACK_BOT_TOKEN is set but RELAYGUARD_SLACK_CHANNEL "
                                  "is not", "name the channel (e.g. #mail-abuse) the bot posts to")
            self.web = web_client(settings)
        elif settings.slack_webhook_url is not None:
            self.webhook = AsyncWebhookClient(url=settings.slack_webhook_url.get_secret_value(),
                                              retry_handlers=retry_handlers(), logger=SDK_LOG)
        elif settings.slack_app_token is not None:
            raise ConfigError("RELAYGUARD_SLACK_APP_TOKEN is set without "
                              "RELAYGUARD_SLACK_BOT_TOKEN",
                              "the Unlock button needs bot-token mode: set the bot token and "
                              "channel too, or unset the app token")
        self.buttons = self.web is not None and settings.slack_app_token is not None

    @property
    def enabled(self) -> bool:
        return self.web is not None or self.webhook is not None

    def wants(self, alert: Alert) -> bool:
        return self.enabled and SEVERITY_ORDER.index(alert.severity) >= self.min_severity

    async def _guard(self, what: str, call: Callable[[], Awaitable[Any]]) -> Any:
        """Run one Slack call; None (logged, counted) when Slack or the network failed."""
        try:
            return await call()
        except SLACK_TROUBLE as exc:
            self.failed += 1
            log.error("Slack: could not %s (%s); the alert stays in the alerts topic. Check "
                      "the token/webhook, the bot's scopes and its channel membership.",
                      what, trouble(exc))
            return None

    # ---- alerts ------------------------------------------------------------------------------

    async def notify(self, alert: Alert) -> Outcome:
        """Post one alert, or add it to the storm digest. Never raises."""
        if not self.wants(alert):
            return "skipped"
        async with self._lock:
            await self._end_storm_if_calm()
            if self.gate.admit(alert, self.clock(), self.wall()) == "digest":
                self.digested += 1
                digest = self.gate.digest
                if digest is not None and digest.ts is None and self.web is not None \
                        and digest.updated_at == 0.0:
                    await self._post_digest(digest)
                return "digested"
            ok = await self._guard(f"post alert {alert.alert_id}", lambda: self._post(alert))
        if ok is None:
            return "failed"
        self.posted += 1
        return "posted"

    async def _post(self, alert: Alert) -> bool:
        if self.web is None:
            await self._send_webhook(fallback_text(alert), blocks(alert))
            return True
        key = incident_key(alert.subject_kind, alert.subject)
        incident = self.incidents.get(key)
        if incident is None:
            resp = await self.web.chat_postMessage(
                channel=self.channel or "", text=fallback_text(alert),
                blocks=blocks(alert, unlock_button=self.buttons),
                metadata={"event_type": "relayguard_incident", "event_payload": {
                    "subject_kind": alert.subject_kind, "subject": alert.subject,
                    "alert_id": alert.alert_id, "command_id": alert.command_id or ""}})
            if resp.get("ts") and resp.get("channel"):
                opened = new_incident(alert, str(resp["channel"]), str(resp["ts"]))
                self.incidents.put(opened)
                early = self.early_unlocks.pop(key, None)
                if early is not None and lifts(early, alert):
                    await self._apply(opened, early)
            return True
        await self.web.chat_postMessage(
            channel=incident.channel, text=fallback_text(alert), blocks=blocks(alert),
            thread_ts=incident.ts, reply_broadcast=alert.remedy != "alert")
        changed = after_follow_up(incident, alert)
        if changed is not None:
            self.incidents.put(changed)
            await self._update(changed)
        return True

    async def _send_webhook(self, text: str, body: list[dict[str, Any]]) -> None:
        assert self.webhook is not None
        resp = await self.webhook.send(text=text, blocks=body)
        if resp.status_code != 200:
            raise RuntimeError(f"webhook answered HTTP {resp.status_code}: {str(resp.body)[:80]}")

    # ---- lock commands -----------------------------------------------------------------------

    async def on_command(self, command: LockCommand) -> bool:
        """Bring the subject's incident message up to date with a verified lock command;
        True when the message was updated. Never raises."""
        if self.web is None:
            return False
        async with self._lock:
            key = incident_key(command.subject_kind, command.subject)
            incident = self.incidents.get(key)
            if incident is None:
                if command.action == "unlock":
                    self.early_unlocks[key] = command
                    self.early_unlocks.move_to_end(key)
                    if len(self.early_unlocks) > EARLY_UNLOCKS_KEPT:
                        self.early_unlocks.popitem(last=False)
                return False
            self.early_unlocks.pop(key, None)
            ok = await self._guard(f"update the incident message of {key[:80]}",
                                   lambda: self._apply(incident, command))
            return bool(ok)

    async def _apply(self, incident: Incident, command: LockCommand) -> bool:
        after = after_command(incident, command)
        if after is None:
            return False
        if after.status.closed:
            self.incidents.remove(incident.key)  # the next alert is a new incident
        else:
            self.incidents.put(after)
        if after.status == incident.status:
            return False  # only the version moved on
        return await self._update(after)

    async def _update(self, incident: Incident) -> bool:
        assert self.web is not None
        alert = incident.first_alert()
        await self.web.chat_update(channel=incident.channel, ts=incident.ts,
                                   text=status_text(alert, incident.status),
                                   blocks=blocks(alert, incident.status, self.buttons))
        self.updated += 1
        log.info("Slack: incident message of %s %s updated: %s", alert.subject_kind,
                 alert.subject, incident.status.kind)
        return True

    # ---- storms ------------------------------------------------------------------------------

    async def flush(self) -> None:
        """Called by a timer: keep the digest current, and close it when the storm is over."""
        async with self._lock:
            if await self._end_storm_if_calm():
                return
            d = self.gate.digest
            if d is not None and d.dirty and self.web is not None \
                    and self.clock() - d.updated_at >= self.digest_every:
                await self._post_digest(d)

    async def _end_storm_if_calm(self) -> bool:
        done = self.gate.end_if_calm(self.clock(), self.wall())
        if done is None:
            return False
        log.warning("Slack: alert storm over: %d alerts on %d subjects went into one digest",
                    done.alerts, done.distinct)
        await self._post_digest(done)
        return True

    async def _post_digest(self, d: Digest) -> None:
        d.dirty, d.updated_at = False, self.clock()
        text, body = digest_text(d), digest_blocks(d, self.alerts_topic)
        if self.web is None:  # a webhook cannot update: one message when the storm is over
            if d.ended is not None:
                await self._guard("post the storm digest", lambda: self._send_webhook(text, body))
            return
        web = self.web
        if d.ts is None:
            log.warning("Slack: alert storm (more than %d subjects within %.0fs): posting one "
                        "digest instead of one message each", self.gate.threshold,
                        self.gate.window)
            resp = await self._guard("post the storm digest", lambda: web.chat_postMessage(
                channel=self.channel or "", text=text, blocks=body))
            if resp is not None:
                d.ts, d.channel = str(resp.get("ts")), str(resp.get("channel"))
        else:
            ts, channel = d.ts, d.channel or ""
            await self._guard("update the storm digest", lambda: web.chat_update(
                channel=channel, ts=ts, text=text, blocks=body))

    async def close(self) -> None:
        if self.web is not None and self.web.session is not None:
            await self.web.session.close()
