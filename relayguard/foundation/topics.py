"""Create relayguard's topics explicitly (partition count + configs), idempotently.

Topic layout (see standard_topics):
- events, events.by-ip, control: `settings.partitions` partitions; the Faust tables are
  co-partitioned with them, so they must all have the same count.
- locks: compacted, ONE partition. Lock commands are few; a single partition gives a total
  order of lock/unlock per subject across the fleet and lets every relay replay the whole
  topic from offset 0 with one simple assignment.
- events.dlq, lock-acks, alerts: one partition each (low volume, read by humans/tools).
- audit: one partition, NOT compacted (cleanup.policy=delete, retention.ms from
  topics.audit_retention_days, default 90 days): who locked or unlocked whom, when and why.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from relayguard.foundation.errors import ConfigError, DownstreamError
from relayguard.foundation.settings import Settings

TOPIC_ALREADY_EXISTS = 36
# Broker answers that mean "your request is wrong" rather than "the broker is unwell".
CONFIG_ERROR_CODES = {37: "invalid partitions", 38: "invalid replication factor",
                      40: "invalid config", 17: "invalid topic name"}  # fmt: skip
# Configs whose mismatch on an existing topic breaks relayguard (a non-compacted locks topic
# would silently forget locks after retention).
ENFORCED_CONFIGS = ("cleanup.policy",)


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int
    configs: Mapping[str, str] = field(default_factory=dict)
    replication_factor: int = 1


def standard_topics(settings: Settings) -> list[TopicSpec]:
    t, rf = settings.topics, settings.replication_factor
    compacted = {"cleanup.policy": "compact"}
    return [
        TopicSpec(t.events, settings.partitions, {}, rf),
        TopicSpec(t.events_by_ip, settings.partitions, {}, rf),
        TopicSpec(t.dlq, 1, {}, rf),
        TopicSpec(t.locks, 1, compacted, rf),
        TopicSpec(t.lock_acks, 1, {}, rf),
        TopicSpec(t.alerts, 1, {}, rf),
        TopicSpec(t.control, settings.partitions, {}, rf),
        TopicSpec(t.audit, 1, {"cleanup.policy": "delete",
                               "retention.ms": str(int(t.audit_retention_days * 86_400_000))}, rf),
    ]


async def ensure_topics(
    bootstrap: str, topics: Sequence[TopicSpec], timeout: float = 30.0,
    kafka_options: Mapping[str, Any] | None = None,
) -> list[str]:
    """Create the missing topics; check existing ones. Returns the names created by this call.
    Raises ConfigError on a partition-count or enforced-config mismatch, DownstreamError when
    the broker cannot be reached or refuses."""
    deadline = time.monotonic() + timeout
    admin = AIOKafkaAdminClient(
        bootstrap_servers=bootstrap, request_timeout_ms=max(1000, int(timeout * 1000)),
        **(kafka_options or {}),
    )
    try:
        await asyncio.wait_for(admin.start(), timeout)
    except Exception as exc:
        await admin.close()
        raise DownstreamError(
            f"cannot reach Kafka at {bootstrap}: {exc!r}",
            "check RELAYGUARD_BOOTSTRAP_SERVERS, or start a local broker: relayguard broker start",
        ) from exc
    try:
        existing = await _partition_counts(admin)
        _check_partitions(topics, existing)
        missing = [spec for spec in topics if spec.name not in existing]
        created = await _create(admin, missing, timeout) if missing else []
        await _check_configs(admin, [s for s in topics if s.name not in created])
        counts = await _wait_for_leaders(admin, topics, deadline)
        _check_partitions(topics, counts)  # catches a concurrent creator with other counts
        return created
    finally:
        await admin.close()


def _check_partitions(topics: Sequence[TopicSpec], counts: Mapping[str, int]) -> None:
    for spec in topics:
        have = counts.get(spec.name)
        if have is not None and have != spec.partitions:
            raise ConfigError(
                f"topic {spec.name} exists with {have} partitions, relayguard expects "
                f"{spec.partitions}",
                hint="make them agree (RELAYGUARD_PARTITIONS sets the events topics' count) "
                "or delete and recreate the topic",
            )


async def _describe_all(admin: AIOKafkaAdminClient) -> list[dict[str, Any]]:
    # Metadata for *all* topics: naming topics in a metadata request can auto-create them.
    return list(await admin.describe_topics(None))


async def _partition_counts(admin: AIOKafkaAdminClient) -> dict[str, int]:
    return {t["topic"]: len(t["partitions"]) for t in await _describe_all(admin) if t["partitions"]}


async def _create(admin: AIOKafkaAdminClient, specs: list[TopicSpec], timeout: float) -> list[str]:
    new = [
        NewTopic(s.name, s.partitions, s.replication_factor, topic_configs=dict(s.configs))
        for s in specs
    ]
    response = await admin.create_topics(new, timeout_ms=int(timeout * 1000))
    created: list[str] = []
    for entry in response.to_object()["topic_errors"]:
        name, code = entry["topic"], entry["error_code"]
        message = entry.get("error_message") or ""
        if code == 0:
            created.append(name)
        elif code == TOPIC_ALREADY_EXISTS:
            continue  # someone else created it meanwhile; checked below like any existing topic
        elif code in CONFIG_ERROR_CODES:
            raise ConfigError(f"Kafka refused topic {name}: {CONFIG_ERROR_CODES[code]}: {message}")
        else:
            raise DownstreamError(f"Kafka could not create topic {name} (error {code}): {message}")
    return created


async def _check_configs(admin: AIOKafkaAdminClient, specs: Sequence[TopicSpec]) -> None:
    wanted = {s.name: s for s in specs if any(k in s.configs for k in ENFORCED_CONFIGS)}
    if not wanted:
        return
    resources = [ConfigResource(ConfigResourceType.TOPIC, name) for name in wanted]
    for response in await admin.describe_configs(resources):
        for res in response.to_object()["resources"]:
            spec = wanted.get(res["resource_name"])
            if spec is None or res["error_code"]:
                continue  # errors here are not worth failing startup over
            actual = {e["config_names"]: e["config_value"] for e in res["config_entries"]}
            for key in ENFORCED_CONFIGS:
                if key in spec.configs and actual.get(key) != spec.configs[key]:
                    raise ConfigError(
                        f"topic {spec.name} has {key}={actual.get(key)}, relayguard needs "
                        f"{key}={spec.configs[key]}",
                        hint=f"alter the topic config (kafka-configs --alter --entity-type "
                        f"topics --entity-name {spec.name} --add-config "
                        f"{key}={spec.configs[key]}) or recreate it",
                    )


async def _wait_for_leaders(
    admin: AIOKafkaAdminClient, specs: Sequence[TopicSpec], deadline: float
) -> dict[str, int]:
    """Creation returns before metadata shows leaders; producers racing that get errors."""
    names = {s.name for s in specs}
    while True:
        info = {t["topic"]: t for t in await _describe_all(admin) if t["topic"] in names}
        pending = sorted(
            n for n in names
            if n not in info or not info[n]["partitions"]
            or any(p["leader"] < 0 for p in info[n]["partitions"])
        )  # fmt: skip
        if not pending:
            return {n: len(t["partitions"]) for n, t in info.items()}
        if time.monotonic() > deadline:
            raise DownstreamError(f"topics without a leader after creation: {', '.join(pending)}")
        await asyncio.sleep(0.2)
