"""The scripted relay traffic the demo plays: normal users, and three attacks.

Addresses are documentation ranges located by `demo_geodb.DEMO_PLACES`.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from relayguard.stream.records import Event, LoginEvent, SendEvent

RELAYS = ("relay-fra-1", "relay-ams-2", "relay-lon-3")


@dataclass(frozen=True)
class Expectation:
    user: str
    detector: str
    story: str


EXPECTED_LOCKS = (
    Expectation("eve@example.com", "auth_failures", "password guessing from Singapore"),
    Expectation("carol@example.com", "impossible_travel", "Berlin, then Sydney 12 minutes later"),
    Expectation("frank@example.com", "volume", "spam burst: 40 messages to 800 recipients"),
)
NORMAL_USERS = ("ana@example.com", "ben@example.com", "dana@example.com")


def _id() -> str:
    return str(uuid.uuid4())


def login(t: float, user: str, ip: str, ok: bool = True, relay: str = RELAYS[0],
          tls: str | None = "TLSv1.3") -> LoginEvent:
    return LoginEvent(
        event_id=_id(), event_time=t, relay_id=relay, user=user, client_ip=ip, success=ok,
        tls_protocol=tls, sasl_mechanism="PLAIN",
        failure_reason=None if ok else "bad_credentials", source="demo",
    )


def send(t: float, user: str, ip: str, rcpts: int, relay: str = RELAYS[0]) -> SendEvent:
    return SendEvent(
        event_id=_id(), event_time=t, relay_id=relay, user=user, client_ip=ip,
        sender=user, recipient_count=rcpts, size=4000 + 300 * rcpts, tls_protocol="TLSv1.3",
        source="demo",
    )


def scenario(t0: float) -> list[tuple[str, Event]]:
    """(phase label, event) in the order relays would publish them; times around t0."""
    out: list[tuple[str, Event]] = []
    # Normal traffic: logins with TLS from home, a handful of messages.
    for i, (user, ip, relay) in enumerate(zip(
            NORMAL_USERS, ("192.0.2.10", "192.0.2.130", "192.0.2.70"), RELAYS, strict=True)):
        out.append(("normal", login(t0 - 900 + i, user, ip, relay=relay)))
        out.extend(("normal", send(t0 - 890 + i * 30 + k, user, ip, 1 + k % 3, relay))
                   for k in range(4))
    # Carol: a normal login in Berlin, then the stolen password used from Sydney.
    out.append(("travel", login(t0 - 720, "carol@example.com", "192.0.2.20", relay=RELAYS[0])))
    out.append(("travel", send(t0 - 700, "carol@example.com", "192.0.2.20", 2, RELAYS[0])))
    out.append(("travel", login(t0, "carol@example.com", "198.51.100.7", relay=RELAYS[1])))
    # Eve: someone in Singapore guessing her password.
    out.extend(("brute force", login(t0 + 2 * k, "eve@example.com", "203.0.113.200", ok=False,
                                     relay=RELAYS[k % 3])) for k in range(8))
    # Frank: a compromised account blasting spam through one relay.
    out.append(("spam", login(t0 + 20, "frank@example.com", "203.0.113.9", relay=RELAYS[1])))
    out.extend(("spam", send(t0 + 21 + k, "frank@example.com", "203.0.113.9", 20, RELAYS[1]))
               for k in range(40))
    return out
