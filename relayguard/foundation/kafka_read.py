"""Read a whole topic without a consumer group: the lock book at relay start and the operators'
`locks` listing both need every partition of the compacted lock topic from offset 0."""

from __future__ import annotations

import asyncio
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition


async def assign_from_beginning(consumer: AIOKafkaConsumer, topic: str, attempts: int = 5,
                                pause: float = 0.5) -> dict[TopicPartition, int]:
    """Assign all of `topic`'s partitions, seek to their start, and return their end offsets
    now (where "caught up" is). Empty when the topic does not exist."""
    parts: Any = set()
    for attempt in range(attempts):  # a just-created topic may take a moment to show
        # consumer.topics() fetches but does not keep the metadata; ask the client directly.
        cluster = await consumer._client.fetch_all_metadata()
        parts = cluster.partitions_for_topic(topic) or set()
        if parts or attempt == attempts - 1:
            break
        await asyncio.sleep(pause)
    if not parts:
        return {}
    tps = [TopicPartition(topic, p) for p in sorted(parts)]
    consumer.assign(tps)
    await consumer.seek_to_beginning(*tps)
    ends: dict[TopicPartition, int] = await consumer.end_offsets(tps)
    return ends
