"""`relayguard worker`: check config, create topics, run the Faust worker until stopped."""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time

import faust

from relayguard.agents.app import create_app
from relayguard.foundation.core_params import build_core_params
from relayguard.foundation.geoip import GeoLocator
from relayguard.foundation.kafka_clients import aiokafka_options
from relayguard.foundation.settings import Settings
from relayguard.foundation.topics import ensure_topics, standard_topics

log = logging.getLogger("relayguard.worker")


class _Worker(faust.Worker):
    """Faust's shutdown waits for Kafka to take the last commits and changelog records; with
    Kafka unreachable it waits forever. Give it `grace` seconds, then exit anyway: at-least-once
    processing redoes the uncommitted records on the next start."""

    def __init__(self, app: faust.App, grace: float, **kwargs: object) -> None:
        super().__init__(app, **kwargs)  # type: ignore[arg-type]
        self.grace = grace

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
    worker = _Worker(app, settings.shutdown_grace_seconds, loglevel=loglevel, quiet=True)
    worker.execute_from_commandline()
