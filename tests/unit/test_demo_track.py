"""The demo's measurements: time to lock and to acks per attack, acks that overtake the lock."""

from __future__ import annotations

from relayguard.roof.demo_track import Attack, Tracker
from relayguard.roof.demo_view import DemoView
from relayguard.stream.records import LockAck, LockCommand

CMD = LockCommand("c1", "frank@example.com", "user", "lock", "spam", "volume", {}, 1.0, None,
                  "worker", 1)


def _ack(relay: str, at: float, command_id: str = "c1") -> LockAck:
    return LockAck(relay, command_id, "frank@example.com", "user", "lock", 1, at)


def test_times_from_first_event_to_lock_and_acks() -> None:
    t = Tracker(("r1", "r2"))
    t.add_attack(Attack("spam", "frank@example.com", "spam", "volume", 100.0))
    t.on_ack(_ack("r2", 102.5))  # overtook the lock record
    assert not t.all_acked()
    t.on_lock(CMD, 101.0)
    t.on_ack(_ack("r1", 101.75))
    t.on_ack(_ack("r1", 109.0))  # a re-ack after a relay restart keeps the first
    t.on_ack(_ack("r1", 103.0, "other"))  # another command's ack is not this lock's
    a = t.attacks["frank@example.com"]
    assert a.hit and (a.to_lock(), a.to_first_ack(), a.to_last_ack()) == (1.0, 1.75, 2.5)
    assert t.all_acked() and t.locks == 1 and t.acks == 4


def test_a_lock_by_another_detector_is_a_miss_and_the_table_says_so() -> None:
    t = Tracker(("r1",))
    t.add_attack(Attack("travel", "frank@example.com", "travel", "impossible_travel", 100.0))
    t.on_lock(CMD, 101.0)
    assert not t.attacks["frank@example.com"].hit
    view = DemoView(t, live=False)
    with view.console.capture() as cap:
        view.console.print(view.attack_table())
    assert "MISSED" in cap.get() and "0/1 acked" in cap.get()
