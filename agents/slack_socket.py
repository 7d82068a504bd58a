"""The Unlock button, through Slack's Socket Mode (slack-sdk's aiohttp SocketModeClient with an
app-level token): no public HTTP endpoint needed, the worker dials out to Slack.

A click (an `interactive` envelope whose payload is `block_actions`) is acknowledged by its
envelope_id at once, then: from a Slack user id listed in RELAYGUARD_SLACK_UNLOCK_USER_IDS it
issues a signed unlock through `lock_admin.issue` with issuer "slack:<user id>" (the incident
message is then updated by the worker that follows the lock topic, like for any unlock); from
anyone else it is refused with an ephemeral message only the clicker sees, and logged.

Everything in the payload is hostile until checked: user id and button value are validated
before anything is done with them.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable
from typing import Any

from slack_sdk.socket_mode.aiohttp import SocketModeClient
from slack_sdk.socket_mode.async_client import AsyncBaseSocketModeClient
from slack_sdk.socket_mode.request import SocketModeRequest
from slack_sdk.socket_mode.response import SocketModeResponse
from slack_sdk.web.async_client import AsyncWebClient

from relayguard.agents.slack_format import UNLOCK_ACTION
from relayguard.agents.slack_notifier import SDK_LOG, SLACK_TROUBLE, trouble, web_client
from relayguard.foundation import lock_admin
from relayguard.foundation.errors import ConfigError, RelayguardError
from relayguard.foundation.settings import Settings
from relayguard.stream.records import LockCommand, SubjectKind

log = logging.getLogger("relayguard.slack")
USER_ID = re.compile(r"^[UW][A-Z0-9]{2,20}$")
SUBJECT_MAX = 320
Unlocker = Callable[[SubjectKind, str, str], Awaitable[LockCommand]]  # kind, subject, user id


def allowed_users(settings: Settings) -> frozenset[str]:
    ids = [u.strip() for u in settings.slack_unlock_user_ids.split(",") if u.strip()]
    bad = [u for u in ids if not USER_ID.match(u)]
    if bad:
        raise ConfigError(f"RELAYGUARD_SLACK_UNLOCK_USER_IDS: {', '.join(bad)[:200]} not Slack "
                          "user ids", "list member ids like U012AB3CD (profile > ... > Copy "
                          "member ID), comma separated")
    return frozenset(ids)


def parse_value(value: Any) -> tuple[SubjectKind, str] | None:
    """'user:alice@example.com' / 'ip:192.0.2.1' as the button carries it, else None."""
    if not isinstance(value, str) or len(value) > SUBJECT_MAX + 5:
        return None
    kind, _, subject = value.partition(":")
    if kind not in ("user", "ip") or not subject or not subject.isprintable():
        return None
    return kind, subject  # type: ignore[return-value]


def lock_admin_unlocker(settings: Settings) -> Unlocker:
    async def unlock(kind: SubjectKind, subject: str, user_id: str) -> LockCommand:
        return await lock_admin.issue(settings, "unlock", subject, kind,
                                      reason=f"unlocked from Slack by {user_id}", ttl=None,
                                      issuer=f"slack:{user_id}")
    return unlock


class UnlockButton:
    def __init__(self, settings: Settings, unlocker: Unlocker | None = None) -> None:
        if settings.slack_app_token is None or settings.slack_bot_token is None:
            raise ConfigError("the Unlock button needs RELAYGUARD_SLACK_APP_TOKEN and "
                              "RELAYGUARD_SLACK_BOT_TOKEN", "set both, or neither")
        self.settings = settings
        self.allowed = allowed_users(settings)
        self.unlocker = unlocker or lock_admin_unlocker(settings)
        self.web: AsyncWebClient | None = None
        self.client: SocketModeClient | None = None
        self.unlocked = self.refused = 0
        if not self.allowed:
            log.warning("Slack Unlock button on, but RELAYGUARD_SLACK_UNLOCK_USER_IDS is empty: "
                        "every click will be refused")

    async def start(self) -> None:
        """Connect (apps.connections.open, then the WebSocket it names); the client reconnects
        by itself when Slack rotates the connection."""
        assert self.settings.slack_app_token is not None
        self.web = web_client(self.settings)
        self.client = SocketModeClient(self.settings.slack_app_token.get_secret_value(),
                                       web_client=self.web, logger=SDK_LOG)
        self.client.socket_mode_request_listeners.append(self.on_request)
        await self.client.connect()  # type: ignore[no-untyped-call]
        log.info("Slack Socket Mode connected: Unlock clicks allowed for %d user(s)",
                 len(self.allowed))

    async def close(self) -> None:
        if self.client is not None:
            await self.client.close()  # type: ignore[no-untyped-call]
        if self.web is not None and self.web.session is not None:
            await self.web.session.close()

    async def on_request(self, client: AsyncBaseSocketModeClient,
                         req: SocketModeRequest) -> None:
        # Acknowledge first: Slack retries an envelope not acked within 3 seconds.
        await client.send_socket_mode_response(SocketModeResponse(envelope_id=req.envelope_id))
        payload = req.payload if isinstance(req.payload, dict) else {}
        if req.type != "interactive" or payload.get("type") != "block_actions":
            return
        actions = payload.get("actions")
        for action in actions[:5] if isinstance(actions, list) else []:
            if isinstance(action, dict) and action.get("action_id") == UNLOCK_ACTION:
                await self.click(payload, action)

    async def click(self, payload: dict[str, Any], action: dict[str, Any]) -> None:
        user = payload.get("user")
        user_id = user.get("id") if isinstance(user, dict) else None
        channel = payload.get("channel")
        channel_id = channel.get("id") if isinstance(channel, dict) else None
        target = parse_value(action.get("value"))
        if not isinstance(user_id, str) or not USER_ID.match(user_id) or target is None:
            self.refused += 1
            log.warning("Slack: malformed Unlock click ignored (user %r, value %r)",
                        str(user_id)[:40], str(action.get("value"))[:80])
            return
        kind, subject = target
        if user_id not in self.allowed:
            self.refused += 1
            log.warning("Slack: Unlock of %s %s REFUSED for %s: not in "
                        "RELAYGUARD_SLACK_UNLOCK_USER_IDS", kind, subject, user_id)
            await self._tell(channel_id, user_id, f"You are not allowed to unlock {subject} "
                             "from Slack; ask an on-call operator (relayguard unlock).")
            return
        try:
            command = await self.unlocker(kind, subject, user_id)
        except RelayguardError as exc:
            log.error("Slack: Unlock of %s %s by %s failed: %s", kind, subject, user_id,
                      exc.explain())
            await self._tell(channel_id, user_id, f"Could not unlock {subject}: {exc}"[:300])
            return
        self.unlocked += 1
        log.warning("Slack: %s unlocked %s %s (command %s)", user_id, kind, subject,
                    command.command_id)
        await self._tell(channel_id, user_id, f"Unlock of {subject} sent (command "
                         f"{command.command_id}); the message updates once the worker has it.")

    async def _tell(self, channel_id: Any, user_id: str, text: str) -> None:
        if self.web is None or not isinstance(channel_id, str) or not channel_id[:1].isalnum():
            return
        try:
            await self.web.chat_postEphemeral(channel=channel_id[:40], user=user_id, text=text)
        except SLACK_TROUBLE as exc:
            log.error("Slack: could not answer %s (%s)", user_id, trouble(exc))
