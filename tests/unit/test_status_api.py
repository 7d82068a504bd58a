"""Why the status API routes by the source topic's key, not with `@app.table_route`."""

from __future__ import annotations

from aiokafka.partitioner import murmur2

from relayguard.agents.state_table import StateKeyCodec


def partition(key: bytes, partitions: int) -> int:
    return int(murmur2(key) & 0x7FFFFFFF) % partitions  # aiokafka's default partitioner


def test_table_route_would_hash_the_changelog_key_not_the_relays_key() -> None:
    """State lives on the partition of the raw key the relays send; `table_route` hashes the
    changelog key (JSON-quoted): for a good share of users the two partitions differ."""
    users = [f"user{i}@example.com" for i in range(200)]
    codec = StateKeyCodec()
    differ = [u for u in users
              if partition(u.encode(), 4) != partition(codec.dumps(u), 4)]
    assert codec.dumps("alice") == b'"alice"'
    assert len(differ) > len(users) // 2  # with 4 partitions about 3 in 4 differ
