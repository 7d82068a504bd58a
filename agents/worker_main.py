"""`relayguard worker`: check config, create topics, run the Faust worker until stopped."""

from __future__ import annotations

import asyncio
import logging

import faust

from agents.app import create_app
from relayguard.broker.topics import ensure_topics, standard_topics
from relayguard.core_params import build_core_params
from relayguard.geoip import GeoLocator
from relayguard.settings import Settings

log = logging.getLogger("relayguard.worker")


def run_worker(settings: Settings, loglevel: str = "info") -> None:
    params = build_core_params(settings)  # config errors surface here, before any I/O
    locator = GeoLocator(settings.geoip_city_db) if settings.geoip_city_db else None
    if locator is None:
        log.warning("no GeoIP City database configured (RELAYGUARD_GEOIP_CITY_DB): "
                    "impossible-travel and country detectors see no locations")
    asyncio.run(ensure_topics(settings.bootstrap_servers, standard_topics(settings)))
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    app = create_app(settings, params, locator)
    worker = faust.Worker(app, loglevel=loglevel, quiet=True)
    worker.execute_from_commandline()
