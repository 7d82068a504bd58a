"""The worker's state tables: Faust tables of `state_codec` bytes that never take in a value
they cannot decode.

Anyone who can write to a changelog topic can plant a value there (an old worker's pickle, a
crafted payload, garbage). Recovery applies the changelog to the local store; this table checks
each value first and turns an undecodable one into a deletion, so the key starts with empty
state, the value is counted and reported, and nothing in it is ever executed. Values read
later go through `state_codec.DecodedCache.load`, which refuses the same way.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any

import faust
from faust.serializers import codecs

from relayguard.agents import faust_offsets, state_codec
from relayguard.agents.metrics import Metrics

log = logging.getLogger("relayguard.worker")
LOGGED_PER_TABLE = 20  # then only counted: a flood of planted values must not flood the log


class UndecodableReporter:
    """Counts undecodable table values per table and logs the first few with their keys."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics
        self.logged: dict[str, int] = {}

    def __call__(self, table: str, key: str, exc: state_codec.UndecodableState) -> None:
        self.metrics.inc("state_undecodable_total", table=table)
        n = self.logged.get(table, 0)
        self.logged[table] = n + 1
        if n < LOGGED_PER_TABLE:
            log.error("%s: value for key %r is not a state this worker can read (%s); dropped, "
                      "the key starts with empty state", table, key[:200], exc)
        elif n == LOGGED_PER_TABLE:
            log.error("%s: more undecodable values; only counting them from now on "
                      "(relayguard_worker_state_undecodable_total)", table)

    def for_kinds(self, tables: dict[str, str]) -> Callable[[str, str, Any], None]:
        """A `DecodedCache` callback: subject kind -> table name."""
        return lambda kind, key, exc: self(tables.get(kind, kind), key, exc)


def _key_text(raw: object) -> str:
    if isinstance(raw, bytes):
        return raw.decode("utf-8", "replace")
    return repr(raw)


UNREADABLE_KEY_PREFIX = "\ufffdunreadable-key:"


class StateKeyCodec(codecs.Codec):
    """Changelog keys: written exactly as Faust's json codec writes them (existing changelogs
    stay valid), read without ever failing. Faust's own decoder raises on a key that is not
    JSON, and recovery then never gets past that record: the worker never becomes ready. Such
    a key becomes a name no real subject has, and its value is checked like any other."""

    _json = codecs.get_codec("json")

    def _dumps(self, obj: Any) -> bytes:
        return self._json.dumps(obj)

    def _loads(self, data: bytes) -> Any:
        try:
            key = self._json.loads(data)
        except Exception:  # whatever the JSON parser dislikes
            key = None
        if isinstance(key, str):
            return key
        return UNREADABLE_KEY_PREFIX + repr(bytes(data[:200]))


KEY_CODEC = "relayguard-state-key"
codecs.register(KEY_CODEC, StateKeyCodec())


class StateTable(faust.Table[str, bytes]):
    """`faust.Table` whose changelog recovery drops values `state_codec` cannot decode, and
    whose keys never fail to decode."""

    reporter: Callable[[str, str, state_codec.UndecodableState], None] | None = None
    metrics: Metrics | None = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Faust derives the key codec from key_type (str -> json) and takes no override.
        self.key_serializer = KEY_CODEC

    def send_changelog(self, partition: int | None, key: Any, value: Any,
                       key_serializer: Any = None, value_serializer: Any = None) -> Any:
        fut = super().send_changelog(partition, key, value, key_serializer, value_serializer)
        faust_offsets.track_write(self.app, fut)  # no commit passes an unconfirmed write
        return fut

    def apply_changelog_batch(self, batch: Iterable[Any]) -> None:
        events = list(batch)
        for event in events:
            msg = event.message
            if msg.value is None:
                continue
            try:
                state_codec.loads(msg.value)
            except state_codec.UndecodableState as exc:
                if self.reporter is not None:
                    self.reporter(self.name, _key_text(msg.key), exc)
                msg.value = None  # applied as a deletion by the memory and RocksDB stores
                event.value = None
        super().apply_changelog_batch(events)
        if self.metrics is not None:
            self.metrics.inc("changelog_records_recovered_total", len(events), table=self.name)


def state_table(app: faust.App, name: str, reporter: UndecodableReporter,
                **kwargs: Any) -> StateTable:
    table = StateTable(app, name=name, default=None, beacon=app.tables.beacon, **kwargs)
    table.reporter = reporter
    table.metrics = reporter.metrics
    app.tables.add(table)
    return table
