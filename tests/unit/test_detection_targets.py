"""Detection quality on a small seeded fleet, replayed through the real engine (the same
`relayguard simulate --score` path: codec, GeoIP on the run's own City database, Replayer).

Issue 9's targets are recall >= 99%, >= 95% locked within 60 s of the first malicious send (first
guess for guessing attacks), false locks <= 0.1% of benign users per day (IP blocks refusing
authenticated users counted), false alerts <= 0.5% per day. This branch does NOT reach all of
them (see docs/detectors.md, "Measured"); the assertions below are regression floors at the
figures it does reach on this fleet, so a change that makes detection worse fails here. Tighten
them as detection improves; never loosen them without saying why in the commit.
"""

from __future__ import annotations

from typing import Any

import pytest

from relayguard.foundation.geoip import GeoLocator
from relayguard.roof.replay import load_params
from relayguard.roof.simulate.fleet import SimConfig
from relayguard.roof.simulate.score import collect, evaluate, read_events
from relayguard.roof.simulate.writer import CITY_DB, EVENTS, generate

# Two weeks of warm-up (the learning periods need them), two scored days, every kind once.
FLEET = SimConfig(seed=5, users=100, orgs=20, warmup_days=14, scored_days=2, attacks=12)


@pytest.fixture(scope="module")
def figures(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("targets")
    labels = generate(FLEET, out)
    actions = collect(read_events(out / EVENTS), load_params(None),
                      GeoLocator(out / CITY_DB))
    return evaluate(labels, actions)


def _kind(figures: dict[str, Any], kind: str) -> dict[str, Any]:
    k: dict[str, Any] = figures["by_kind"][kind]
    return k


def test_fleet_covers_every_attack_kind(figures: dict[str, Any]) -> None:
    assert figures["attacks"] == 12 and len(figures["by_kind"]) == 12
    assert figures["bad_lines"] == 0


def test_recall_floors(figures: dict[str, Any]) -> None:
    # Target: recall >= 0.99, within 60 s >= 0.95 (issue 9). Floors measured on this branch.
    assert figures["caught"] >= CAUGHT_FLOOR  # 12 of 12 = 100%
    assert figures["within_60s"] >= WITHIN_60S_FLOOR  # 9 of 12 = 75%


def test_takeovers_with_a_suspicious_login_lock_within_a_minute(figures: dict[str, Any]) -> None:
    # The point of issue 9 item 2: a new-country / dormant / plaintext login followed by
    # sending that departs from the user's pattern is locked within seconds of the send.
    for kind in ("new_country_burst", "stuffing_spam", "plaintext_auth", "dormant_abroad"):
        assert _kind(figures, kind)["within_60s"] == 1, kind


def test_slow_spam_from_home_is_caught_by_the_profile(figures: dict[str, Any]) -> None:
    # Issue 9 item 3: under every fixed limit, from the victim's own country.
    assert _kind(figures, "slow_spam_home")["caught"] == 1


def test_slow_brute_force_is_caught(figures: dict[str, Any]) -> None:
    # One guess every 4-15 min from rotating proxies: auth_failures_slow (failures from networks
    # the victim never logged in from, over hours). Not within 60 s: the second guess alone
    # comes minutes after the first.
    assert _kind(figures, "brute_force_slow")["caught"] == 1


def test_false_action_ceilings(figures: dict[str, Any]) -> None:
    # Targets: false locks <= 0.001, false alerts <= 0.005 per benign user per day (issue 9).
    # Ceilings measured after the honest-user changes and learned bulk senders: no false lock.
    assert figures["false_lock_user_days"] <= FALSE_LOCK_DAYS_CEILING
    assert figures["false_alert_user_days"] <= FALSE_ALERT_DAYS_CEILING  # 0.56%
    profile_locks = [e for e in figures["benign_acted_on"]
                     if e["detector"] in ("sending_profile", "correlation")
                     and e["action"] == "lock"]
    assert profile_locks == []  # the new signals never locked an honest user on this fleet


# Measured on this branch (2026-12-02). brute_force_slow is caught since auth_failures_slow (it
# was never locked: 5 failures in 10 min never happen at one guess every 4-15 min), but after
# about an hour; not within 60 s either: spray_slow (~34 min),
# slow_spam_abroad / slow_spam_home (3-8 min: 1-4 recipients every 2-5 min; the profile needs a
# few messages). False locks: none since IP blocks got a scope, impossible travel learned known
# places and volume learned bulk senders (it was 5 user-days, 2.8%, before those).
CAUGHT_FLOOR = 12
WITHIN_60S_FLOOR = 9  # was 8: one message to only new domains after a strong login
FALSE_LOCK_DAYS_CEILING = 0
FALSE_ALERT_DAYS_CEILING = 1
