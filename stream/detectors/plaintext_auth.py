"""Plaintext AUTH: a successful login whose session had no TLS, so the password crossed the network
in the clear (PLAIN and LOGIN are base64, not encryption).

One finding per (user, client IP), repeated at most every `realert_seconds` (default a week) so a
misconfigured client is reported, not spammed. Challenge-response mechanisms (CRAM-MD5, SCRAM-*)
do not expose the password and are not flagged. Alert-only by default.
"""

from __future__ import annotations

from dataclasses import dataclass

from relayguard.stream.detector import DetectorSpec
from relayguard.stream.detectors.common import Recent, touch
from relayguard.stream.records import Event, Finding, LoginEvent

NAME = "plaintext_auth"
CLIENTS_KEPT = 32


@dataclass(frozen=True, slots=True)
class Params:
    realert_seconds: float = 7 * 86400.0
    plaintext_mechanisms: tuple[str, ...] = ("PLAIN", "LOGIN")  # plus unknown (None)


@dataclass(frozen=True, slots=True)
class State:
    reported: Recent = ()  # (client IP, when reported)


def initial_state() -> State:
    return State()


def step(params: Params, state: State, event: Event) -> tuple[State, list[Finding]]:
    if not isinstance(event, LoginEvent) or not event.success or event.user is None:
        return state, []
    if event.tls_protocol is not None:
        return state, []
    mech = event.sasl_mechanism
    if mech is not None and mech.upper() not in params.plaintext_mechanisms:
        return state, []
    t = event.event_time
    window = params.realert_seconds
    if any(ip == event.client_ip and t - at < window for ip, at in state.reported):
        return state, []
    reported = touch(state.reported, event.client_ip, t, t, window, CLIENTS_KEPT)
    finding = Finding(
        detector=NAME,
        subject=event.user,
        subject_kind="user",
        event_time=t,
        summary=f"{event.user} authenticated without TLS from {event.client_ip} ({mech or '?'})",
        evidence={
            "client_ip": event.client_ip,
            "sasl_mechanism": mech,
            "relay_id": event.relay_id,
            "source": event.source,
        },
    )
    return State(reported), [finding]


SPEC = DetectorSpec(
    name=NAME,
    key_kind="user",
    params_type=Params,
    initial_state=initial_state,
    step=step,
    description="successful SMTP AUTH without TLS, per user and client",
)
