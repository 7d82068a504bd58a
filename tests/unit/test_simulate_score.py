"""The simulator's scorer on hand-made inputs with known answers: recall, recall within 60 s,
false locks (user locks and IP blocks that refuse a correct login), false alerts, warm-up left
out; and `collect` over the real core for the IP-block and operator-unlock cases."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from relayguard.roof.replay import load_params
from relayguard.roof.simulate.score import (
    Action,
    Actions,
    collect,
    evaluate,
    load_actions,
    save_actions,
)
from relayguard.stream.records import GeoPoint, LoginEvent

S0 = 1_800_000_000.0  # scored window starts here
DAY = 86400.0


def _labels() -> dict[str, Any]:
    def user(victim: bool, tags: list[str] | None = None) -> dict[str, Any]:
        return {"org": "o.example", "size": "normal", "tags": tags or [], "victim": victim}

    return {
        "scored_start": S0, "end": S0 + 2 * DAY,
        "users": {"a": user(True), "f": user(True), "b": user(False, ["stale_phone"]),
                  "c": user(False), "d": user(False, ["traveller"]), "e": user(False)},
        "attacks": [
            {"id": "A1", "kind": "new_country_burst", "victims": ["a"],
             "attacker_ips": ["10.9.9.9"], "first_malicious_at": S0 + 1000,
             "first_guess_at": None, "first_send_at": S0 + 1100, "last_malicious_at": S0 + 2000,
             "reference": "first_send"},
            {"id": "A2", "kind": "spray_fast", "victims": [], "attacker_ips": ["10.8.8.8"],
             "first_malicious_at": S0 + 5000, "first_guess_at": S0 + 5000,
             "first_send_at": None, "last_malicious_at": S0 + 6000, "reference": "first_guess"},
            {"id": "A3", "kind": "slow_spam_home", "victims": ["f"],
             "attacker_ips": ["10.7.7.7"], "first_malicious_at": S0 + 7000,
             "first_guess_at": None, "first_send_at": S0 + 7100,
             "last_malicious_at": S0 + 9000, "reference": "first_send"},
        ],
    }


def test_scorer_known_answer() -> None:
    acts = Actions(items=[
        Action(S0 + 1150, "user", "a", "correlation", "lock"),        # A1: 50 s after the send
        Action(S0 + 5100, "ip", "10.8.8.8", "password_spray", "lock"),  # A2: 100 s after guess
        Action(S0 + 7500, "user", "f", "volume_baseline", "alert"),   # A3: alerted, not locked
        Action(S0 - 500, "user", "e", "volume", "lock"),              # warm-up: not scored
        Action(S0 + 100, "user", "b", "auth_failures", "lock"),       # b: day 0 ...
        Action(S0 + 200, "user", "b", "auth_failures", "refused", user="b"),  # ... same day
        Action(S0 + DAY + 10, "ip", "10.1.1.1", "auth_failures_ip", "refused", user="c"),
        Action(S0 + 300, "user", "d", "new_country", "alert"),
        Action(S0 + 400, "user", "d", "new_country", "alert"),        # same day: one
        Action(S0 + 3 * DAY, "user", "c", "volume", "lock"),          # after the end
        Action(S0 + 1500, "ip", "10.1.1.1", "auth_failures_ip", "lock"),  # no user refused
    ], events=10, seconds=1.0)
    r = evaluate(_labels(), acts)
    assert r["attacks"] == 3 and r["caught"] == 2 and r["within_60s"] == 1
    assert r["recall"] == pytest.approx(2 / 3) and r["recall_60s"] == pytest.approx(1 / 3)
    assert r["alerted"] == 3
    assert r["benign_users"] == 4 and r["scored_days"] == 2
    # b (user lock, day 0) and c (IP block refusing a correct login, day 1): 2 of 4 x 2.
    assert r["false_lock_user_days"] == 2
    assert r["false_lock_rate"] == pytest.approx(2 / 8)
    assert r["false_user_lock_rate"] == pytest.approx(1 / 8)
    assert r["false_ip_block_rate"] == pytest.approx(1 / 8)
    assert r["false_alert_user_days"] == 1 and r["false_alert_rate"] == pytest.approx(1 / 8)
    results = {a["id"]: a for a in r["attack_results"]}
    assert results["A1"]["delay_s"] == 50 and results["A1"]["within_60s"]
    assert results["A2"]["delay_s"] == 100 and not results["A2"]["within_60s"]
    assert results["A2"]["locked_subject"] == "ip:10.8.8.8"
    assert not results["A3"]["caught"] and results["A3"]["first_signal"] == "volume_baseline"
    assert r["by_kind"]["spray_fast"] == {"attacks": 1, "caught": 1, "within_60s": 0,
                                          "alerted": 1, "median_delay_s": 100}
    acted = {(e["user"], e["action"], e["detector"]) for e in r["benign_acted_on"]}
    assert acted == {("b", "lock", "auth_failures"), ("c", "ip_block", "auth_failures_ip"),
                     ("d", "alert", "new_country")}
    causes = {(c["remedy"], c["detector"], c["tag"]): c["user_days"] for c in r["causes"]}
    assert causes == {("lock", "auth_failures", "stale_phone"): 1,
                      ("lock", "auth_failures_ip", "(none)"): 1,
                      ("alert", "new_country", "traveller"): 1}


def test_lock_before_the_attack_does_not_count_as_catching_it() -> None:
    acts = Actions(items=[Action(S0 + 900, "user", "a", "volume", "lock")])  # 100 s too early
    r = evaluate(_labels(), acts)
    assert r["caught"] == 0 and r["recall"] == 0


def test_throttle_over_before_the_first_send_does_not_count() -> None:
    # A1's IP throttled at its first malicious event, for 60 s: gone when the spam starts.
    over = Action(S0 + 1000, "ip", "10.9.9.9", "auth_failures_ip", "lock",
                  expires_at=S0 + 1060)
    assert evaluate(_labels(), Actions(items=[over]))["caught"] == 0
    # Still in force at the first send (S0 + 1100): caught, before the send, within 60 s.
    held = Action(S0 + 1000, "ip", "10.9.9.9", "auth_failures_ip", "lock",
                  expires_at=S0 + 1600)
    r = evaluate(_labels(), Actions(items=[held]))
    assert r["caught"] == 1 and r["within_60s"] == 1
    assert r["attack_results"][0]["delay_s"] == -100


def test_actions_round_trip_through_the_cache(tmp_path: Path) -> None:
    acts = Actions(items=[Action(S0, "ip", "10.0.0.1", "auth_failures_ip", "refused", user="b",
                                 expires_at=S0 + 600),
                          Action(S0, "user", "b", "auth_failures_slow", "lock",
                                 expires_at=S0 + 3600, spares=("10.1.0.0/16",))],
                   events=3, seconds=1.5, cpu_seconds=1.0)
    save_actions(acts, tmp_path / "actions.jsonl")
    back = load_actions(tmp_path / "actions.jsonl")
    assert back == acts


def _login(i: int, t: float, user: str, ip: str, ok: bool,
           geo: GeoPoint | None = None) -> LoginEvent:
    return LoginEvent(f"e{i}", t, "r1", user, ip, ok, "TLSv1.3", "PLAIN",
                      None if ok else "bad_credentials", "test", None, geo)


def test_collect_counts_correct_logins_an_ip_block_refused() -> None:
    params = load_params(None)
    nat = "10.0.0.1"
    # a burst across five users: guessing across users, the block refuses everyone
    events = [_login(i, S0 + i, f"u{i}@o.example", nat, ok=False) for i in range(5)]
    events.append(_login(10, S0 + 60, "bob@o.example", nat, ok=True))     # refused
    events.append(_login(11, S0 + 61, "bob@o.example", "10.0.0.2", True))  # other IP: fine
    events.append(_login(12, S0 + 700, "bob@o.example", nat, ok=True))    # 10-min TTL over
    acts = collect(events, params)
    blocks = [a for a in acts.items if a.what == "lock" and a.kind == "ip"]
    assert [b.subject for b in blocks] == [nat]
    refused = [a for a in acts.items if a.what == "refused"]
    assert [(a.user, a.t, a.kind, a.detector) for a in refused] == [
        ("bob@o.example", S0 + 60, "ip", blocks[0].detector)]
    assert acts.events == len(events)


def test_collect_an_ip_block_behind_one_user_refuses_no_correct_login() -> None:
    params = load_params(None)
    nat = "10.0.0.1"
    events = [_login(i, S0 + i, "old@o.example", nat, ok=False) for i in range(5)]  # one user
    events.append(_login(10, S0 + 60, "bob@o.example", nat, ok=True))
    acts = collect(events, params)
    blocks = [a for a in acts.items if a.what == "lock" and a.kind == "ip"]
    assert [(b.subject, b.refuses_authenticated) for b in blocks] == [(nat, False)]
    assert [a for a in acts.items if a.what == "refused"] == []


def test_a_takeover_is_not_caught_by_an_ip_block_that_spares_authenticated_users() -> None:
    spares = Action(S0 + 1050, "ip", "10.9.9.9", "auth_failures_ip", "lock",
                    expires_at=S0 + 5000, refuses_authenticated=False)
    assert evaluate(_labels(), Actions(items=[spares]))["attack_results"][0]["caught"] is False
    full = replace(spares, refuses_authenticated=True)
    assert evaluate(_labels(), Actions(items=[full]))["attack_results"][0]["caught"] is True
    # a guesser is stopped by any block on its address
    spray = Action(S0 + 5005, "ip", "10.8.8.8", "auth_failures_ip", "lock",
                   expires_at=S0 + 6000, refuses_authenticated=False)
    assert evaluate(_labels(), Actions(items=[spray]))["attack_results"][1]["caught"] is True


def test_collect_operator_lifts_a_lock_until_unlocked_a_day_later() -> None:
    params = load_params(None)
    berlin = GeoPoint(52.52, 13.405, 20, "DE", "Berlin")
    sydney = GeoPoint(-33.87, 151.21, 20, "AU", "Sydney")
    events = [
        _login(1, S0, "t@o.example", "10.1.0.1", True, berlin),
        _login(2, S0 + 600, "t@o.example", "10.2.0.1", True, sydney),  # impossible travel
        _login(3, S0 + 3600, "t@o.example", "10.1.0.1", True, berlin),  # refused: locked
        _login(4, S0 + 2 * DAY, "t@o.example", "10.1.0.1", True, berlin),  # unlocked by then
    ]
    acts = collect(events, params, operator_unlock_s=DAY)
    locks = [a for a in acts.items if a.what == "lock"]
    assert [(a.subject, a.detector, a.expires_at) for a in locks] == [
        ("t@o.example", "impossible_travel", None)]
    refused = [a.t for a in acts.items if a.what == "refused"]
    assert refused == [S0 + 3600]
    # Without the operator the lock stays and refuses the user two days later too.
    kept = collect(events, params, operator_unlock_s=None)
    assert [a.t for a in kept.items if a.what == "refused"] == [S0 + 3600, S0 + 2 * DAY]


def test_collect_a_slow_guesser_gets_a_scoped_lock_that_spares_the_owners_network() -> None:
    params = load_params(None)
    home = "10.1.0.1"
    events = [_login(0, S0, "v@o.example", home, True)]
    # one guess every 10 minutes, each from a network the victim never logged in from
    events += [_login(i, S0 + 600 * i, "v@o.example", f"10.{50 + i}.0.1", ok=False)
               for i in range(1, 9)]
    events.append(_login(20, S0 + 6000, "v@o.example", home, True))  # the owner: let through
    events.append(_login(21, S0 + 6100, "v@o.example", "10.99.0.1", True))  # refused
    acts = collect(events, params)
    locks = [a for a in acts.items if a.what == "lock"]
    assert [(a.detector, a.spares) for a in locks] == [("auth_failures_slow", ("10.1.0.0/16",))]
    refused = [(a.t, a.detector) for a in acts.items if a.what == "refused"]
    assert refused == [(S0 + 6100, "auth_failures_slow")]
    # scored: the scoped lock itself is no false lock; only the refused login is
    labels = _labels()
    labels["users"]["v@o.example"] = {"org": "o.example", "size": "normal", "tags": [],
                                      "victim": False}
    figures = evaluate(labels, acts)
    assert figures["false_lock_user_days"] == 1
    assert [e["action"] for e in figures["benign_acted_on"]] == ["locked_out"]
    only_lock = Actions(items=[a for a in acts.items if a.what == "lock"])
    assert evaluate(labels, only_lock)["false_lock_user_days"] == 0
