"""The worker's small HTTP API for operators, next to /metrics:

    GET  /api/locks                      what is locked now (from the compacted lock topic)
    GET  /api/locks/{kind}/{subject}     the latest command for one user or IP
    POST /api/locks                      {"subject", "kind", "action", "reason", "ttl_seconds"}

Reads are open (bind the worker to loopback or a management network); POST needs
`Authorization: Bearer <RELAYGUARD_API_TOKEN>` and is refused while no token is configured.
Reads show only records signed by a known key and in range; the others are counted in
`refused` by reason and never shown as locks. POSTed commands are signed with the worker's key.
Concurrent reads share one read of the lock topic, reused for a second (agents/shared_read.py).
"""

from __future__ import annotations

import hmac
import time
from typing import Any

import faust
from faust.web import Request, Response, View

from relayguard.agents.shared_read import SharedRead
from relayguard.foundation import lock_admin
from relayguard.foundation.errors import RelayguardError
from relayguard.foundation.settings import Settings
from relayguard.foundation.signing import Keyring, Signer
from relayguard.stream import codec
from relayguard.stream.signed import MAX_TTL_SECONDS
from relayguard.stream.user_names import canonical_subject

KINDS = ("user", "ip")
ACTIONS = ("lock", "unlock")


def register(app: faust.App, settings: Settings, signer: Signer, keyring: Keyring) -> None:
    token = settings.api_token.get_secret_value() if settings.api_token else None
    listings = SharedRead(lambda: lock_admin.read_commands(settings, keyring))

    @app.page("/api/locks")
    class Locks(View):
        async def get(self, request: Request) -> Response:
            now = time.time()
            try:
                listing = await listings.get()
            except RelayguardError as exc:
                return self.json({"error": str(exc)}, status=503)
            active = [codec.lock_command_to_dict(c) for c in listing.commands.values()
                      if lock_admin.is_active(c, now)]
            return self.json({"count": len(active), "locks": active,
                              "refused": dict(listing.refused)})

        async def post(self, request: Request) -> Response:
            if token is None:
                return self.json({"error": "set RELAYGUARD_API_TOKEN to allow changes over HTTP"},
                                 status=403)
            given = request.headers.get("Authorization", "")
            if not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
                return self.json({"error": "missing or wrong bearer token"}, status=401)
            try:
                body = await request.json()
                order = _order(body)
            except (ValueError, TypeError) as exc:
                return self.json({"error": f"bad request: {exc}"}, status=400)
            command = await lock_admin.issue(settings, order["action"], order["subject"],
                                             order["kind"], order["reason"], order["ttl"],
                                             "api", signer, keyring)
            listings.invalidate()  # a GET after this POST shows it
            return self.json(codec.lock_command_to_dict(command), status=201)

    @app.page("/api/locks/{kind}/{subject}")
    class OneLock(View):
        async def get(self, request: Request, kind: str, subject: str) -> Response:
            if kind not in KINDS:
                return self.json({"error": f"kind must be one of {KINDS}"}, status=400)
            try:
                listing = await listings.get()
            except RelayguardError as exc:
                return self.json({"error": str(exc)}, status=503)
            command = listing.commands.get(
                (kind, canonical_subject(kind, subject, settings.user_names)))
            if command is None:
                return self.json({"error": f"no command for {kind} {subject}"}, status=404)
            return self.json({"active": lock_admin.is_active(command, time.time()),
                              "command": codec.lock_command_to_dict(command)})


def _order(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise ValueError("want a JSON object")
    subject, kind = body.get("subject"), body.get("kind", "user")
    action, reason, ttl = body.get("action"), body.get("reason"), body.get("ttl_seconds")
    if not isinstance(subject, str) or not subject or len(subject) > 320:
        raise ValueError("'subject' must be a non-empty string")
    if kind not in KINDS or action not in ACTIONS:
        raise ValueError(f"'kind' must be one of {KINDS}, 'action' one of {ACTIONS}")
    if not isinstance(reason, str) or not reason.strip():
        raise ValueError("'reason' is required (it goes into the audit trail)")
    if ttl is not None and (not isinstance(ttl, int | float) or isinstance(ttl, bool)
                            or not 0 < ttl <= MAX_TTL_SECONDS):
        raise ValueError(f"'ttl_seconds' must be a positive number up to {MAX_TTL_SECONDS:.0f}")
    return {"subject": subject, "kind": kind, "action": action, "reason": reason,
            "ttl": float(ttl) if ttl else None}
