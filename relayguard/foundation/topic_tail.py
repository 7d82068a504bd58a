"""Bounded reads for operator commands: connect with a short deadline, read the recent end of a
topic (a time window and at most N records per partition), never the whole history.

Every failure to reach Kafka becomes one DownstreamError naming the bootstrap servers, so the
CLI can print one line instead of an aiokafka traceback."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from relayguard.foundation.errors import DownstreamError

CONNECT_TIMEOUT = 5.0  # seconds: an operator at 3 a.m. wants an answer, not a hang
REACH_HINT = ("check RELAYGUARD_BOOTSTRAP_SERVERS (and RELAYGUARD_KAFKA__* security settings), "
              "or start a local broker: relayguard broker start")


def unreachable(bootstrap: str, exc: BaseException | None = None) -> DownstreamError:
    if exc is not None and "Authorization" in type(exc).__name__:
        return DownstreamError(f"Kafka at {bootstrap} refused this credential: "
                               f"{type(exc).__name__}: {str(exc)[:200]}",
                               "grant the ACLs this command needs (relayguard broker acls) or "
                               "use an operator credential (RELAYGUARD_KAFKA__*)")
    why = "no answer within the connect timeout" if exc is None or isinstance(
        exc, TimeoutError) else str(exc)[:200] if str(exc).startswith(type(exc).__name__) \
        else f"{type(exc).__name__}: {str(exc)[:200]}"
    return DownstreamError(f"cannot reach Kafka at {bootstrap} ({why})", REACH_HINT)


async def start_client(client: AIOKafkaConsumer | AIOKafkaProducer, bootstrap: str,
                       timeout: float = CONNECT_TIMEOUT) -> None:
    """client.start() within `timeout`; any failure is a DownstreamError (client closed)."""
    try:
        await asyncio.wait_for(client.start(), timeout)
    except Exception as exc:
        with contextlib.suppress(Exception):  # closing a client that never started may fail
            await asyncio.wait_for(client.stop(), 2.0)
        raise unreachable(bootstrap, exc) from None


def consumer(bootstrap: str, kafka_options: Mapping[str, Any] | None = None,
             timeout: float = CONNECT_TIMEOUT) -> AIOKafkaConsumer:
    ms = max(1000, int(timeout * 1000))
    return AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                            request_timeout_ms=max(ms, 5000), connections_max_idle_ms=60_000,
                            **(kafka_options or {}))


@dataclass
class Tail:
    """What a bounded read returned: the records, and whether the bounds cut anything off."""

    records: list[Any]
    truncated: bool  # older records inside the time window were skipped by max_per_partition
    ends: dict[TopicPartition, int]


async def read_tail(bootstrap: str, topic: str, since: float | None, max_per_partition: int,
                    kafka_options: Mapping[str, Any] | None = None,
                    timeout: float = 15.0) -> Tail:
    """Records of `topic` with timestamp >= `since` (epoch s; None = no time bound), at most
    the newest `max_per_partition` of each partition, up to the end offsets seen at start.
    A missing topic reads as empty."""
    c = consumer(bootstrap, kafka_options)
    await start_client(c, bootstrap)
    try:
        cluster = await asyncio.wait_for(c._client.fetch_all_metadata(), CONNECT_TIMEOUT)
        parts = sorted(cluster.partitions_for_topic(topic) or ())
        if not parts:
            return Tail([], False, {})
        tps = [TopicPartition(topic, p) for p in parts]
        c.assign(tps)
        ends = await c.end_offsets(tps)
        begins = await c.beginning_offsets(tps)
        by_time = (await c.offsets_for_times({tp: int(since * 1000) for tp in tps})
                   if since is not None else {})
        truncated = False
        for tp in tps:
            start = begins[tp]
            if since is not None:
                found = by_time.get(tp)
                start = ends[tp] if found is None else max(start, found.offset)
            capped = max(begins[tp], ends[tp] - max_per_partition)
            if capped > start:
                truncated, start = True, capped
            c.seek(tp, start)
        records: list[Any] = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            positions = [await c.position(tp) for tp in tps]
            if all(pos >= ends[tp] for pos, tp in zip(positions, tps, strict=True)):
                break
            batch = await c.getmany(timeout_ms=500)
            for tp, recs in batch.items():
                records.extend(r for r in recs if r.offset < ends[tp])
        else:
            raise DownstreamError(f"reading {topic} from {bootstrap} did not finish in "
                                  f"{timeout:.0f}s", "retry, or narrow --since")
        return Tail(records, truncated, ends)
    except DownstreamError:
        raise
    except Exception as exc:
        raise unreachable(bootstrap, exc) from None
    finally:
        await c.stop()
