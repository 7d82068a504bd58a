"""Delivery outcomes are events of the user who sent the message: keyed by user, never by IP,
stepped through every user detector, and stored like any other event."""

from __future__ import annotations

import time

from relayguard.agents.metrics import Metrics
from relayguard.agents.pipeline import Origin, Pipeline, user_key
from relayguard.foundation.core_params import build_core_params
from relayguard.foundation.settings import Settings
from relayguard.roof.replay import Replayer
from relayguard.stream import codec, engine
from relayguard.stream.detectors import registry
from relayguard.stream.records import Alert, DeliveryEvent, LockCommand

NOW = time.time() - 60
BOUNCE = DeliveryEvent("d1", NOW, "relay-1", "alice@example.com", "4XkQ1z", "bounced",
                       "example.net", "5.1.1", "postfix-log")


class Outputs:
    def __init__(self) -> None:
        self.by_ip_records: list[tuple[str, bytes]] = []
        self.dlq: list[dict[str, object]] = []

    async def dead_letter(self, record: dict[str, object]) -> None:
        self.dlq.append(record)

    async def lock_command(self, command: LockCommand) -> None:
        pass

    async def alert(self, alert: Alert) -> None:
        pass

    async def reroute(self, key: str, raw: bytes) -> None:
        raise AssertionError(f"rerouted to {key}")

    async def by_ip(self, key: str, raw: bytes) -> None:
        self.by_ip_records.append((key, raw))


def test_delivery_is_keyed_by_user_and_never_needs_ip_state() -> None:
    assert user_key(BOUNCE) == "alice@example.com"
    assert not registry.needs_ip_state(BOUNCE)


async def test_worker_steps_a_delivery_under_its_user() -> None:
    out, metrics = Outputs(), Metrics()
    pipe = Pipeline(build_core_params(Settings()), None, out, metrics)
    table: dict[str, bytes] = {}
    await pipe.ingest(codec.encode_event(BOUNCE), Origin("relayguard.events", 0, 0,
                                                          b"alice@example.com"), table)
    assert out.dlq == [] and out.by_ip_records == []
    assert list(table) == ["alice@example.com"]
    assert metrics.value("events_total", outcome="processed") == 1


def test_engine_and_replay_step_every_user_detector_for_a_delivery() -> None:
    params = build_core_params(Settings())
    res = engine.step(params, "user", BOUNCE.user, None, BOUNCE)
    assert res.outcome == "processed"
    names = {n for n, _ in res.state.detectors}
    assert names == {d.spec.name for d in params.for_kind("user")}
    replayer = Replayer(params)
    replayer.feed(BOUNCE)
    assert list(replayer.states) == [("user", "alice@example.com")]
