"""The sending profile in the pure core: bounded hashed state whatever the traffic, VERP
senders as one, deliveries that are not failures ignored, and what earns departure points."""

from __future__ import annotations

import msgspec

from relayguard.agents import state_codec
from relayguard.stream.detectors import hashed_set
from relayguard.stream.detectors import sending_profile as sp
from relayguard.stream.engine import KeyState
from relayguard.stream.records import DeliveryEvent, LoginEvent, SendEvent

T0 = 1_796_000_000.0
DAY = 86400.0
USER = "alice@example.com"
PROFILE_BOUND = 1_400  # bytes of this detector's encoded state for a user who did everything


def send(i: int, t: float, domains: tuple[str, ...], sender: str = USER,
         ip: str = "198.51.100.20") -> SendEvent:
    return SendEvent(f"s{i}", t, "r1", USER, ip, sender, len(domains), 1000,
                     recipient_domains=domains, recipient_domain_count=len(domains))


def test_state_stays_bounded_whatever_the_traffic() -> None:
    p, s = sp.Params(), sp.initial_state()
    for i in range(2000):  # weeks of a bulk sender: new domains, senders, networks
        t = T0 + i * 400
        if i % 10 == 0:
            s, _ = sp.step(p, s, LoginEvent(f"l{i}", t, "r1", USER, f"10.{i % 250}.1.1", True))
        s, _ = sp.step(p, s, send(i, t + 1, tuple(f"d{i}-{j}.example" for j in range(32)),
                                  sender=f"box{i}@other{i}.example", ip=f"10.{i % 250}.1.1"))
        s, _ = sp.step(p, s, DeliveryEvent(f"d{i}", t + 5, "r1", USER, "Q", "bounced"))
    assert hashed_set.size(s.domains) == p.max_domains
    assert hashed_set.size(s.senders) == p.max_senders
    assert hashed_set.size(s.networks) == p.max_networks
    for w in (s.recipients, s.seen, s.new_domains, s.bounces, s.foreign, s.own_new):
        assert len(w) <= sp.WINDOW.bucket_count + 1
    state = KeyState(detectors=((sp.NAME, s),))
    assert state_codec.loads(state_codec.dumps(state)) == state  # stored like any state
    assert len(msgspec.msgpack.encode(msgspec.to_builtins(s))) < PROFILE_BOUND


def test_verp_and_subaddress_senders_are_one_sender() -> None:
    assert sp.canonical_sender("Bounce+x7f3@Shop.Example") == "bounce@shop.example"
    assert sp.canonical_sender("list=abc@lists.example") == "list@lists.example"
    assert sp.canonical_sender("") == ""


def _learned() -> sp.State:
    p, s = sp.Params(), sp.initial_state()
    for d in range(10):
        t = T0 + d * DAY
        s, _ = sp.step(p, s, LoginEvent(f"l{d}", t, "r1", USER, "198.51.100.20", True))
        for k in range(6):
            s, _ = sp.step(p, s, send(d * 10 + k, t + 60 * (k + 1),
                                      ("example.com", "partner.example")))
    return s


def test_departure_points_new_domains_bounces_and_senders() -> None:
    p, s = sp.Params(), _learned()
    t = T0 + 10 * DAY
    s, found = sp.step(p, s, send(900, t, ("example.com",)))
    assert found == []  # the usual domain: nothing
    s, found = sp.step(p, s, send(901, t + 10, ("n1.example", "n2.example", "n3.example",
                                                "n4.example")))
    assert [f.evidence["departure"] for f in found] == [1] and found[0].signal_only
    s, found = sp.step(p, s, DeliveryEvent("b1", t + 20, "r1", USER, "Q", "sent"))
    assert found == []  # a delivered message is not a failure
    s, found = sp.step(p, s, DeliveryEvent("b2", t + 21, "r1", USER, "Q", "bounced"))
    s, found = sp.step(p, s, DeliveryEvent("b3", t + 22, "r1", USER, "Q", "expired"))
    assert found[0].evidence["signals"]["points"] == {"new_domains": 1, "bounces": 1,
                                                      "senders": 0}
    s, found = sp.step(p, s, send(902, t + 30, ("example.com",), sender="ceo@elsewhere.test"))
    assert found[0].evidence["signals"]["foreign_senders"] == 1
    assert found[0].evidence["departure"] == 3
    assert not any(f.evidence.get("standalone") for f in found)


def test_a_new_users_first_week_is_not_judged_on_domains() -> None:
    p, s = sp.Params(), sp.initial_state()
    found_any = []
    for i in range(60):
        s, found = sp.step(p, s, send(i, T0 + i * 30, (f"new{i}.example",)))
        found_any += found
    assert found_any == []


def test_one_message_to_only_new_domains_is_a_signal_for_a_learned_user() -> None:
    p, s = sp.Params(), _learned()
    t = T0 + 10 * DAY
    s, found = sp.step(p, s, send(910, t, ("n1.example", "n2.example")))
    assert [f.evidence.get("signal") for f in found] == ["message_to_new_domains"]
    assert found[0].signal_only and found[0].evidence["message_new_domains"] == 2
    assert "departure" not in found[0].evidence  # not an hourly departure: no points of its own
    # one new domain among known ones, or a single new domain: no signal
    for i, domains in enumerate((("example.com", "n3.example"), ("n4.example",))):
        _, found = sp.step(p, _learned(), send(920 + i, t, domains))
        assert found == [], domains


def test_only_new_domains_is_no_signal_for_users_who_often_write_to_new_domains() -> None:
    p, s = sp.Params(), sp.initial_state()
    for d in range(10):  # ten days, every message to a new domain and a known one
        for k in range(6):
            s, _ = sp.step(p, s, send(d * 10 + k, T0 + d * DAY + 60 * k,
                                      ("example.com", f"new{d}-{k}.example")))
    assert s.novelty > 0.3
    _, found = sp.step(p, s, send(999, T0 + 10 * DAY, ("x1.example", "x2.example")))
    assert found == []  # 2 new of 2 is less than 3x what this user's novelty predicts


def test_users_with_little_mail_need_three_new_domains_in_one_message() -> None:
    p, s = sp.Params(), sp.initial_state()
    s, _ = sp.step(p, s, send(1, T0, ("example.com",)))  # known for a week, one message
    t = T0 + 8 * DAY
    _, found = sp.step(p, s, send(2, t, ("a.example", "b.example")))
    assert found == []
    _, found = sp.step(p, s, send(3, t, ("a.example", "b.example", "c.example")))
    assert [f.evidence.get("signal") for f in found] == ["message_to_new_domains"]
    assert found[0].evidence["learned"] is False
