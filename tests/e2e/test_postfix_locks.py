"""Real Postfix + Dovecot + swaks with relayguard's enforcement path: the policy server (fed by
the lock follower from the locks topic) refuses locked users; send events reach Kafka; wrong
passwords in the maillog lock a user through the real worker."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import orjson
import pytest

from relayguard.foundation.settings import Settings
from relayguard.relay.lock_follower import LockFollower
from relayguard.relay.policy_protocol import DecisionConfig
from relayguard.relay.policy_server import ListenAddress, PolicyServer
from relayguard.relay.producer import EventProducer
from tests.e2e.postfix_env import PostfixEnv
from tests.e2e.relay_stack import relay_stack
from tests.fixtures.worker import RunningWorker
from tests.kafka_helpers import lock_cmd, make_topics, produce_locks, read_all

pytestmark = pytest.mark.e2e


async def test_policy_server_locks_and_unlocks_a_user(
        postfix_env: PostfixEnv, kafka_settings: Settings, tmp_path: Path) -> None:
    s = kafka_settings
    await make_topics(s)
    follower = LockFollower(s.bootstrap_servers, s.topics.locks, s.topics.lock_acks, "relay-e2e")
    producer = EventProducer(s.bootstrap_servers, s.topics.events, tmp_path / "spool")
    server = PolicyServer(ListenAddress("inet", "127.0.0.1", postfix_env.policy_port),
                          follower.book, DecisionConfig(reject_text="locked by e2e"),
                          "relay-e2e", publish=producer.publish_nowait)
    await follower.start()
    await producer.start()
    await server.start()
    try:
        assert await follower.ready(timeout=30), "lock follower did not catch up in 30 s"
        await postfix_env.swaks_async("carol", postfix_env.users["carol"], expect=0)
        recs = await read_all(s.bootstrap_servers, s.topics.events, want=1, settle=0.5)
        sends = [orjson.loads(r.value) for r in recs]
        assert [(e["type"], e["user"]) for e in sends] == [("send", "carol")]
        assert sends[0]["recipient_count"] == 1 and sends[0]["tls_protocol"] == "TLSv1.3"
        assert sends[0]["recipient_domains"] == ["example.org"]  # from Postfix's RCPT requests
        # three recipients in two domains (one spelled in capitals): one message, one summary
        await postfix_env.swaks_async("carol", postfix_env.users["carol"], expect=0,
                                      to="bob@example.org,dave@Example.NET,erin@example.org")
        recs = await read_all(s.bootstrap_servers, s.topics.events, want=2, settle=0.5)
        multi = orjson.loads(recs[-1].value)
        assert multi["recipient_count"] == 3
        assert multi["recipient_domains"] == ["example.org", "example.net"]
        assert multi["recipient_domain_count"] == 2

        await produce_locks(s.bootstrap_servers, s.topics.locks, [lock_cmd("carol", 1)])
        took = await postfix_env.swaks_until("carol", 24, timeout=10)  # 24: RCPT refused
        print(f"lock command -> first refused send: {took:.2f} s")
        _, out = await postfix_env.swaks_async("carol", postfix_env.users["carol"], expect=24)
        assert "554 5.7.1 " in out and "Recipient address rejected: locked by e2e" in out
        await postfix_env.swaks_async("alice", postfix_env.users["alice"], expect=0)

        await produce_locks(s.bootstrap_servers, s.topics.locks,
                            [lock_cmd("carol", 2, action="unlock")])
        took = await postfix_env.swaks_until("carol", 0, timeout=10)
        print(f"unlock command -> first accepted send: {took:.2f} s")
    finally:
        await server.stop()
        await producer.stop()
        await follower.stop()


async def test_a_scoped_lock_refuses_the_user_only_from_unfamiliar_networks(
        postfix_env: PostfixEnv, kafka_settings: Settings, tmp_path: Path) -> None:
    """What `auth_failures_slow` issues: a user lock of scope "unfamiliar_networks" spares the
    networks listed in its signed evidence. Postfix sees each session from the address XCLIENT
    gives it, the real policy service decides from the lock the real follower read."""
    s, env = kafka_settings, postfix_env
    await make_topics(s)
    follower = LockFollower(s.bootstrap_servers, s.topics.locks, s.topics.lock_acks, "relay-e2e")
    server = PolicyServer(ListenAddress("inet", "127.0.0.1", env.policy_port), follower.book,
                          DecisionConfig(reject_text="locked by e2e"), "relay-e2e")
    await follower.start()
    await server.start()
    home, guesser = "198.51.100.7", "203.0.113.50"
    try:
        assert await follower.ready(timeout=30), "lock follower did not catch up in 30 s"
        scoped = replace(lock_cmd("bob", 1), detector="auth_failures_slow", evidence={
            "scope": "unfamiliar_networks", "familiar_networks": ["198.51.0.0/16"]})
        await produce_locks(s.bootstrap_servers, s.topics.locks, [scoped])
        took = await env.swaks_until("bob", 24, timeout=10, client_ip=guesser)
        print(f"scoped lock -> first refused send from an unfamiliar network: {took:.2f} s")
        await env.swaks_async("bob", env.users["bob"], expect=0, client_ip=home)  # spared
        _, out = await env.swaks_async("bob", env.users["bob"], expect=24, client_ip=guesser)
        assert "locked by e2e" in out
        # A malformed scope (no list of networks) refuses everywhere, the owner's network too.
        broken = replace(lock_cmd("bob", 2), evidence={"scope": "unfamiliar_networks"})
        await produce_locks(s.bootstrap_servers, s.topics.locks, [broken])
        await env.swaks_until("bob", 24, timeout=10, client_ip=home)
        await produce_locks(s.bootstrap_servers, s.topics.locks,
                            [lock_cmd("bob", 3, action="unlock")])
        await env.swaks_until("bob", 0, timeout=10, client_ip=guesser)
    finally:
        await server.stop()
        await follower.stop()


async def test_wrong_passwords_lock_the_user_through_the_worker(
        postfix_env: PostfixEnv, worker: RunningWorker, tmp_path: Path) -> None:
    """maillog -> log follower -> Kafka -> worker (auth_failures) -> lock command -> lock
    follower -> policy server -> Postfix refuses the user even with the right password."""
    env, t = postfix_env, worker.topics
    async with relay_stack(env, worker.bootstrap, t, tmp_path):
        await env.swaks_async("dave", env.users["dave"], expect=0)
        for i in range(6):
            await env.swaks_async("dave", f"guess-{i}", expect=28)
        took = await env.swaks_until("dave", 24, timeout=60)  # right password, RCPT refused
        print(f"6th wrong password -> refused send: {took:.2f} s")
        _, out = await env.swaks_async("dave", env.users["dave"], expect=24)
        assert "4.7.1" in out  # auth_failures throttles (DEFER) rather than locking for good
        await env.swaks_async("alice", env.users["alice"], expect=0)  # nobody else is hit
