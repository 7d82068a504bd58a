"""Issue 9's mission end to end on the real Postfix: a stolen credential used from a country the
user was never in, then one message to many recipient domains the user never wrote to. The real
policy service puts the recipient-domain summary in the send event, the real log follower turns
the maillog's AUTH into the login event, the real worker correlates the two and locks, and the
relay refuses the next message with the right password within seconds."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import orjson
import pytest

from relayguard.stream import codec
from relayguard.stream.timefmt import to_rfc3339
from tests.e2e.postfix_env import PostfixEnv
from tests.e2e.relay_stack import relay_stack
from tests.fixtures.worker import StartWorker
from tests.kafka_helpers import collect, produce

pytestmark = pytest.mark.e2e
DAY = 86400.0
HOME_IP = "192.0.2.20"  # Berlin in the test City database (tests/fixtures/worker.py)
ABROAD_IP = "203.0.113.50"  # New York
USUAL = ["example.org", "partner.de", "lieferant.de", "kunde.at"]
USER = "carol"


def _history(now: float) -> list[bytes]:
    """Fifteen days of ordinary use from Berlin: a daily login and a few messages to the same
    four domains, so the country, the network and the recipient domains are all learned."""
    out: list[dict[str, object]] = []
    for day in range(15, 0, -1):
        t = now - day * DAY
        out.append({"type": "login", "event_id": str(uuid.uuid4()), "event_time": to_rfc3339(t),
                    "relay_id": "relay-e2e", "user": USER, "client_ip": HOME_IP,
                    "success": True, "tls_protocol": "TLSv1.3", "sasl_mechanism": "PLAIN"})
        for i in range(4):
            domain = USUAL[(day + i) % len(USUAL)]
            out.append({"type": "send", "event_id": str(uuid.uuid4()),
                        "event_time": to_rfc3339(t + 600 + i * 900), "relay_id": "relay-e2e",
                        "user": USER, "client_ip": HOME_IP, "sender": f"{USER}@relay.test",
                        "recipient_count": 1, "size": 4000, "recipient_domains": [domain],
                        "recipient_domain_count": 1})
    return [orjson.dumps(e) for e in out]


async def test_new_country_login_then_many_new_domains_is_refused_within_seconds(
        postfix_env: PostfixEnv, start_worker: StartWorker, tmp_path: Path) -> None:
    env = postfix_env
    worker = start_worker(RELAYGUARD_MAX_EVENT_AGE_SECONDS=str(30 * DAY))
    t = worker.topics
    await produce(worker.bootstrap, t.events, [(USER.encode(), v) for v in _history(time.time())])

    async with relay_stack(env, worker.bootstrap, t, tmp_path):
        # The thief logs in from New York and sends one ordinary-looking message first.
        await env.swaks_async(USER, env.users[USER], to="bob@example.org", client_ip=ABROAD_IP)

        def abroad_login(records: list) -> bool:  # type: ignore[type-arg]
            return any(e.get("type") == "login" and e.get("client_ip") == ABROAD_IP
                       for e in (orjson.loads(r.value) for r in records))

        logged = await collect(worker.bootstrap, [t.events], abroad_login, 30)
        assert abroad_login(logged), f"no login event:\n{env.maillog_text()[-3000:]}"
        # Then the spam run: one message to 20 recipients in 20 domains she never wrote to.
        spam_to = ",".join(f"info@shop{i}.example" for i in range(20))
        await env.swaks_async(USER, env.users[USER], to=spam_to, client_ip=ABROAD_IP)
        sent_at = time.monotonic()

        sends = await collect(worker.bootstrap, [t.events], lambda rs: any(
            orjson.loads(r.value).get("recipient_count") == 20 for r in rs), 30)
        spam = next(e for e in (orjson.loads(r.value) for r in sends)
                    if e.get("recipient_count") == 20)
        assert spam["recipient_domain_count"] == 20 and len(spam["recipient_domains"]) == 20
        assert spam["client_ip"] == ABROAD_IP

        took = await env.swaks_until(USER, 24, timeout=30, client_ip=ABROAD_IP)
        print(f"many-domain send -> refused with the right password: "
              f"{time.monotonic() - sent_at:.2f} s (last try {took:.2f} s)")
        await env.swaks_async("alice", env.users["alice"], expect=0)  # nobody else is hit

        records = await collect(worker.bootstrap, [t.locks], lambda rs: False, 2)
        commands = [c for c in (codec.decode_lock_command(r.value) for r in records)
                    if c.subject == USER]
        alerts = await collect(worker.bootstrap, [t.alerts, t.dlq], lambda rs: False, 2)
        seen = "\n".join(r.value.decode()[:400] for r in alerts)
        assert [c.action for c in commands] == ["lock"], f"{commands}\n{seen}"
        assert commands[0].detector == "correlation", f"{commands[0]}\n{seen}"
        assert took < 15, seen
