"""Plaintext AUTH: a successful login whose session had no TLS, so the password crossed the network
in the clear (PLAIN and LOGIN are base64, not encryption).

One finding per (user, client IP), repeated at most every `realert_seconds` (default a week) so a
misconfigured client is reported, not spammed. Challenge-response mechanisms (CRAM-MD5, SCRAM-*)
do not expose the password and are not flagged. Alert-only by default.

Each finding says whether plaintext is this user's habit (`evidence.habitual`): it is, unless the
user has been seen for `learn_seconds` with at least `learn_logins` TLS logins and no plaintext
login for `habit_seconds`. An old mail client without TLS is a habit (an honest user's every
login looks like that); a user who always used TLS and suddenly authenticates in the clear is
using another client, e.g. a spam tool: correlation counts only the unusual kind as a weak
suspicious login. Learning: 7 days and 5 logins, as sending_profile's new networks; 30 days of
no plaintext, our choice (a habit a month old is gone).
"""

from __future__ import annotations

from dataclasses import dataclass

from relayguard.stream.detector import DetectorSpec
from relayguard.stream.detectors.common import Recent, touch
from relayguard.stream.evolve import evolve
from relayguard.stream.records import Event, Finding, LoginEvent

NAME = "plaintext_auth"
CLIENTS_KEPT = 32


@dataclass(frozen=True, slots=True)
class Params:
    realert_seconds: float = 7 * 86400.0
    plaintext_mechanisms: tuple[str, ...] = ("PLAIN", "LOGIN")  # plus unknown (None)
    learn_seconds: float = 7 * 86400.0
    learn_logins: int = 5
    habit_seconds: float = 30 * 86400.0


@dataclass(frozen=True, slots=True)
class State:
    reported: Recent = ()  # (client IP, when reported)
    first_seen: float | None = None  # first successful login
    tls_logins: int = 0  # successful logins with TLS (capped)
    last_plain: float | None = None  # last successful plaintext login


def initial_state() -> State:
    return State()


def step(params: Params, state: State, event: Event) -> tuple[State, list[Finding]]:
    if not isinstance(event, LoginEvent) or not event.success or event.user is None:
        return state, []
    t = event.event_time
    first = t if state.first_seen is None else min(state.first_seen, t)
    if event.tls_protocol is not None:
        return evolve(state, first_seen=first,
                       tls_logins=min(state.tls_logins + 1, 1_000_000)), []
    mech = event.sasl_mechanism
    if mech is not None and mech.upper() not in params.plaintext_mechanisms:
        return evolve(state, first_seen=first), []
    last = state.last_plain
    habitual = (t - first < params.learn_seconds or state.tls_logins < params.learn_logins
                or (last is not None and t - last < params.habit_seconds))
    state = evolve(state, first_seen=first, last_plain=t if last is None else max(last, t))
    window = params.realert_seconds
    if any(ip == event.client_ip and t - at < window for ip, at in state.reported):
        return state, []
    reported = touch(state.reported, event.client_ip, t, t, window, CLIENTS_KEPT)
    finding = Finding(
        detector=NAME,
        subject=event.user,
        subject_kind="user",
        event_time=t,
        summary=f"{event.user} authenticated without TLS from {event.client_ip} ({mech or '?'})"
                + ("" if habitual else ", a user who always used TLS"),
        evidence={
            "client_ip": event.client_ip,
            "sasl_mechanism": mech,
            "relay_id": event.relay_id,
            "source": event.source,
            "habitual": habitual,
        },
    )
    return evolve(state, reported=reported), [finding]


SPEC = DetectorSpec(
    name=NAME,
    key_kind="user",
    reacts_to=frozenset({"login_ok"}),
    params_type=Params,
    initial_state=initial_state,
    step=step,
    description="successful SMTP AUTH without TLS, per user and client",
)
