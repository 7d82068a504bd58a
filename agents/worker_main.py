"""`relayguard worker`: check config, create topics, run the Faust worker until stopped."""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import threading
import time
from pathlib import Path

import faust

from relayguard.agents.app import create_app
from relayguard.foundation.core_params import build_core_params
from relayguard.foundation.gc_tuning import tune_for_throughput
from relayguard.foundation.geoip import GeoLocator
from relayguard.foundation.kafka_clients import aiokafka_options
from relayguard.foundation.settings import Settings
from relayguard.foundation.topics import ensure_topics, standard_topics

log = logging.getLogger("relayguard.worker")
CLEAN_STOP_MARK = "relayguard-clean-stop"


def prepare_local_store(tabledir: Path) -> None:
    """Keep the RocksDB tables only when the last run stopped cleanly.

    A table write lands in RocksDB at once, its changelog record only when the producer gets
    it to Kafka, and the source offset is committed later still. After a kill, the local store
    can hold state from events whose changelog records and lock commands never left the
    process; the redelivered events would then look like duplicates and their effects would be
    lost for good. So after an unclean stop the local store is discarded and rebuilt from the
    changelog (what the memory store does on every start); after a clean stop (all records
    flushed and committed) it is kept, and only the changelog tail is replayed.
    """
    mark = tabledir / CLEAN_STOP_MARK
    stores = list(tabledir.glob("*.db")) if tabledir.is_dir() else []
    if stores and not mark.exists():
        log.warning("the last worker run in %s did not stop cleanly; discarding its local "
                    "table store and rebuilding it from the changelog topics", tabledir)
        for path in stores:
            shutil.rmtree(path, ignore_errors=True)
    mark.unlink(missing_ok=True)  # from now on a crash leaves no mark


def mark_clean_stop(tabledir: Path) -> None:
    tabledir.mkdir(parents=True, exist_ok=True)
    (tabledir / CLEAN_STOP_MARK).write_text("stopped cleanly\n")


class _Worker(faust.Worker):
    """Faust's shutdown waits for Kafka to take the last commits and changelog records; with
    Kafka unreachable it waits forever. Give it `grace` seconds, then exit anyway: at-least-once
    processing redoes the uncommitted records on the next start."""

    def __init__(self, app: faust.App, grace: float, tabledir: Path | None = None,
                 **kwargs: object) -> None:
        super().__init__(app, **kwargs)  # type: ignore[arg-type]
        self.grace = grace
        self.tabledir = tabledir  # set for a persistent store: mark a clean stop there

    def stop_and_shutdown(self) -> None:
        super().stop_and_shutdown()  # raises the crash reason after a crash
        if self.tabledir is not None and not self.crash_reason:
            mark_clean_stop(self.tabledir)

    def on_worker_shutdown(self) -> None:
        super().on_worker_shutdown()
        threading.Thread(target=self._force_exit, name="shutdown-watchdog", daemon=True).start()

    def _force_exit(self) -> None:
        time.sleep(self.grace)
        log.error("shutdown still waiting after %.0fs (is Kafka reachable?); exiting without "
                  "the last commits, which the next start will redo", self.grace)
        logging.shutdown()
        os._exit(1)


def run_worker(settings: Settings, loglevel: str = "info") -> None:
    params = build_core_params(settings)  # config errors surface here, before any I/O
    locator = GeoLocator(settings.geoip_city_db) if settings.geoip_city_db else None
    if locator is None:
        log.warning("no GeoIP City database configured (RELAYGUARD_GEOIP_CITY_DB): "
                    "impossible-travel and country detectors see no locations")
    asyncio.run(ensure_topics(settings.bootstrap_servers, standard_topics(settings),
                              kafka_options=aiokafka_options(settings.kafka)))
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    app = create_app(settings, params, locator)
    # the core's allocations, not cycles: see gc_tuning
    tune_for_throughput(settings.worker_gc_thresholds, freeze=True)
    tabledir = Path(app.conf.tabledir) if settings.table_store == "rocksdb" else None
    if tabledir is not None:
        prepare_local_store(tabledir)
    worker = _Worker(app, settings.shutdown_grace_seconds, tabledir, loglevel=loglevel,
                     quiet=True)
    worker.execute_from_commandline()
