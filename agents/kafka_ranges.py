"""A side reader for `OffsetGuard`: the group's committed offsets and ranges of a partition,
read with its own aiokafka clients (no group membership, so it never disturbs the worker's)."""

from __future__ import annotations

import time

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from relayguard.agents.offset_guard import Record

READ_TIMEOUT_S = 20.0


class KafkaRangeReader:
    def __init__(self, bootstrap: str, group_id: str) -> None:
        self.bootstrap = bootstrap
        self.group_id = group_id
        self._admin: AIOKafkaAdminClient | None = None
        self._consumer: AIOKafkaConsumer | None = None

    async def _clients(self) -> tuple[AIOKafkaAdminClient, AIOKafkaConsumer]:
        if self._admin is None:
            admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap)
            await admin.start()
            self._admin = admin
        if self._consumer is None:
            consumer = AIOKafkaConsumer(bootstrap_servers=self.bootstrap, group_id=None,
                                        enable_auto_commit=False,
                                        auto_offset_reset="earliest")
            await consumer.start()
            self._consumer = consumer
        return self._admin, self._consumer

    async def start_offset(self, topic: str, partition: int) -> int | None:
        admin, consumer = await self._clients()
        tp = TopicPartition(topic, partition)
        offsets = await admin.list_consumer_group_offsets(self.group_id, partitions=[tp])
        meta = offsets.get(tp)
        if meta is not None and meta.offset >= 0:
            return int(meta.offset)
        begin = await consumer.beginning_offsets([tp])  # no commit yet: Faust starts earliest
        return int(begin[tp])

    async def end_offset(self, topic: str, partition: int) -> int:
        _, consumer = await self._clients()
        tp = TopicPartition(topic, partition)
        return int((await consumer.end_offsets([tp]))[tp])

    async def read(self, topic: str, partition: int, start: int, end: int) -> list[Record]:
        _, consumer = await self._clients()
        tp = TopicPartition(topic, partition)
        consumer.assign([tp])
        first = (await consumer.beginning_offsets([tp]))[tp]
        last = (await consumer.end_offsets([tp]))[tp]
        start, end = max(start, first), min(end, last)
        out: list[Record] = []
        if start >= end:
            return out
        consumer.seek(tp, start)
        deadline = time.monotonic() + READ_TIMEOUT_S
        while time.monotonic() < deadline:
            batch = await consumer.getmany(tp, timeout_ms=500)
            for r in batch.get(tp, []):
                if start <= r.offset < end and r.value is not None:
                    out.append(Record(topic, partition, r.offset, r.key, r.value))
                if r.offset >= end - 1:
                    return out
        return out

    async def stop(self) -> None:
        if self._consumer is not None:
            await self._consumer.stop()
        if self._admin is not None:
            await self._admin.close()
