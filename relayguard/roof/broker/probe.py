"""Is a Kafka broker really serving? A TCP connect is not enough (the port opens before the
broker has a metadata view), so readiness is a metadata round trip with aiokafka."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Mapping
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


async def describe(bootstrap: str, timeout: float = 5.0,
                   kafka_options: Mapping[str, Any] | None = None) -> dict[str, object]:
    """One metadata round trip; returns aiokafka's describe_cluster() dict (brokers, cluster_id)."""
    ms = max(1000, int(timeout * 1000))
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=ms,
                                **(kafka_options or {}))
    try:
        await asyncio.wait_for(admin.start(), timeout)
        info = await asyncio.wait_for(admin.describe_cluster(), timeout)
    finally:
        await admin.close()
    if not info.get("brokers"):
        raise RuntimeError("metadata lists no brokers yet")
    return dict(info)


def round_trip_error(bootstrap: str, timeout: float = 5.0,
                     kafka_options: Mapping[str, Any] | None = None) -> str | None:
    """Sync wrapper usable from any context (even inside a running loop): None when the broker
    answered a metadata request, else a one-line reason."""
    result: list[str | None] = ["probe did not finish"]

    def run() -> None:
        try:
            asyncio.run(describe(bootstrap, timeout, kafka_options))
            result[0] = None
        except Exception as exc:  # any failure just means "not ready"; the reason is reported
            result[0] = f"{type(exc).__name__}: {exc}".strip()

    thread = threading.Thread(target=run, name="kafka-probe", daemon=True)
    thread.start()
    thread.join(timeout + 5)
    return result[0]
