"""`GET /api/status/{user|ip}/{subject}`: what the worker knows about one subject, answered by
the worker that owns the subject's partition. `?kafka=1` adds what `relayguard status` adds from
Kafka (latest lock command, relay acks, recent findings; bounded by `?scan=N` records from the end
of each partition, default 2000).

Routing: a worker that does not own the partition forwards the request to the owner through
`app.router` and hands back its answer. The owner is looked up by the *source* topic (events for
users, events.by-ip for IPs), not by the table: Faust's `@app.table_route` hashes the table's
changelog key, which is the JSON-quoted subject (`"alice"`), while the state lives on the
partition of the raw key the relays send (`alice`); the two hash to different partitions for
about half the subjects, so `table_route` would send those to a worker without their state
(tests/unit/test_status_api.py shows one). Faust's own forwarding (`route_req`) copies the
incoming headers, so it cannot mark a request as forwarded; this one adds a header, and a
forwarded request is always answered locally: a rebalance in flight never makes two workers
bounce one request between them.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any, Protocol

import aiohttp
import faust
from aiokafka.errors import KafkaError
from faust.web import Request, Response, View

from relayguard.agents import state_codec
from relayguard.agents.status_view import status_document, subject_problem
from relayguard.foundation import status_reads
from relayguard.foundation.settings import Settings
from relayguard.stream.engine import CoreParams

log = logging.getLogger("relayguard.worker")
ROUTED_HEADER = "X-Relayguard-Routed-By"
FORWARD_TIMEOUT = 30.0  # the owner may read Kafka (?kafka=1): three bounded reads
MAX_SCAN = 100_000


def _ident(url: Any) -> tuple[str, int]:
    return (url.host or "", int(url.port or 80))


class SourceTopics(Protocol):
    events: Any  # fills the user table
    by_ip_topic: Any  # fills the IP table


def register_status(app: faust.App, settings: Settings, tables: Mapping[str, Any],
                    params: CoreParams, outputs: SourceTopics) -> None:
    """`tables`: subject kind -> its state table; `outputs`: the app's topics (KafkaOutputs)."""
    source_topics = {"user": outputs.events, "ip": outputs.by_ip_topic}

    async def forward(view: View, request: Request, dest: Any) -> Response:
        url = request.url.with_scheme(dest.scheme or "http").with_host(dest.host) \
            .with_port(int(dest.port or 80))
        try:
            async with app.http_client.get(
                url, headers={ROUTED_HEADER: str(app.conf.canonical_url)},
                timeout=aiohttp.ClientTimeout(total=FORWARD_TIMEOUT),
            ) as resp:
                body = await resp.text()
                return view.text(body, content_type=resp.content_type, status=resp.status)
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            return view.json({"error": f"the worker owning this subject ({dest}) did not answer:"
                                       f" {exc or type(exc).__name__}"}, status=502)

    @app.page("/api/status/{kind}/{subject}")
    class Status(View):
        async def get(self, request: Request, kind: str, subject: str) -> Response:
            problem = subject_problem(kind, subject)
            try:
                scan = int(request.query.get("scan", "2000"))
                if not 1 <= scan <= MAX_SCAN:
                    raise ValueError
            except ValueError:
                problem = problem or f"scan must be a number from 1 to {MAX_SCAN}"
            if problem:
                return self.json({"error": f"bad subject: {problem}"}, status=400)
            routed_by = request.headers.get(ROUTED_HEADER)
            if routed_by is None:
                try:
                    dest = app.router.external_topic_key_store(source_topics[kind],
                                                               subject.encode())
                except KeyError:
                    return self.json({"error": "no worker owns this subject's partition right "
                                               "now (starting or rebalancing); retry shortly"},
                                     status=503)
                if _ident(dest) != _ident(app.conf.canonical_url):
                    return await forward(self, request, dest)
            now = time.time()
            stored = tables[kind].get(subject)
            error = None
            try:
                state = None if stored is None else state_codec.loads(stored)
            except state_codec.UndecodableState as exc:
                state, error = None, f"stored state is unreadable: {exc}"
            doc = status_document(kind, subject, state, params, now)  # type: ignore[arg-type]
            doc["served_by"] = str(app.conf.canonical_url)
            doc["routed_from"] = routed_by
            if error:
                doc["state_error"] = error
            if request.query.get("kafka") == "1":  # the CLI's extras, read by this worker
                try:
                    doc.update(await status_reads.kafka_extras(
                        settings, kind, subject, doc["lock"]["command_id"], scan))
                except (KafkaError, OSError, TimeoutError) as exc:
                    doc["kafka_error"] = f"Kafka did not answer: {exc or type(exc).__name__}"
            return self.json(doc)
