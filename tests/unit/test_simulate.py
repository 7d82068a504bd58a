"""`relayguard simulate`: a seeded fleet is byte-identical run to run, carries every attack kind
with its label, and writes events that follow the JSON Schemas, in time order."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import orjson
import pytest
from jsonschema import Draft202012Validator

from relayguard import schemas
from relayguard.foundation.geoip import GeoLocator
from relayguard.roof.simulate import world
from relayguard.roof.simulate.attacks import GUESSING, KINDS
from relayguard.roof.simulate.behaviour import UserTraffic
from relayguard.roof.simulate.fleet import DAY, SimConfig, build_fleet
from relayguard.roof.simulate.writer import CITY_DB, EVENTS, LABELS, OPERATOR, generate

SMALL = SimConfig(seed=7, users=120, orgs=25, warmup_days=3, scored_days=2, attacks=12)


@pytest.fixture(scope="module")
def small_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("sim")
    generate(SMALL, out)
    return out


def test_same_seed_gives_byte_identical_output(small_run: Path, tmp_path: Path) -> None:
    generate(SMALL, tmp_path / "again")
    for name in (EVENTS, LABELS, OPERATOR):
        assert (tmp_path / "again" / name).read_bytes() == (small_run / name).read_bytes(), name
    other = SimConfig(**{**SMALL.__dict__, "seed": 8})
    generate(other, tmp_path / "other")
    assert (tmp_path / "other" / EVENTS).read_bytes() != (small_run / EVENTS).read_bytes()


def _events(run: Path) -> list[dict[str, object]]:
    return [orjson.loads(line) for line in (run / EVENTS).read_bytes().splitlines()]


def test_every_attack_kind_is_injected_and_labelled(small_run: Path) -> None:
    labels = orjson.loads((small_run / LABELS).read_bytes())
    attacks = labels["attacks"]
    assert sorted(a["kind"] for a in attacks) == sorted(KINDS)
    by_ip: Counter[str] = Counter()
    by_id = {}
    for e in _events(small_run):
        by_ip[str(e.get("client_ip"))] += 1
        by_id[e["event_id"]] = e
    for a in attacks:
        assert a["attacker_ips"], a
        assert all(by_ip[ip] > 0 for ip in a["attacker_ips"]), a
        assert labels["scored_start"] <= a["first_malicious_at"] < labels["end"], a
        assert a["first_malicious_at"] <= a["last_malicious_at"] < labels["end"]
        if a["kind"] in GUESSING:
            assert a["reference"] == "first_guess" and a["first_guess_at"] is not None
            assert a["first_send_at"] is None
        else:
            assert a["reference"] == "first_send" and a["first_send_at"] is not None
            assert a["first_send_at"] >= a["first_malicious_at"]
            assert len(a["victims"]) == 1
        for v in a["victims"]:
            assert labels["users"][v]["victim"] is True
        if a["kind"].startswith("dormant"):
            assert "dormant" in labels["users"][a["victims"][0]]["tags"]
        if a["kind"].startswith("spray"):
            assert len(a["targets"]) >= 50 and a["victims"] == []
    # Victims' labels and benign labels never overlap.
    victims = {v for a in attacks for v in a["victims"]}
    assert victims == {u for u, info in labels["users"].items() if info["victim"]}


def test_plaintext_attack_has_no_tls_and_dormant_victim_was_silent(small_run: Path) -> None:
    labels = orjson.loads((small_run / LABELS).read_bytes())
    events = _events(small_run)
    plain = next(a for a in labels["attacks"] if a["kind"] == "plaintext_auth")
    logins = [e for e in events
              if e["type"] == "login" and e["client_ip"] in plain["attacker_ips"]]
    assert logins and all(e["tls_protocol"] is None for e in logins)
    dormant = next(a for a in labels["attacks"] if a["kind"] == "dormant_abroad")
    victim = dormant["victims"][0]
    attackers = {ip for a in labels["attacks"] for ip in a["attacker_ips"]}  # sprays hit it too
    seen = [e for e in events if e["user"] == victim and e["type"] != "delivery"
            and e["client_ip"] not in attackers]
    # Only the months-old preamble: nothing within 90 days before the attack.
    assert seen, "a dormant account needs a past"
    assert all(str(e["event_time"]) < labels["start_iso"] for e in seen)


def test_events_follow_the_schemas_and_time_order(small_run: Path) -> None:
    validators = {"login": Draft202012Validator(schemas.load("login-event")),
                  "send": Draft202012Validator(schemas.load("send-event")),
                  "delivery": Draft202012Validator(schemas.load("delivery-event"))}
    events = _events(small_run)
    assert len(events) > 5000
    for e in events[::37] + events[-500:]:
        validators[str(e["type"])].validate(e)
    times = [str(e["event_time"]) for e in events]
    assert times == sorted(times)  # same-length RFC 3339 strings sort as times do
    assert len({e["event_id"] for e in events}) == len(events)


def test_recipient_domains_senders_and_bounces_tell_spam_from_honest_mail(
        small_run: Path) -> None:
    events: list[dict[str, Any]] = _events(small_run)
    labels = orjson.loads((small_run / LABELS).read_bytes())
    attackers = {ip for a in labels["attacks"] for ip in a["attacker_ips"]}
    sends = [e for e in events if e["type"] == "send"]
    spam = [e for e in sends if e["client_ip"] in attackers]
    honest = [e for e in sends if e["client_ip"] not in attackers]
    assert spam and honest
    for e in sends:  # every send carries the RCPT summary, consistent with its count
        domains = e["recipient_domains"]
        count, rcpts = e["recipient_domain_count"], e["recipient_count"]
        assert 1 <= len(domains) <= 32 and len(set(domains)) == len(domains)
        assert len(domains) <= count <= max(rcpts, 1)
    own = sum(e["sender"] == e["user"] for e in honest) / len(honest)
    bulk = {u for u, d in labels["users"].items() if d["size"] in ("newsletter", "transactional")}
    people = [e for e in honest if e["user"] not in bulk]
    assert sum(e["sender"] == e["user"] for e in people) / len(people) > 0.9
    assert own < 1.0  # bulk senders use VERP / noreply addresses
    queue = {e["queue_id"]: e["client_ip"] in attackers for e in sends}
    failed = [e for e in events if e["type"] == "delivery"]
    assert failed and all(e["queue_id"] in queue for e in failed)
    spam_rcpts = sum(e["recipient_count"] for e in spam)
    honest_rcpts = sum(e["recipient_count"] for e in honest)
    spam_rate = sum(queue[e["queue_id"]] for e in failed) / spam_rcpts
    honest_rate = sum(not queue[e["queue_id"]] for e in failed) / honest_rcpts
    assert spam_rate > 0.1 > 0.03 > honest_rate  # scraped lists bounce, address books rarely


def test_city_database_locates_the_synthetic_networks(small_run: Path) -> None:
    import random

    rng = random.Random(1)
    geo = GeoLocator(small_run / CITY_DB)
    berlin = geo.locate(world.fixed_ip(rng, world.CITY_BY_NAME["Berlin"]))
    assert berlin is not None and berlin.country == "DE" and berlin.city == "Berlin"
    phone = geo.locate(world.mobile_ip(rng, "GB", hub=0))
    assert phone is not None and phone.country == "GB" and phone.accuracy_radius_km == 100
    rough = geo.locate(world.mobile_ip(rng, "US", hub=3))
    assert rough is not None and rough.country == "US" and rough.accuracy_radius_km == 500
    vps = geo.locate(world.datacentre_ip(rng, "Singapore"))
    assert vps is not None and vps.country == "SG"
    assert geo.locate("192.0.2.1") is None  # only the simulator's own ranges are in it
    geo.close()


def test_default_fleet_has_every_honest_habit() -> None:
    fleet = build_fleet(SimConfig())
    tags = Counter(t for u in fleet.users for t in u.tags)
    for habit in ("stale_phone", "new_phone", "mobile_hopper", "vpn", "traveller",
                  "traveller_abroad", "mailing_list", "plaintext_client", "vacation",
                  "long_silence", "dormant", "newsletter", "transactional"):
        assert tags[habit] > 0, habit
    assert len(fleet.users) == 1600 and len({u.name for u in fleet.users}) == 1600
    sizes = Counter(len([u for u in fleet.users if u.org is o]) for o in fleet.orgs)
    assert max(sizes) >= 20 and sizes[1] > 0  # organisations of very different sizes


def test_a_traveller_lands_no_sooner_than_an_airliner_allows() -> None:
    cfg = SimConfig()
    fleet = build_fleet(cfg)
    travellers = [u for u in fleet.users if "traveller_abroad" in u.tags][:5]
    assert travellers
    for u in travellers:
        trip = u.trips[0]
        events = list(UserTraffic(u, cfg).events())
        at_hotel = [t for t, _, e in events if e.get("client_ip") == trip.hotel_ip]
        assert at_hotel, "the outbox flushes from the hotel on landing"
        landed = at_hotel[0]
        # The last login from a fixed line at home (not the roaming phone) before landing.
        home = [t for t, _, e in events if t < landed and e.get("client_ip") in
                (u.home_ip, u.org.office_ip)]
        if home:
            gap_h = (landed - home[-1]) / 3600
            assert gap_h >= world.flight_hours(u.org.city, trip.dest), (u.name, gap_h)
        flush = [t for t in at_hotel if t - landed < 900]
        assert len(flush) >= 3  # the queued outbox: several messages at once
    assert SMALL.end - SMALL.start == SMALL.days * DAY


def test_password_hashes_tell_a_stale_phone_from_guessing() -> None:
    cfg = SimConfig(password_hashes=True)
    fleet = build_fleet(cfg)
    stale = next(u for u in fleet.users if u.stale_phone)
    failures = [e for _, _, e in UserTraffic(stale, cfg).events()
                if e["type"] == "login" and not e["success"]]
    hashes = Counter(e["password_hash"] for e in failures)
    # The old password retried all day is one hash; typos and setup tries are others.
    assert hashes.most_common(1)[0][1] >= 10
    assert all(str(h).startswith("hmac-sha256:") for h in hashes)
    without = next(u for u in build_fleet(SimConfig()).users if u.name == stale.name)
    assert all("password_hash" not in e for _, _, e in UserTraffic(without, SimConfig()).events())


def test_weekends_follow_the_calendar_whatever_the_start_day() -> None:
    from datetime import UTC, datetime

    wednesday = SimConfig(start=datetime(2026, 11, 4, tzinfo=UTC).timestamp())
    assert [wednesday.weekday(d) for d in range(6)] == [2, 3, 4, 5, 6, 0]
    fleet = build_fleet(wednesday)
    office = next(u for u in fleet.users if u.size == "heavy" and not u.trips
                  and u.active_on(1) and 1 not in u.org.holidays)
    per_day = Counter(int((t - wednesday.start) // DAY) for t, _, _ in
                      UserTraffic(office, wednesday).events() if t >= wednesday.start)
    assert per_day[3] < per_day[1]  # Saturday is quieter than Thursday for a busy user
