"""The relay side of one real Postfix, as a deployment runs it: the log follower publishing the
maillog's logins, the policy service publishing sends and refusing locked users, and the lock
follower feeding it from the lock topic. Started and stopped in the right order for a test."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from relayguard.foundation.settings import Topics
from relayguard.relay.checkpoint import CheckpointStore
from relayguard.relay.lock_follower import LockFollower
from relayguard.relay.log_follower import LogFollower
from relayguard.relay.log_parser import LogParser
from relayguard.relay.policy_protocol import DecisionConfig
from relayguard.relay.policy_server import ListenAddress, PolicyServer
from relayguard.relay.producer import EventProducer
from relayguard.relay.tail_cli import local_zone
from tests.e2e.postfix_env import PostfixEnv

RELAY_ID = "relay-e2e"


@dataclass
class RelayStack:
    producer: EventProducer
    locks: LockFollower
    server: PolicyServer
    tail: LogFollower


@asynccontextmanager
async def relay_stack(env: PostfixEnv, bootstrap: str, topics: Topics,
                      workdir: Path) -> AsyncIterator[RelayStack]:
    """Yields once the lock follower has caught up with the lock topic."""
    producer = EventProducer(bootstrap, topics.events, workdir / "spool")
    tail = LogFollower([env.dovecot_log, env.maillog], LogParser(RELAY_ID, tz=local_zone()),
                       producer, CheckpointStore(workdir / "ckpt"), from_end=True,
                       poll_interval=0.1)
    tail.restore()
    locks = LockFollower(bootstrap, topics.locks, topics.lock_acks, RELAY_ID)
    server = PolicyServer(ListenAddress("inet", "127.0.0.1", env.policy_port), locks.book,
                          DecisionConfig(), RELAY_ID, publish=producer.publish_nowait)
    await producer.start()
    await locks.start()
    await server.start()
    tail_task = asyncio.create_task(tail.run())
    try:
        assert await locks.ready(timeout=30), "lock follower did not catch up in 30 s"
        yield RelayStack(producer, locks, server, tail)
    finally:
        tail.stop()
        await asyncio.wait_for(tail_task, 10)
        tail.close()
        await server.stop()
        await locks.stop()
        await producer.stop()
