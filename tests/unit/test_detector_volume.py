"""Fixed volume limits with tiers: resolution order and the config that builds them."""

from __future__ import annotations

import pytest

from relayguard.foundation.core_params import build_core_params
from relayguard.foundation.errors import ConfigError
from relayguard.foundation.settings import Settings
from relayguard.stream.detectors import volume
from relayguard.stream.records import SendEvent

T0 = 1_796_000_000.0


def vparams(cfg: dict[str, object]) -> volume.Params:
    core = build_core_params(Settings(detectors={"volume": cfg}))
    found: volume.Params = next(d.params for d in core.detectors if d.spec.name == "volume")
    return found


def limits_for(p: volume.Params, user: str) -> dict[str, tuple[int | None, str]]:
    return {lim.name: r for lim, r in zip(p.limits, volume.resolve(p, user), strict=True)}


def test_defaults_unchanged_without_tiers() -> None:
    p = volume.Params()
    got = {lim.name: (lim.measure, lim.window.length, lim.limit) for lim in p.limits}
    assert got == {
        "messages_1m": ("messages", 60, 10), "messages_1h": ("messages", 3600, 300),
        "messages_24h": ("messages", 86400, 1000), "recipients_1m": ("recipients", 60, 500),
        "recipients_1h": ("recipients", 3600, 500), "recipients_24h": ("recipients", 86400, 2000),
    }
    assert limits_for(p, "a@b.c")["messages_1m"] == (10, "default")


def test_user_beats_domain_beats_plan_beats_default() -> None:
    p = vparams({
        "limits": {"messages_1m": 20},
        "plans": {"bulk": {"messages_1m": 200, "messages_1h": 2000, "recipients_1h": 9000}},
        "domains": {"Shop.Example": {"plan": "bulk", "messages_1h": 1500}},
        "users": {"vip@shop.example": {"messages_1h": "unlimited", "messages_1m": "inherit"}},
    })
    vip = limits_for(p, "vip@shop.example")
    assert vip["messages_1h"] == (None, "user")
    assert vip["messages_1m"] == (200, "plan:bulk")  # inherit at user and domain -> plan
    assert vip["recipients_1h"] == (9000, "plan:bulk")
    assert vip["messages_24h"] == (1000, "default")
    staff = limits_for(p, "staff@shop.example")
    assert staff["messages_1h"] == (1500, "domain:shop.example")
    assert limits_for(p, "x@elsewhere.example")["messages_1m"] == (20, "default")


def test_user_plan_beats_domain_plan() -> None:
    p = vparams({"plans": {"small": {"messages_1m": 2}, "big": {"messages_1m": 50}},
                 "domains": {"d.example": {"plan": "small"}},
                 "users": {"u@d.example": {"plan": "big"}}})
    assert limits_for(p, "u@d.example")["messages_1m"] == (50, "plan:big")
    assert limits_for(p, "v@d.example")["messages_1m"] == (2, "plan:small")


def test_custom_window_limit() -> None:
    p = vparams({"windows": {"recipients_10m": {"measure": "recipients", "length": 600,
                                                  "bucket": 60, "limit": 250}}})
    state = volume.initial_state()
    found = []
    for i in range(6):
        ev = SendEvent(f"s{i}", T0 + i * 60, "r1", "u@x", "192.0.2.1", "u@x", 50, 100)
        state, f = volume.step(p, state, ev)
        found += f
    assert [(f.evidence["limit_name"], f.evidence["count"]) for f in found] == [
        ("recipients_10m", 300)]


def test_unlimited_at_default_level_never_fires() -> None:
    p = vparams({"limits": {"messages_1m": "unlimited"}})
    state = volume.initial_state()
    for i in range(50):
        state, f = volume.step(p, state, SendEvent(f"s{i}", T0 + i, "r", "u@x", "ip", "u@x", 1, 1))
        assert f == []


@pytest.mark.parametrize(("cfg", "words"), [
    ({"limits": {"messages_2m": 5}}, "unknown limit"),
    ({"limits": {"messages_1m": -5}}, "number >= 0"),
    ({"limits": {"messages_1m": "lots"}}, "number >= 0"),
    ({"users": {"a@b": {"plan": "gold"}}}, "not defined"),
    ({"plans": {"p": {"recipients_7d": 1}}}, "unknown limit"),
    ({"windows": {"w": {"measure": "bytes", "length": 60, "bucket": 5}}}, "measure"),
    ({"tiers": {}}, "unknown settings"),
])
def test_config_errors_name_the_setting(cfg: dict[str, object], words: str) -> None:
    with pytest.raises(ConfigError, match=words):
        vparams(cfg)


def test_other_detectors_config() -> None:
    core = build_core_params(Settings(
        detectors={"password_spray": {"rules": [{"name": "slow", "max_distinct": 10,
                                                 "window_seconds": 3600}]},
                   "auth_failures_ip": {"rules": [{"name": "b", "max_failures": 3,
                                                   "window": {"length": 60, "bucket": 5}}]},
                   "shared_credential": {"ignore_networks": ["10.0.0.0/8"]},
                   "correlation": {"login_detectors": ["impossible_travel"]},
                   "dormant_account": {"enabled": False}},
        policy={"allow_networks": ["192.0.2.0/24"]}))
    by = {d.spec.name: d.params for d in core.detectors}
    assert "dormant_account" not in by
    assert by["password_spray"].rules[0].max_distinct == 10
    assert by["auth_failures_ip"].rules[0].window.length == 60
    assert [str(n) for n in by["shared_credential"].ignore_networks] == ["192.0.2.0/24",
                                                                         "10.0.0.0/8"]
    assert [str(n) for n in by["impossible_travel"].ignore_networks] == ["192.0.2.0/24"]
    assert by["correlation"].login_detectors == ("impossible_travel",)
    with pytest.raises(ConfigError, match="rules"):
        build_core_params(Settings(detectors={"password_spray": {"rules": [{"bad": 1}]}}))


def test_learned_bulk_settings_are_read_and_checked() -> None:
    from relayguard.foundation.core_params import _volume_params

    assert _volume_params({"bulk_days": 0}).bulk_days == 0  # off
    assert _volume_params({"bulk_headroom": 2}).bulk_headroom == 2.0
    for bad in ({"bulk_days": -1}, {"bulk_days": 1.5}, {"bulk_min_days": 0},
                {"bulk_headroom": "x"}, {"bulk_headroom": True}):
        with pytest.raises(ConfigError, match=r"detectors\.volume\.bulk_"):
            _volume_params(bad)


def test_peaks_kept_are_bounded_and_only_near_the_limit() -> None:
    p = volume.Params()
    peaks: tuple[tuple[int, int], ...] = ()
    for day in range(30):
        peaks = volume._note_peak(p, peaks, 10, 3, day)  # far below 10 / 1.5: nothing kept
    assert peaks == ()
    for day in range(30):
        peaks = volume._note_peak(p, peaks, 10, 9, day)
    assert len(peaks) <= p.bulk_days + 1 and peaks[-1] == (29, 9)
    assert volume.learned_limit(p, peaks, 10, 30) == 13  # 1.5 x 9
    assert volume.learned_limit(volume.Params(bulk_days=0), peaks, 10, 30) == 10
