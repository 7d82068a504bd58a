"""The session's real Kafka broker: it answers, topics are created as specified, records flow."""

from __future__ import annotations

import asyncio

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from relayguard.foundation.errors import ConfigError
from relayguard.foundation.settings import Settings
from relayguard.foundation.topics import TopicSpec, ensure_topics, standard_topics
from relayguard.roof.broker.probe import describe

pytestmark = pytest.mark.integration


async def test_broker_answers_metadata(kafka_bootstrap: str) -> None:
    info = await describe(kafka_bootstrap, timeout=10)
    hosts = {(b["host"], b["port"]) for b in info["brokers"]}  # type: ignore[attr-defined]
    host, port = kafka_bootstrap.rsplit(":", 1)
    assert (host, int(port)) in hosts


async def _partitions_and_policy(bootstrap: str, names: list[str]) -> dict[str, tuple[int, str]]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        counts = {t["topic"]: len(t["partitions"]) for t in await admin.describe_topics(None)}
        resources = [ConfigResource(ConfigResourceType.TOPIC, n) for n in names]
        policies: dict[str, str] = {}
        for response in await admin.describe_configs(resources):
            for res in response.to_object()["resources"]:
                entries = {e["config_names"]: e["config_value"] for e in res["config_entries"]}
                policies[res["resource_name"]] = entries["cleanup.policy"]
    finally:
        await admin.close()
    return {n: (counts[n], policies[n]) for n in names}


async def test_ensure_topics_creates_with_partitions_and_compaction(
    kafka_settings: Settings,
) -> None:
    settings = kafka_settings.model_copy(update={"partitions": 3})
    specs = standard_topics(settings)
    created = await ensure_topics(settings.bootstrap_servers, specs)
    assert sorted(created) == sorted(s.name for s in specs)

    t = settings.topics
    got = await _partitions_and_policy(settings.bootstrap_servers, [t.events, t.locks, t.alerts])
    assert got[t.events] == (3, "delete")
    assert got[t.locks] == (1, "compact")
    assert got[t.alerts] == (1, "delete")

    assert await ensure_topics(settings.bootstrap_servers, specs) == []  # idempotent


async def test_existing_topic_with_other_partition_count_is_a_config_error(
    kafka_bootstrap: str, kafka_topic_prefix: str
) -> None:
    name = f"{kafka_topic_prefix}events"
    await ensure_topics(kafka_bootstrap, [TopicSpec(name, 2)])
    with pytest.raises(ConfigError) as err:
        await ensure_topics(kafka_bootstrap, [TopicSpec(name, 5)])
    message = str(err.value)
    assert name in message and "2" in message and "5" in message


async def test_existing_topic_that_is_not_compacted_is_a_config_error(
    kafka_bootstrap: str, kafka_topic_prefix: str
) -> None:
    name = f"{kafka_topic_prefix}locks"
    await ensure_topics(kafka_bootstrap, [TopicSpec(name, 1)])
    with pytest.raises(ConfigError, match=r"cleanup\.policy"):
        await ensure_topics(kafka_bootstrap, [TopicSpec(name, 1, {"cleanup.policy": "compact"})])


async def test_produce_consume_round_trip(kafka_bootstrap: str, kafka_topic_prefix: str) -> None:
    topic = f"{kafka_topic_prefix}events"
    await ensure_topics(kafka_bootstrap, [TopicSpec(topic, 2)])
    sent = {f"user{i}".encode(): f"record {i}".encode() for i in range(5)}

    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
    await producer.start()
    try:
        for key, value in sent.items():
            await producer.send_and_wait(topic, value, key=key)
    finally:
        await producer.stop()

    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=kafka_bootstrap,
        group_id=f"{kafka_topic_prefix}group",
        auto_offset_reset="earliest",
    )
    await consumer.start()
    received: dict[bytes, bytes] = {}
    try:
        async with asyncio.timeout(30):  # a deadline, not a timing assertion
            while len(received) < len(sent):
                batch = await consumer.getmany(timeout_ms=1000)
                for records in batch.values():
                    received.update((r.key, r.value) for r in records if r.key and r.value)
    finally:
        await consumer.stop()
    assert received == sent
