"""Secured Kafka on the real broker: SASL_SSL (SCRAM-SHA-512) + StandardAuthorizer + the
documented ACL layout. What a relay credential may and may not do, that plaintext and bad
credentials are refused, and the whole loop (relay -> worker -> lock -> relay and operator) over
SASL_SSL with one credential per role."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.errors import TopicAuthorizationFailedError

from relayguard.foundation.kafka_clients import aiokafka_options
from relayguard.foundation.lock_admin import publish_command, read_latest
from relayguard.foundation.settings import Settings, Topics
from relayguard.foundation.topics import ensure_topics, standard_topics
from relayguard.relay.lock_follower import LockFollower
from relayguard.relay.producer import EventProducer
from relayguard.roof.broker.config import free_port
from relayguard.roof.broker.probe import round_trip_error
from relayguard.roof.broker.server import LocalBroker
from relayguard.roof.worker_process import WorkerProcess
from relayguard.stream import codec
from relayguard.stream.records import SendEvent
from tests.fixtures.secure_kafka import OPERATOR, RELAY, WORKER, SecureKafka, secure_kafka
from tests.kafka_helpers import lock_cmd, until

pytestmark = pytest.mark.integration
__all__ = ["secure_kafka"]  # the module-scoped fixture, imported so pytest finds it here


async def _topics(kafka: SecureKafka) -> tuple[Topics, str]:
    """A fresh prefix and app id, granted the ACL layout; topics created as the worker (which
    needs CREATE, so this also checks the worker's grant)."""
    tag = uuid.uuid4().hex[:8]
    topics, app_id = Topics(prefix=f"s{tag}."), f"rg-sec-{tag}"
    kafka.grant(topics, app_id)
    settings = Settings(bootstrap_servers=kafka.bootstrap, topics=topics, partitions=2)
    await ensure_topics(kafka.bootstrap, standard_topics(settings),
                        kafka_options=kafka.options(WORKER))
    return topics, app_id


async def _send(kafka: SecureKafka, user: str, topic: str, value: bytes) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=kafka.bootstrap, acks="all",
                                enable_idempotence=True, request_timeout_ms=10_000,
                                **kafka.options(user))
    await producer.start()
    try:
        await producer.send_and_wait(topic, value, key=b"user:x")
    finally:
        await producer.stop()


async def test_relay_may_write_events_and_read_locks_but_not_write_locks(
        secure_kafka: SecureKafka, tmp_path: Path) -> None:
    kafka = secure_kafka
    topics, _ = await _topics(kafka)
    lock = lock_cmd(f"victim-{uuid.uuid4().hex[:6]}", version=7)
    await publish_command(kafka.bootstrap, topics.locks, lock,
                          kafka_options=kafka.options(OPERATOR))  # operators may write locks

    forged = codec.dumps(codec.lock_command_to_dict(lock_cmd(lock.subject, 8, action="unlock")))
    with pytest.raises(TopicAuthorizationFailedError):
        await _send(kafka, RELAY, topics.locks, forged)
    with pytest.raises(TopicAuthorizationFailedError):
        await _send(kafka, RELAY, topics.control, b"{}")
    await _send(kafka, RELAY, topics.events, b"{}")  # allowed: no exception

    # The relay reads the locks topic and acknowledges into lock-acks, with its own credential.
    follower = LockFollower(kafka.bootstrap, topics.locks, topics.lock_acks, RELAY,
                            kafka_options=kafka.options(RELAY))
    await follower.start()
    try:
        assert await follower.ready(30), "relay could not read the locks topic"
        assert follower.book.is_locked("user", lock.subject, time.time())
        acks: dict[bytes, bytes] = {}

        async def acked() -> bool:
            acks.update(await read_latest(kafka.bootstrap, topics.lock_acks, timeout=3,
                                          kafka_options=kafka.options(OPERATOR)))
            return bool(acks)

        deadline = time.monotonic() + 20
        while not await acked() and time.monotonic() < deadline:
            await asyncio.sleep(0.3)
        assert [codec.parse_record(v, ("lock_ack",))["command_id"] for v in acks.values()] \
            == [lock.command_id]
    finally:
        await follower.stop()
    # The forged unlock never reached the topic.
    latest = await read_latest(kafka.bootstrap, topics.locks, kafka_options=kafka.options(RELAY))
    assert [codec.decode_lock_command(v).action for v in latest.values()] == ["lock"]


async def test_plaintext_bad_password_and_untrusted_ca_are_refused(
        secure_kafka: SecureKafka, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    kafka = secure_kafka
    assert round_trip_error(kafka.bootstrap, timeout=4) is not None  # plaintext on SASL_SSL
    good = kafka.security(RELAY)
    assert round_trip_error(kafka.bootstrap, timeout=6,
                            kafka_options=aiokafka_options(good)) is None
    (tmp_path / "wrong").write_text("not-the-password\n")
    wrong = good.model_copy(update={"password_file": tmp_path / "wrong"})
    caplog.clear()
    problem = round_trip_error(kafka.bootstrap, timeout=6, kafka_options=aiokafka_options(wrong))
    assert problem is not None
    # aiokafka reports "unable to bootstrap"; the broker's reason is in its log line
    assert "SaslAuthenticationFailed" in caplog.text, caplog.text
    # Trusting only the system store: the throwaway CA is not in it, so TLS itself fails.
    untrusted = good.model_copy(update={"ca_file": None})
    assert round_trip_error(kafka.bootstrap, timeout=6,
                            kafka_options=aiokafka_options(untrusted)) is not None


async def test_worker_locks_a_burst_over_sasl_ssl_and_operator_lists_it(
        secure_kafka: SecureKafka, test_city_db: Path, tmp_path: Path) -> None:
    kafka = secure_kafka
    topics, app_id = await _topics(kafka)
    worker = WorkerProcess({
        **kafka.env(WORKER),
        "RELAYGUARD_APP_ID": app_id,
        "RELAYGUARD_TOPICS__PREFIX": topics.prefix,
        "RELAYGUARD_PARTITIONS": "2",
        "RELAYGUARD_GEOIP_CITY_DB": str(test_city_db),
        "RELAYGUARD_DATA_DIR": str(tmp_path / "worker-data"),
    }, tmp_path / "worker.log")
    user = f"burst-{uuid.uuid4().hex[:6]}"
    relay_opts = kafka.options(RELAY)
    producer = EventProducer(kafka.bootstrap, topics.events, tmp_path / "spool",
                             kafka_options=relay_opts)
    follower = LockFollower(kafka.bootstrap, topics.locks, topics.lock_acks, RELAY,
                            kafka_options=relay_opts)
    try:
        worker.start(timeout=120)
        await producer.start()
        await follower.start()
        assert await follower.ready(30)
        now = time.time()
        for i in range(30):  # 300 recipients in 30 s: far over the default volume limits
            producer.publish_nowait(SendEvent(str(uuid.uuid4()), now - 30 + i, RELAY, user,
                                              "192.0.2.3", user, 10, 1000, source="test"))
        await until(lambda: follower.book.is_locked("user", user, time.time()), 60,
                    f"{user} locked on the relay\n{worker.tail_log()}")
        assert producer.stats.sent == 30 and producer.stats.spooled == 0
    finally:
        await follower.stop()
        await producer.stop()
        worker.stop()

    prefix = {"RELAYGUARD_TOPICS__PREFIX": topics.prefix}
    listed = _cli({**kafka.env(OPERATOR), **prefix}, "locks")
    assert listed.returncode == 0, listed.stderr
    assert user in listed.stdout and "1 active lock(s)" in listed.stdout, listed.stdout
    plain = _cli({"RELAYGUARD_BOOTSTRAP_SERVERS": kafka.bootstrap, **prefix}, "locks")
    assert plain.returncode != 0 and user not in plain.stdout  # no credentials, no answer



def test_kept_secure_data_dir_keeps_users_and_adds_new_ones(tmp_path: Path) -> None:
    """Restart of `broker start --secure --data-dir`: the same CA and passwords work again, and
    a relay user added since the format is created through the Admin API."""
    data = tmp_path / "broker"
    roles: dict[str, tuple[str, ...]] = {"worker": (WORKER,), "operator": (OPERATOR,),
                                         "relay": (RELAY,)}
    first = LocalBroker(data_dir=data, secure=True, roles=roles)
    try:
        first.start(timeout=120)
        ca = first.client_security(RELAY).ca_file
        assert ca is not None
        ca_pem = ca.read_bytes()
    finally:
        first.stop()
    again = LocalBroker(data_dir=data, secure=True, roles={**roles, "relay": (RELAY, "relay-2")})
    try:
        again.start(timeout=120)
        assert ca.read_bytes() == ca_pem
        for user in (RELAY, "relay-2"):
            problem = round_trip_error(again.bootstrap, timeout=8,
                                       kafka_options=again.client_options(user))
            assert problem is None, f"{user}: {problem}"
    finally:
        again.stop()


def _cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "relayguard", *args], text=True,
                          capture_output=True, timeout=60, check=False,
                          env={**os.environ, **env})


def _policy_request(user: str) -> bytes:
    return (f"request=smtpd_access_policy\nprotocol_state=RCPT\nsasl_username={user}\n"
            "client_address=198.51.100.20\nsender=a@example.com\ninstance=sec.1\n\n").encode()


async def test_hook_postfix_and_operator_cli_over_sasl_ssl(
        secure_kafka: SecureKafka, tmp_path: Path) -> None:
    """The real `relayguard hook postfix` with the relay credential enforces a lock that the
    operator credential issued with `relayguard lock`; the relay credential cannot issue one."""
    kafka = secure_kafka
    topics, _ = await _topics(kafka)
    user = f"mallory-{uuid.uuid4().hex[:6]}"
    prefix = {"RELAYGUARD_TOPICS__PREFIX": topics.prefix}
    port = free_port()
    relay_env = {**kafka.env(RELAY), **prefix, "RELAYGUARD_DATA_DIR": str(tmp_path / "hook"),
                 "RELAYGUARD_RELAY_ID": RELAY}
    with (tmp_path / "hook.log").open("wb") as log_file:
        hook = subprocess.Popen(
            [sys.executable, "-m", "relayguard", "hook", "postfix", "--listen",
             f"inet:127.0.0.1:{port}", "--reject-text", "locked (secure test)"],
            stdout=log_file, stderr=subprocess.STDOUT, env={**os.environ, **relay_env})
    try:
        refused = _cli(relay_env, "lock", user, "--reason", "forged by a relay credential")
        assert refused.returncode != 0 and "TopicAuthorizationFailed" in refused.stderr, \
            refused.stdout + refused.stderr
        done = _cli({**kafka.env(OPERATOR), **prefix}, "lock", user, "--reason", "ticket 42")
        assert done.returncode == 0, done.stderr
        reply = b""
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and hook.poll() is None:
            try:
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
            except OSError:
                await asyncio.sleep(0.3)
                continue
            writer.write(_policy_request(user))
            reply = await asyncio.wait_for(reader.readuntil(b"\n\n"), 5)
            writer.close()
            if reply != b"action=DUNNO\n\n":
                break
            await asyncio.sleep(0.3)
        log = (tmp_path / "hook.log").read_text(errors="replace")[-3000:]
        assert reply == b"action=REJECT 5.7.1 locked (secure test)\n\n", log
    finally:
        hook.terminate()
        await asyncio.to_thread(hook.wait, 30)
