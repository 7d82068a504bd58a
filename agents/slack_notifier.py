"""Post alerts to Slack: a bot token (chat.postMessage, one thread per subject so an incident's
follow-ups stay together) or an incoming webhook (one fixed channel, no threads).

Async clients with the async rate-limit retry handler (the sync one sleeps and blocks the loop);
Slack allows about one message per second per channel. Slack trouble is logged and never stops
the worker: the alert stays in the alerts topic for SIEMs and for a later look.

The webhook URL and the bot token are secrets (whoever has the URL can post to the channel).
slack-sdk logs the URL at INFO on every retry and the token's header at DEBUG whenever its
logger has no level of its own, so its clients get a logger of ours: WARNING, which turns
those lines off, and a filter that blanks the secrets out of whatever it still logs.
"""

from __future__ import annotations

import logging
from typing import Any

from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_async_handlers import (
    AsyncConnectionErrorRetryHandler,
    AsyncRateLimitErrorRetryHandler,
)
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.webhook.async_client import AsyncWebhookClient

from relayguard.agents.slack_format import blocks, fallback_text
from relayguard.foundation.errors import ConfigError
from relayguard.foundation.settings import Settings
from relayguard.stream.records import Alert

log = logging.getLogger("relayguard.slack")
SDK_LOGGER = "relayguard.slack.sdk"
REDACTED = "<redacted>"
SEVERITY_ORDER = ("info", "low", "medium", "high", "critical")
THREADS_KEPT = 10_000


class _Redact(logging.Filter):
    def __init__(self, secrets: list[str]) -> None:
        super().__init__()
        self.secrets = secrets

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        clean = redact(text, self.secrets)
        if clean != text:
            record.msg, record.args = clean, None
        return True


def redact(text: str, secrets: list[str]) -> str:
    for secret in secrets:
        text = text.replace(secret, REDACTED)
    return text


def _sdk_logger(secrets: list[str]) -> logging.Logger:
    sdk = logging.getLogger(SDK_LOGGER)
    sdk.setLevel(logging.WARNING)  # slack-sdk logs URLs and headers when level <= DEBUG
    for old in [f for f in sdk.filters if isinstance(f, _Redact)]:
        sdk.removeFilter(old)
    sdk.addFilter(_Redact(secrets))
    return sdk


class SlackNotifier:
    def __init__(self, settings: Settings) -> None:
        self.min_severity = SEVERITY_ORDER.index(settings.slack_min_severity)
        self.channel = settings.slack_channel
        self.web: AsyncWebClient | None = None
        self.webhook: AsyncWebhookClient | None = None
        self.threads: dict[str, str] = {}  # "kind:subject" -> ts of the incident's first message
        self.posted = 0
        self.failed = 0
        handlers = [AsyncRateLimitErrorRetryHandler(max_retry_count=3),
                    AsyncConnectionErrorRetryHandler(max_retry_count=2)]
        self.secrets = [s.get_secret_value() for s in (settings.slack_bot_token,
                                                         settings.slack_webhook_url) if s]
        sdk_log = _sdk_logger(self.secrets)
        if settings.slack_bot_token is not None:
            if not self.channel:
                raise ConfigError("RELAYGUARD_SLACK_BOT_TOKEN is set but RELAYGUARD_SLACK_CHANNEL "
                                  "is not", "name the channel (e.g. #mail-abuse) the bot posts to")
            extra: dict[str, Any] = {"base_url": settings.slack_base_url} \
                if settings.slack_base_url else {}
            self.web = AsyncWebClient(token=settings.slack_bot_token.get_secret_value(),
                                      retry_handlers=handlers, logger=sdk_log, **extra)
        elif settings.slack_webhook_url is not None:
            self.webhook = AsyncWebhookClient(url=settings.slack_webhook_url.get_secret_value(),
                                              retry_handlers=handlers, logger=sdk_log)

    @property
    def enabled(self) -> bool:
        return self.web is not None or self.webhook is not None

    def wants(self, alert: Alert) -> bool:
        return self.enabled and SEVERITY_ORDER.index(alert.severity) >= self.min_severity

    async def notify(self, alert: Alert) -> bool:
        """Post one alert; True when Slack took it. Never raises."""
        if not self.wants(alert):
            return False
        try:
            if self.web is not None:
                await self._post_threaded(alert)
            elif self.webhook is not None:
                resp = await self.webhook.send(text=fallback_text(alert), blocks=blocks(alert))
                if resp.status_code != 200:
                    raise RuntimeError(f"webhook answered {resp.status_code}: {resp.body}")
        except (SlackApiError, RuntimeError, OSError, TimeoutError) as exc:
            self.failed += 1
            log.error("could not post alert %s to Slack (%s); it stays in the alerts topic. "
                      "Check the token/webhook and the bot's channel membership.",
                      alert.alert_id, redact(str(exc), self.secrets))
            return False
        self.posted += 1
        return True

    async def _post_threaded(self, alert: Alert) -> None:
        assert self.web is not None
        key = f"{alert.subject_kind}:{alert.subject}"
        thread = self.threads.get(key)
        resp = await self.web.chat_postMessage(
            channel=self.channel or "", text=fallback_text(alert), blocks=blocks(alert),
            thread_ts=thread, reply_broadcast=thread is not None and alert.remedy != "alert",
        )
        if thread is None and resp.get("ts"):
            if len(self.threads) >= THREADS_KEPT:
                del self.threads[next(iter(self.threads))]
            self.threads[key] = str(resp["ts"])

    async def close(self) -> None:
        if self.web is not None and self.web.session is not None:
            await self.web.session.close()
