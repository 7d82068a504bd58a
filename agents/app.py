"""The Faust app: topics, tables and thin agents around `agents.pipeline.Pipeline`.

Agents decode raw bytes themselves (a decode error thrown into a Faust agent stops it quietly,
faust #175), run with concurrency 1 (tables need it; faust #606), and stay at-least-once: effects
on state are exactly-once by source position (each key's state keeps the last offset applied per
events-topic partition; a redelivery has no effect), skipped offsets are noticed and re-read
(agents/offset_guard.py), relay resends are dropped by event id, and command ids are
deterministic.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import faust
import orjson
from faust.types import TP

from relayguard.agents import (
    ack_latency,
    faust_offsets,
    http_api,
    lag,
    slack_worker,
    status_api,
)
from relayguard.agents.control import (
    Tables,
    due_for_expiry,
    handle_control,
    sync_record,
    tick_record,
)
from relayguard.agents.kafka_ranges import KafkaRangeReader
from relayguard.agents.metrics import CONTENT_TYPE, Metrics
from relayguard.agents.offset_guard import Handler, OffsetGuard, Record
from relayguard.agents.pipeline import Origin, Pipeline
from relayguard.agents.readiness import Readiness
from relayguard.agents.state_table import UndecodableReporter, state_table
from relayguard.foundation import audit, signing
from relayguard.foundation.geoip import GeoLocator
from relayguard.foundation.kafka_clients import faust_credentials
from relayguard.foundation.settings import Settings
from relayguard.stream import codec, engine
from relayguard.stream.records import Alert, LockCommand

log = logging.getLogger("relayguard.worker")
# How often an idle worker checks its partitions' tails for records Faust skipped
# (agents/offset_guard.py); a gap is healed after two idle intervals.
GAP_SWEEP_SECONDS = 2.5


class KafkaOutputs:
    """Where the pipeline's results go: Faust topics, raw bytes, explicit keys."""

    def __init__(self, app: faust.App, settings: Settings, signer: signing.Signer) -> None:
        self.signer = signer  # every lock command and control record leaves signed
        t = settings.topics
        raw: dict[str, Any] = {"key_type": bytes, "value_type": bytes,
                               "key_serializer": "raw", "value_serializer": "raw"}
        self.events = app.topic(t.events, partitions=settings.partitions, **raw)
        self.by_ip_topic = app.topic(t.events_by_ip, partitions=settings.partitions, **raw)
        self.dlq = app.topic(t.dlq, **raw)
        self.locks = app.topic(t.locks, **raw)
        self.alerts = app.topic(t.alerts, **raw)
        self.control = app.topic(t.control, partitions=settings.partitions, **raw)
        self.audit = app.topic(t.audit, **raw)

    async def dead_letter(self, record: dict[str, object]) -> None:
        await self.dlq.send(value=codec.dumps(record))

    async def lock_command(self, command: LockCommand) -> None:
        value = codec.encode_lock_command(command, self.signer)
        sent = await self.locks.send(key=codec.lock_key(command.subject_kind, command.subject),
                                     value=value)
        await sent  # delivered before the state that records it is written (pipeline._step)
        record = audit.audit_record(command, "worker", time.time())  # expiry unlocks too
        await self.audit.send(key=audit.key(record), value=audit.encode(record))

    async def alert(self, alert: Alert) -> None:
        await self.alerts.send(key=alert.subject.encode(),
                               value=codec.dumps(codec.alert_to_dict(alert)))

    async def send_control(self, record: tuple[bytes, bytes]) -> None:
        await self.control.send(key=record[0], value=record[1])

    async def reroute(self, key: str, raw: bytes) -> None:
        await self.events.send(key=key.encode(), value=raw)

    async def by_ip(self, key: str, raw: bytes) -> None:
        await self.by_ip_topic.send(key=key.encode(), value=raw)


STORES = {"rocksdb": "rocksdb://", "memory": "memory://"}
TABLE_NAMES = {"user": "user-state", "ip": "ip-state"}


def create_app(settings: Settings, params: engine.CoreParams,
               locator: GeoLocator | None) -> faust.App:
    # No key, no worker: a ConfigError here names the settings and how to make keys.
    signer = signing.signer_from_settings(settings)
    keyring = signing.keyring_from_settings(settings)
    skew = settings.signing_max_skew_seconds
    log.info("signing with %s; obeying commands signed by %s", signer.key_id,
             ", ".join(sorted(keyring.keys)))
    app = faust.App(
        settings.app_id,
        broker=[f"kafka://{h.strip()}" for h in settings.bootstrap_servers.split(",")],
        broker_credentials=faust_credentials(settings.kafka),
        # RocksDB (through rocksdict) keeps tables on disk under datadir: a restart replays only
        # the changelog after the offsets the store saved; memory rebuilds from all of it.
        store=STORES[settings.table_store],
        table_standby_replicas=settings.table_standby_replicas,
        # Faust's built-in views show raw per-user state (/table), cluster layout (/router)
        # and internals (/graph, /stats, /assignment) to anyone: none of them are served.
        web_tables_enabled=False,
        web_router_enabled=False,
        web_graph_enabled=False,
        web_stats_enabled=False,
        web_metrics_enabled=False,
        topic_partitions=settings.partitions,
        topic_replication_factor=settings.replication_factor,
        datadir=str(settings.data_dir / "faust"),
        web_host=settings.web_host,
        web_port=settings.web_port,
        web_bind=settings.web_host,
        producer_acks=-1,
        consumer_auto_offset_reset="earliest",
        stream_wait_empty=False,
        broker_commit_every=500,
        # Batch changelog and output records (Faust's default: one per send, 16 KiB batches:
        # about seven ~2 KB state records); sized by bench/worker_bench.py, see BENCHMARKS.md.
        producer_linger=settings.worker_producer_linger_seconds,
        producer_max_batch_size=settings.worker_producer_batch_bytes,
        broker_max_poll_records=1000,
        # A dead worker's partitions move after the session timeout (Kafka's default 45 s);
        # heartbeats at a third of it or less, as Kafka's docs advise.
        broker_session_timeout=settings.session_timeout_seconds,
        broker_heartbeat_interval=settings.heartbeat_interval_seconds,
    )
    faust_offsets.install(app)  # before app.topic(): see agents/faust_offsets.py
    metrics = Metrics()
    outputs = KafkaOutputs(app, settings, signer)
    pipeline = Pipeline(params, locator, outputs, metrics, settings.partitions)
    pipeline.trust_cache = True  # every table write goes through pipeline.store (see there)
    # Values are bytes of our own data-only codec (agents/state_codec.py): Faust's own value
    # codecs handed back dicts after changelog recovery. Faust picks table serializers from
    # key_type/value_type, not from a schema. Undecodable values are dropped and counted, at
    # recovery (StateTable) and on every read (DecodedCache).
    undecodable = UndecodableReporter(metrics)
    pipeline.decoded.on_undecodable = undecodable.for_kinds(TABLE_NAMES)
    table_opts: dict[str, Any] = {"partitions": settings.partitions, "key_type": str,
                                  "value_type": bytes}
    users = state_table(app, TABLE_NAMES["user"], undecodable, **table_opts)
    ips = state_table(app, TABLE_NAMES["ip"], undecodable, **table_opts)

    reader = KafkaRangeReader(settings.bootstrap_servers, settings.app_id)

    async def refetch(topic: str, partition: int, offset: int) -> None:
        await app.consumer.seek(TP(topic, partition), offset)

    guard = OffsetGuard(reader, metrics, lambda: int(app.consumer_generation_id),
                        lambda t, p, offs: faust_offsets.mark_processed(app, t, p, offs),
                        refetch)

    async def on_user_record(rec: Record) -> None:
        pipeline.new_generation(int(app.consumer_generation_id))
        try:
            await pipeline.ingest(rec.value, Origin(rec.topic, rec.partition, rec.offset,
                                                    rec.key), users)
        except Exception:  # never let one record stop the agent
            log.exception("unexpected error on %s[%d]@%d; record skipped",
                          rec.topic, rec.partition, rec.offset)

    async def on_ip_record(rec: Record) -> None:
        pipeline.new_generation(int(app.consumer_generation_id))
        try:
            await pipeline.ingest_by_ip(rec.value, ips)
        except Exception:
            log.exception("unexpected error on by-ip record %s[%d]@%d; skipped",
                          rec.topic, rec.partition, rec.offset)

    async def guarded(stream: Any, handle: Any) -> None:
        async for ev in stream.events():
            msg = ev.message
            rec = Record(msg.topic, msg.partition, msg.offset, msg.key, ev.value)
            async with guard.lock:
                # Cancelled half-way (a graceful stop), the record must not count as acked.
                faust_offsets.begin(app, rec.topic, rec.partition, rec.offset)
                try:
                    await guard.before(rec.topic, rec.partition, rec.offset, handle)
                except Exception:
                    log.exception("offset gap check failed at %s[%d]@%d", rec.topic,
                                  rec.partition, rec.offset)
                await handle(rec)
                guard.after(rec.topic, rec.partition, rec.offset)
                faust_offsets.finish(app, rec.topic, rec.partition, rec.offset)

    @app.agent(outputs.events, concurrency=1)
    async def ingest(stream: Any) -> None:
        await guarded(stream, on_user_record)

    @app.agent(outputs.by_ip_topic, concurrency=1)
    async def ingest_by_ip(stream: Any) -> None:
        await guarded(stream, on_ip_record)

    tables: Tables = {"user": users, "ip": ips}
    guarded_topics: dict[str, Handler] = {settings.topics.events: on_user_record,
                      settings.topics.events_by_ip: on_ip_record}

    @app.timer(interval=GAP_SWEEP_SECONDS)  # type: ignore[untyped-decorator]
    async def sweep_tail_gaps() -> None:
        if not app.flow_control.is_active() or app.rebalancing:
            return
        assigned = sorted((tp.topic, tp.partition) for tp in app.consumer.assignment()
                          if tp.topic in guarded_topics)
        try:
            await guard.sweep(assigned, guarded_topics, GAP_SWEEP_SECONDS * 2)
        except Exception as exc:  # Kafka trouble: the next sweep tries again
            log.warning("offset gap sweep failed: %s", exc)

    @app.agent(outputs.locks, concurrency=1)
    async def follow_locks(stream: Any) -> None:
        """Commands others issued (operators, CLI) reach the partition owning the subject.
        Only signed, in-range commands: a forged unlock must not clear the worker's state."""
        async for ev in stream.events():
            if ev.value is None:  # tombstone
                continue
            try:
                command = codec.decode_signed_lock_command(ev.value, keyring, time.time(), skew)
            except codec.Rejected as exc:
                metrics.inc("signed_records_refused_total", source="locks", reason=exc.reason)
                log.error("REFUSED record on %s, not obeyed: %s", settings.topics.locks, exc)
                continue
            if command.issuer != params.policy.issuer:
                await outputs.send_control(sync_record(orjson.loads(ev.value), signer))

    @app.agent(outputs.control, concurrency=1)
    async def control(stream: Any) -> None:
        async for ev in stream.events():
            try:
                await handle_control(pipeline, ev.value or b"", tables, keyring, time.time(),
                                     skew)
            except Exception:
                log.exception("unexpected error on a control record; skipped")

    scanned = {"done": False}

    @app.timer(interval=settings.expiry_check_seconds)  # type: ignore[untyped-decorator]
    async def expire_throttles() -> None:
        now = time.time()  # the shell owns the clock; the core gets `now` passed in
        for kind, key in due_for_expiry(pipeline, tables, now, not scanned["done"]):
            await outputs.send_control(tick_record(kind, key, now, signer))
        scanned["done"] = True

    # Slack: alerts, incident updates from the lock topic, storm digests, Unlock button
    slack_worker.register(app, settings, outputs.alerts, outputs.locks, keyring, metrics)

    http_api.register(app, settings, signer, keyring)
    ack_latency.register(app, settings, outputs.locks, keyring, metrics)  # lock -> relay acks

    # Metrics: processing time per record, consumer lag per partition, Prometheus text format
    lag.register(app, settings, metrics)
    status_api.register_status(app, settings, tables, params, outputs)

    @app.page("/metrics")
    async def metrics_page(web: Any, request: Any) -> Any:
        return web.bytes(metrics.render().encode(), headers={"Content-Type": CONTENT_TYPE})

    # Faust's web server answers long before recovery ends: /ready says what is true.
    readiness = Readiness(app)

    @app.page("/ready")
    async def ready_page(web: Any, request: Any) -> Any:
        ready, why = readiness.status()
        return web.text(why + "\n", status=200 if ready else 503)

    return app
