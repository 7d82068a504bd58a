"""Event records as the relays would publish them (schemas/login-event, schemas/send-event,
schemas/delivery-event).

Each source of events (one user, one attack) has its own `Emitter`, so ids are unique and do not
depend on the order in which sources are generated: that is what keeps a seed's output identical.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from relayguard.stream.timefmt import to_rfc3339

RELAYS = ("relay-fra-1", "relay-fra-2", "relay-ams-1", "relay-lon-1")
# (time, event id, wire dict): the heap merge orders by the first two.
Timed = tuple[float, str, dict[str, Any]]


def password_hash(secret: str) -> str:
    """What a relay's keyed hash of an attempted password looks like (never a real password)."""
    return "hmac-sha256:" + hashlib.blake2b(secret.encode(), digest_size=8).hexdigest()


@dataclass
class Emitter:
    prefix: str  # "u00012" or "a07": the event-id namespace of this source
    hashes: bool = False  # include password_hash on logins
    n: int = 0

    def _id(self) -> str:
        self.n += 1
        return f"sim:{self.prefix}:{self.n:07d}"

    def login(self, t: float, relay: str, user: str, ip: str, ok: bool = True,
              tls: bool = True, mechanism: str = "PLAIN", reason: str | None = None,
              secret: str | None = None) -> Timed:
        t = round(t, 3)
        eid = self._id()
        d: dict[str, Any] = {
            "type": "login", "event_id": eid, "event_time": to_rfc3339(t), "relay_id": relay,
            "user": user, "client_ip": ip, "success": ok,
            "tls_protocol": "TLSv1.3" if tls else None, "sasl_mechanism": mechanism,
            "failure_reason": None if ok else (reason or "bad_credentials"),
            "source": "postfix-policy",
        }
        if self.hashes and not ok and secret is not None:
            d["password_hash"] = password_hash(secret)
        return t, eid, d

    def send(self, t: float, relay: str, user: str, ip: str, recipients: int, size: int,
             sender: str | None = None, tls: bool = True,
             extra: dict[str, Any] | None = None) -> Timed:
        """A send event; `extra` adds optional fields (the RCPT summary)."""
        t = round(t, 3)
        eid = self._id()
        d = {
            "type": "send", "event_id": eid, "event_time": to_rfc3339(t), "relay_id": relay,
            "user": user, "client_ip": ip, "sender": user if sender is None else sender,
            "recipient_count": recipients, "size": size,
            "tls_protocol": "TLSv1.3" if tls else None,
            "queue_id": f"{self.prefix.upper()}Q{self.n:07X}", "source": "postfix-policy",
        }
        if extra:
            d.update(extra)
        return t, eid, d

    def delivery(self, t: float, relay: str, user: str, queue_id: str, status: str,
                 dsn: str | None, domain: str | None) -> Timed:
        """A delivery outcome the log follower attributes to `user` through the queue id."""
        t = round(t, 3)
        eid = self._id()
        d: dict[str, Any] = {
            "type": "delivery", "event_id": eid, "event_time": to_rfc3339(t),
            "relay_id": relay, "user": user, "queue_id": queue_id, "status": status,
            "source": "postfix-log",
        }
        if domain is not None:
            d["recipient_domain"] = domain
        if dsn is not None:
            d["dsn"] = dsn
        return t, eid, d
