"""Correlation in the pure core (engine.step directly, no replay, no Kafka): a suspicious login
followed by a volume jump gives one lock whose evidence carries both halves."""

from __future__ import annotations

from relayguard.foundation.core_params import build_core_params
from relayguard.foundation.settings import Settings
from relayguard.stream import codec, engine
from relayguard.stream.engine import KeyState
from relayguard.stream.records import Event, GeoPoint, LoginEvent, SendEvent

T0 = 1_796_000_000.0
DAY = 86400.0
DE = GeoPoint(52.52, 13.405, 20.0, "DE", "Berlin")
BR = GeoPoint(-23.55, -46.63, 20.0, "BR", "Sao Paulo")
USER = "alice@example.com"


def login(i: int, t: float, ip: str, geo: GeoPoint) -> LoginEvent:
    return LoginEvent(f"l{i}", t, "r1", USER, ip, True, "TLSv1.3", "PLAIN", geo=geo)


def send(i: int, t: float, ip: str, rcpts: int) -> SendEvent:
    return SendEvent(f"s{i}", t, "r1", USER, ip, USER, rcpts, 1000)


def history() -> list[Event]:
    return [login(i, T0 + i * DAY, "198.51.100.20", DE) for i in range(15)]


def run(events: list[Event], **cfg: object) -> list[engine.StepResult]:
    params = build_core_params(Settings(**cfg))  # type: ignore[arg-type]
    state: KeyState | None = None
    out = []
    for ev in events:
        res = engine.step(params, "user", USER, state, ev)
        state = res.state
        out.append(res)
    return out


def test_new_country_then_jump_locks_with_both_pieces_of_evidence() -> None:
    t = T0 + 15 * DAY
    events = [*history(), login(100, t, "203.0.113.20", BR)]
    events += [send(200 + i, t + 60 + i * 60, "203.0.113.20", 25) for i in range(4)]
    results = run(events)
    commands = [c for r in results for c in r.commands]
    assert [(c.action, c.detector) for c in commands] == [("lock", "correlation")]
    ev = commands[0].evidence
    assert ev["login"]["reason"] == "new_country"
    assert ev["login"]["client_ip"] == "203.0.113.20"
    assert ev["login"]["evidence"]["country"] == "BR"
    assert ev["volume"]["recipients"] == 100 and ev["volume"]["trigger"] == "recipients"
    assert ev["volume"]["seconds_after_login"] == 240.0
    # the lock command is valid on the wire (schema) with that nested evidence
    raw = codec.dumps(codec.lock_command_to_dict(commands[0]))
    assert codec.decode_lock_command(raw).evidence == ev
    # the new-country alert still went out under its own (alert-only) policy
    alerts = [a.detector for r in results for a in r.alerts]
    assert alerts == ["new_country", "correlation"]


def test_neither_alone_locks() -> None:
    t = T0 + 15 * DAY
    login_only = run([*history(), login(100, t, "203.0.113.20", BR)])
    assert not [c for r in login_only for c in r.commands]
    sends_only = run([*history()] + [send(i, t + i * 60, "198.51.100.20", 25) for i in range(8)])
    assert not [c for r in sends_only for c in r.commands]
    assert not [f for r in sends_only for f in r.findings]


def test_disabling_correlation_keeps_new_country_alert_only() -> None:
    t = T0 + 15 * DAY
    events = [*history(), login(100, t, "203.0.113.20", BR)]
    events += [send(200 + i, t + 60 + i * 60, "203.0.113.20", 25) for i in range(4)]
    results = run(events, detectors={"correlation": {"enabled": False}})
    assert not [c for r in results for c in r.commands]


def test_silent_new_country_still_feeds_correlation() -> None:
    t = T0 + 15 * DAY
    events = [*history(), login(100, t, "203.0.113.20", BR)]
    events += [send(200 + i, t + 60 + i * 60, "203.0.113.20", 25) for i in range(4)]
    results = run(events, policy={"detectors": {"new_country": {"silent": True}}})
    assert [a.detector for r in results for a in r.alerts] == ["correlation"]
    assert [c.detector for r in results for c in r.commands] == ["correlation"]


def test_one_escalation_per_suspicious_login() -> None:
    t = T0 + 15 * DAY
    events = [*history(), login(100, t, "203.0.113.20", BR)]
    events += [send(200 + i, t + 60 + i * 30, "203.0.113.20", 30) for i in range(20)]
    found = [f for r in run(events) for f in r.findings if f.detector == "correlation"]
    assert len(found) == 1


def _domain_history() -> list[Event]:
    """Two weeks of logins at home and messages to the same two domains: a learned profile."""
    out: list[Event] = []
    for d in range(15):
        t = T0 + d * DAY
        out.append(login(d, t, "198.51.100.20", DE))
        out += [SendEvent(f"h{d}-{k}", t + 60 * (k + 1), "r1", USER, "198.51.100.20", USER, 2,
                          1000, recipient_domains=("example.com", "partner.example"),
                          recipient_domain_count=2) for k in range(4)]
    return out


def test_new_country_then_one_message_to_only_new_domains_locks_on_that_message() -> None:
    t = T0 + 15 * DAY
    spam = SendEvent("spam", t + 90, "r1", USER, "203.0.113.20", USER, 3, 1000,
                     recipient_domains=("a.test", "b.test", "c.test"), recipient_domain_count=3)
    results = run([*_domain_history(), login(100, t, "203.0.113.20", BR), spam])
    commands = [c for r in results for c in r.commands]
    assert [(c.action, c.detector) for c in commands] == [("lock", "correlation")]
    assert results[-1].commands == commands  # on the first message, not minutes later
    volume = commands[0].evidence["volume"]
    assert volume["messages"] == 1 and volume["points"] == 1
    assert volume["trigger_evidence"]["signal"] == "message_to_new_domains"


def test_only_new_domains_without_a_strong_login_or_with_a_known_domain_does_not_lock() -> None:
    t = T0 + 15 * DAY
    new_only = SendEvent("n", t + 90, "r1", USER, "198.51.100.20", USER, 2, 1000,
                         recipient_domains=("a.test", "b.test"), recipient_domain_count=2)
    at_home = run([*_domain_history(), login(100, t, "198.51.100.20", DE), new_only])
    assert not [c for r in at_home for c in r.commands]  # no suspicious login: nothing
    mixed = SendEvent("m", t + 90, "r1", USER, "203.0.113.20", USER, 2, 1000,
                      recipient_domains=("a.test", "example.com"), recipient_domain_count=2)
    abroad = run([*_domain_history(), login(100, t, "203.0.113.20", BR), mixed])
    assert not [c for r in abroad for c in r.commands]  # a traveller writing to a colleague
