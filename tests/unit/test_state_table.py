"""The pieces around the worker's state tables that need no broker: changelog keys that never
fail to decode, the local store kept only after a clean stop, and what /ready answers when."""

from __future__ import annotations

import asyncio
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from faust.serializers import codecs
from hypothesis import given
from hypothesis import strategies as st

from relayguard.agents.metrics import Metrics
from relayguard.agents.readiness import Readiness
from relayguard.agents.state_codec import UndecodableState
from relayguard.agents.state_table import (
    LOGGED_PER_TABLE,
    UNREADABLE_KEY_PREFIX,
    StateKeyCodec,
    UndecodableReporter,
)
from relayguard.agents.worker_main import CLEAN_STOP_MARK, mark_clean_stop, prepare_local_store


def test_keys_are_written_exactly_as_faust_json_writes_them() -> None:
    faust_json = codecs.get_codec("json")
    for key in ("alice@example.com", "jörg@example.de", 'quote"d', "192.0.2.1"):
        assert StateKeyCodec().dumps(key) == faust_json.dumps(key)
        assert StateKeyCodec().loads(faust_json.dumps(key)) == key


@given(st.binary(max_size=100))
def test_any_key_bytes_decode_to_a_string(data: bytes) -> None:
    key = StateKeyCodec().loads(data)
    assert isinstance(key, str)


def test_a_non_json_key_cannot_pass_for_a_real_subject() -> None:
    assert StateKeyCodec().loads(b"alice").startswith(UNREADABLE_KEY_PREFIX)
    assert StateKeyCodec().loads(b"42").startswith(UNREADABLE_KEY_PREFIX)


def test_reporter_counts_every_value_and_logs_a_bounded_number(caplog: Any) -> None:
    metrics = Metrics()
    report = UndecodableReporter(metrics)
    for i in range(LOGGED_PER_TABLE + 30):
        report("user-state", f"k{i}", UndecodableState("x"))
    report.for_kinds({"ip": "ip-state"})("ip", "192.0.2.1", UndecodableState("y"))
    assert metrics.value("state_undecodable_total", table="user-state") == LOGGED_PER_TABLE + 30
    assert metrics.value("state_undecodable_total", table="ip-state") == 1
    assert len(caplog.records) == LOGGED_PER_TABLE + 2  # + "only counting" + the ip one
    assert "'k0'" in caplog.text and "'k49'" not in caplog.text


def _stores(tabledir: Path) -> list[Path]:
    paths = [tabledir / "user-state-0.db", tabledir / "ip-state-1.db"]
    for p in paths:
        p.mkdir(parents=True)
        (p / "CURRENT").write_text("x")
    return paths


def test_store_kept_after_a_clean_stop(tmp_path: Path) -> None:
    stores = _stores(tmp_path)
    mark_clean_stop(tmp_path)
    prepare_local_store(tmp_path)
    assert all(p.exists() for p in stores)
    assert not (tmp_path / CLEAN_STOP_MARK).exists()  # a crash from now on leaves no mark


def test_store_discarded_after_an_unclean_stop(tmp_path: Path, caplog: Any) -> None:
    stores = _stores(tmp_path)
    prepare_local_store(tmp_path)
    assert not any(p.exists() for p in stores)
    assert "did not stop cleanly" in caplog.text


def test_no_store_yet_is_fine(tmp_path: Path) -> None:
    prepare_local_store(tmp_path / "missing")
    assert not (tmp_path / "missing").exists()


class _Signal:
    def __init__(self) -> None:
        self.receivers: list[Any] = []

    def connect(self, fun: Any) -> None:
        self.receivers.append(fun)

    def send(self) -> None:
        for fun in self.receivers:
            fun(None, signal=self)


def _app() -> Any:
    recovery = SimpleNamespace(completed=asyncio.Event(), in_recovery=False)
    return SimpleNamespace(
        on_partitions_revoked=_Signal(), on_rebalance_complete=_Signal(), rebalancing=False,
        tables=SimpleNamespace(recovery=recovery),
        assignor=SimpleNamespace(assigned_actives=lambda: {("t", 0), ("t", 1)}))


def test_ready_only_after_assignment_and_recovery() -> None:
    app = _app()
    ready = Readiness(app)
    assert ready.status() == (False, "waiting for the group's partition assignment")
    app.on_partitions_revoked.send()
    app.rebalancing = True
    app.tables.recovery.in_recovery = True
    assert ready.status() == (False, "recovering tables from their changelogs")
    app.rebalancing = False
    app.on_rebalance_complete.send()
    app.tables.recovery.in_recovery = False
    assert not ready.status()[0]  # recovery done, streams not yet resumed
    app.tables.recovery.completed.set()
    assert ready.status() == (True, "ready: 2 partitions assigned")
    app.on_partitions_revoked.send()  # a later rebalance: not ready until it settles
    assert ready.status() == (False, "rebalancing")
    app.on_rebalance_complete.send()
    assert ready.status()[0]
