"""Policy: findings -> alerts and lock commands, idempotent per subject."""

from __future__ import annotations

import ipaddress
from typing import Any

from relayguard.stream import policy
from relayguard.stream.policy import DetectorPolicy, LockState, PolicyParams
from relayguard.stream.records import Finding

T0 = 1_796_000_000.0
POL = {
    "volume": DetectorPolicy("throttle", "high", ttl_seconds=3600),
    "impossible_travel": DetectorPolicy("lock", "high"),
    "new_country": DetectorPolicy("alert", "low"),
    "quiet": DetectorPolicy("alert", "low", silent=True),
}


def finding(detector: str, subject: str = "alice", t: float = T0, kind: str = "user",
            signal_only: bool = False) -> Finding:
    return Finding(detector, subject, kind, t, f"{detector} on {subject}",  # type: ignore[arg-type]
                   {"n": 1}, signal_only)


def test_alert_only_detector_alerts_without_command() -> None:
    d = policy.decide(PolicyParams(POL), LockState(), [finding("new_country")], T0)
    assert d.commands == []
    assert [a.detector for a in d.alerts] == ["new_country"]
    assert d.alerts[0].remedy == "alert" and d.alerts[0].command_id is None


def test_throttle_has_ttl_and_lock_has_none() -> None:
    d = policy.decide(PolicyParams(POL), LockState(), [finding("volume")], T0)
    assert d.commands[0].expires_at == T0 + 3600
    d2 = policy.decide(PolicyParams(POL), LockState(), [finding("impossible_travel")], T0)
    assert d2.commands[0].expires_at is None
    assert d2.alerts[0].command_id == d2.commands[0].command_id


def test_many_findings_one_incident_one_command() -> None:
    p = PolicyParams(POL)
    state = LockState()
    commands = []
    for i in range(20):
        d = policy.decide(p, state, [finding("volume", t=T0 + i)], T0 + i)
        state = d.state
        commands += d.commands
    assert len(commands) == 1


def test_strongest_remedy_first_in_one_batch() -> None:
    d = policy.decide(PolicyParams(POL), LockState(),
                      [finding("volume"), finding("impossible_travel")], T0)
    assert [c.detector for c in d.commands] == ["impossible_travel"]
    assert {a.detector for a in d.alerts} == {"volume", "impossible_travel"}


def test_lock_escalates_over_active_throttle_but_not_back() -> None:
    p = PolicyParams(POL)
    d1 = policy.decide(p, LockState(), [finding("volume")], T0)
    d2 = policy.decide(p, d1.state, [finding("impossible_travel")], T0 + 1)
    assert [c.detector for c in d2.commands] == ["impossible_travel"]
    assert d2.commands[0].version > d1.commands[0].version
    d3 = policy.decide(p, d2.state, [finding("volume", t=T0 + 5000)], T0 + 5000)
    assert d3.commands == []


def test_expire_gives_unlock_once() -> None:
    p = PolicyParams(POL)
    d = policy.decide(p, LockState(), [finding("volume")], T0)
    assert policy.expire(p, d.state, "alice", "user", T0 + 3599).commands == []
    e = policy.expire(p, d.state, "alice", "user", T0 + 3600)
    assert [c.action for c in e.commands] == ["unlock"]
    assert e.commands[0].evidence["expired_command_id"] == d.commands[0].command_id
    assert policy.expire(p, e.state, "alice", "user", T0 + 7200).commands == []
    # a permanent lock never expires
    d2 = policy.decide(p, LockState(), [finding("impossible_travel")], T0)
    assert policy.expire(p, d2.state, "alice", "user", T0 + 10**9).commands == []


def test_cooldown_suppresses_repeat_alerts() -> None:
    p = PolicyParams(POL)
    d1 = policy.decide(p, LockState(), [finding("new_country")], T0)
    d2 = policy.decide(p, d1.state, [finding("new_country", t=T0 + 60)], T0 + 60)
    d3 = policy.decide(p, d2.state, [finding("new_country", t=T0 + 3600)], T0 + 3600)
    assert (len(d1.alerts), len(d2.alerts), len(d3.alerts)) == (1, 0, 1)


def test_allowlisted_user_and_network() -> None:
    nets = (ipaddress.ip_network("192.0.2.0/24"),)
    p = PolicyParams(POL, allow_users=frozenset({"alice"}), allow_networks=nets)
    assert policy.decide(p, LockState(), [finding("volume")], T0).alerts == []
    ip = finding("volume", subject="192.0.2.9", kind="ip")
    assert policy.decide(p, LockState(), [ip], T0).commands == []
    other = finding("volume", subject="198.51.100.9", kind="ip")
    assert len(policy.decide(p, LockState(), [other], T0).commands) == 1


def test_signal_only_and_silent_findings_make_no_noise() -> None:
    p = PolicyParams(POL)
    d = policy.decide(p, LockState(), [finding("volume", signal_only=True), finding("quiet")], T0)
    assert d.commands == [] and d.alerts == []


def test_dry_run_marks_everything() -> None:
    p = PolicyParams(POL, dry_run=True)
    d = policy.decide(p, LockState(), [finding("volume")], T0)
    assert d.commands[0].dry_run and d.alerts[0].dry_run
    assert policy.expire(p, d.state, "alice", "user", T0 + 3600).commands[0].dry_run


def test_command_ids_are_deterministic() -> None:
    p = PolicyParams(POL)
    a = policy.decide(p, LockState(), [finding("volume")], T0).commands[0]
    b = policy.decide(p, LockState(), [finding("volume")], T0).commands[0]
    assert a.command_id == b.command_id and a.version == b.version == int(T0 * 1000)


def test_per_detector_dry_run_alerts_what_it_would_do_and_holds_nothing_back() -> None:
    pol = {**POL, "impossible_travel": DetectorPolicy("lock", "high", dry_run=True)}
    d = policy.decide(PolicyParams(pol), LockState(), [finding("impossible_travel")], T0)
    assert d.commands == [] and not d.state.locked
    (alert,) = d.alerts
    assert alert.dry_run and alert.remedy == "lock" and alert.command_id is None
    # A real remedy from another detector still goes out right after.
    d2 = policy.decide(PolicyParams(pol), d.state, [finding("volume", t=T0 + 1)], T0 + 1)
    assert [c.detector for c in d2.commands] == ["volume"] and not d2.commands[0].dry_run


IP_POL = {
    "auth_failures_ip": DetectorPolicy("throttle", "medium", ttl_seconds=600),
    "password_spray": DetectorPolicy("throttle", "high", ttl_seconds=3600),
    "banned": DetectorPolicy("lock", "high"),
}


def ip_finding(detector: str, scope: str | None, t: float = T0) -> Finding:
    evidence: dict[str, object] = {"n": 1} if scope is None else {"n": 1, "scope": scope}
    return Finding(detector, "192.0.2.1", "ip", t, "x", evidence)


def test_ip_lock_carries_its_scope_and_a_wider_one_escalates() -> None:
    params = PolicyParams(IP_POL)
    d = policy.decide(params, LockState(), [ip_finding("auth_failures_ip", "unauthenticated")],
                      T0)
    assert [c.evidence["scope"] for c in d.commands] == ["unauthenticated"]
    assert d.state.scope == "unauthenticated"
    assert not policy.refuses_authenticated(d.commands[0])
    # the same scope again: nothing new; guessing across users: a wider block at once
    again = policy.decide(params, d.state, [ip_finding("auth_failures_ip", "unauthenticated",
                                                       T0 + 5)], T0 + 5)
    assert again.commands == []
    wider = policy.decide(params, d.state, [ip_finding("auth_failures_ip", "all", T0 + 6)],
                          T0 + 6)
    assert [c.evidence["scope"] for c in wider.commands] == ["all"]
    assert policy.refuses_authenticated(wider.commands[0])
    # a stronger remedy with a narrower scope keeps the wider block in force
    stronger = policy.decide(params, wider.state, [ip_finding("banned", "unauthenticated",
                                                              T0 + 7)], T0 + 7)
    assert [(c.detector, c.evidence["scope"]) for c in stronger.commands] == [("banned", "all")]
    # once it ran out, a narrow one is narrow again
    later = policy.decide(params, wider.state, [ip_finding("auth_failures_ip",
                                                           "unauthenticated", T0 + 9000)],
                          T0 + 9000)
    assert [c.evidence["scope"] for c in later.commands] == ["unauthenticated"]


def test_ip_lock_without_a_scope_refuses_everyone_and_user_locks_get_none() -> None:
    d = policy.decide(PolicyParams(IP_POL), LockState(), [ip_finding("password_spray", None)],
                      T0)
    assert d.commands[0].evidence["scope"] == "all"
    u = policy.decide(PolicyParams(POL), LockState(), [finding("impossible_travel")], T0)
    assert "scope" not in u.commands[0].evidence and policy.refuses_authenticated(u.commands[0])
    assert policy.scope_of({"scope": "bogus"}) == "all" and policy.scope_of(None) == "all"


def _slow(t: float = T0, familiar: list[Any] | None = None) -> Finding:
    return Finding("auth_failures_slow", "alice", "user", t, "slow guessing",
                   {"scope": "unfamiliar_networks",
                    "familiar_networks": familiar if familiar is not None
                    else ["198.51.0.0/16"]})


SLOW_POL = {**POL, "auth_failures_slow": DetectorPolicy("throttle", "high", ttl_seconds=3600)}


def test_a_scoped_user_lock_spares_familiar_networks_and_a_full_lock_escalates() -> None:
    params = PolicyParams(SLOW_POL)
    d = policy.decide(params, LockState(), [_slow()], T0)
    (cmd,) = d.commands
    assert cmd.evidence["scope"] == "unfamiliar_networks" and d.state.scope == cmd.evidence["scope"]
    assert policy.spares(cmd, "198.51.7.7") and not policy.spares(cmd, "203.0.113.9")
    assert not policy.spares(cmd, None) and policy.refuses_authenticated(cmd)
    # the same again: nothing new; a throttle of scope all (same strength, wider): escalates
    assert policy.decide(params, d.state, [_slow(T0 + 5)], T0 + 5).commands == []
    wider = policy.decide(params, d.state, [finding("volume", t=T0 + 6)], T0 + 6)
    assert len(wider.commands) == 1 and not policy.spares(wider.commands[0], "198.51.7.7")
    assert wider.state.scope == "all"
    # a scoped finding while the full throttle holds gets no narrower command
    assert policy.decide(params, wider.state, [_slow(T0 + 7)], T0 + 7).commands == []


def test_a_scoped_finding_under_a_stronger_lock_never_narrows_it() -> None:
    params = PolicyParams({**SLOW_POL, "auth_failures_slow": DetectorPolicy("lock", "high")})
    locked = policy.decide(params, LockState(), [finding("volume")], T0)  # throttle, scope all
    d = policy.decide(params, locked.state, [_slow(T0 + 1)], T0 + 1)
    assert [c.evidence["scope"] for c in d.commands] == ["all"]
    assert not policy.spares(d.commands[0], "198.51.7.7")


def test_spared_networks_are_bounded_and_strings_only() -> None:
    params = PolicyParams(SLOW_POL)
    nets: list[Any] = [f"10.{i}.0.0/16" for i in range(100)] + [5]
    (cmd,) = policy.decide(params, LockState(), [_slow(familiar=nets)], T0).commands
    assert len(policy.spared_networks(cmd)) == policy.MAX_SPARED_NETWORKS
    assert policy.user_scope_of({"scope": "unfamiliar_networks"}) == "all"
