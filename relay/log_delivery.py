"""Postfix delivery outcomes -> `delivery` events (schemas/delivery-event.schema.json), attributed
to the user who submitted the message.

Postfix names the user only on the smtpd line that starts a message
(``QID: client=host[ip], sasl_method=M, sasl_username=U``); the delivery agents later log
``QID: to=<r@d>, relay=..., delay=..., delays=..., dsn=5.1.1, status=bounced (...)`` and the queue
manager ``QID: from=<s>, status=expired, returned to sender``. QueueUsers remembers queue id ->
user between the two, bounded: an LRU of at most `max_entries` ids (the least recently touched
goes first) holding none untouched for longer than `max_age_s` (a deferred message is touched by
every retry, so it stays while it is retried). Evictions are counted. qmgr's ``QID: removed``
lines are not read (they would cost a header parse on a tenth of a busy log): an id stays until
evicted, so the cap, not the queue, bounds the memory (about 250 bytes an id).

What becomes an event (documented decision): every ``bounced`` recipient (at most
MAX_REPORTS_PER_QUEUE_ID per message), the first ``deferred`` line of a message (retries of the
same message repeat it every queue run and say nothing new), ``expired``. ``sent`` deliveries
are only events when asked for (LogParser(sent_deliveries=True)): they are one per recipient,
as many as all other events together, and the send events already count the messages; without
it ``status=sent`` lines are dropped by the prefilter and cost nothing. Lines for queue ids with
no authenticated submission (bounce notices, local pickup, mail from outside) make no event.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from dataclasses import asdict, dataclass

import orjson

from relayguard.stream.records import DeliveryEvent
from relayguard.stream.timefmt import to_rfc3339

STATUSES = ("sent", "bounced", "deferred", "expired")
MAX_REPORTS_PER_QUEUE_ID = 100  # a message to 5,000 dead addresses is not 5,000 events
_SWEEP_EVERY = 64  # QueueUsers looks for ids past their age every this many adds and touches

# The structured part Postfix writes after to=<...>: relay, optional conn_use, delays, dsn,
# status (qmgr's "expired" has its own line). Anchored on all of it, so a recipient or a remote
# server's reply text has to fake the whole sequence to be mistaken for it.
PF_DELIVERY = re.compile(
    r"(?P<qid>[0-9A-Za-z]{5,20}): to=<(?P<rcpt>[^>]{0,1000})>, (?:orig_to=<[^>]{0,1000}>, )?"
    r"relay=[^\s,]{1,600}, (?:conn_use=\d{1,9}, )?delay=[\d.]{1,20}, delays=[\d./]{1,60}, "
    r"dsn=(?P<dsn>[245]\.\d{1,3}\.\d{1,3}), status=(?P<status>sent|bounced|deferred)\b"
)
PF_EXPIRED = re.compile(
    r"(?P<qid>[0-9A-Za-z]{5,20}): from=<[^>]{0,1000}>, status=expired, returned to sender"
)
_DOMAIN = re.compile(r"[a-z0-9](?:[a-z0-9_-]{0,62}\.?)*|\[[0-9a-f.:]{2,45}\]")
# Delivery agents whose lines carry status=: smtp/lmtp (also as postfix/relay/smtp), local,
# virtual, pipe, error/retry, discard; qmgr logs "expired".
DELIVERY_AGENTS = frozenset(("smtp", "lmtp", "local", "virtual", "pipe", "error", "retry",
                             "discard"))


def delivery_to_dict(e: DeliveryEvent) -> dict[str, object]:
    """The event as its schema's JSON object; absent optional fields are left out."""
    d = {k: v for k, v in asdict(e).items() if v is not None}
    d["type"] = "delivery"
    d["event_time"] = to_rfc3339(e.event_time)
    return d


def encode_delivery(e: DeliveryEvent) -> bytes:
    return orjson.dumps(delivery_to_dict(e))


def delivery_key(e: DeliveryEvent) -> bytes:
    """Keyed (and so partitioned) by user, like login and send events."""
    return e.user.encode()


def recipient_domain(rcpt: str) -> str | None:
    """Lower-case domain of an address, None when it has none we would trust."""
    at = rcpt.rfind("@")
    if at < 0:
        return None
    dom = rcpt[at + 1:].strip().rstrip(".").lower()
    if not dom or len(dom) > 253 or not _DOMAIN.fullmatch(dom):
        return None
    return dom


@dataclass(slots=True)
class Queued:
    user: str
    seen: float  # log time of the last line about this queue id
    deferred: bool = False  # a deferred event was already sent for this message
    reports: int = 0  # events sent for this message


@dataclass(slots=True)
class QueueStats:
    remembered: int = 0  # authenticated submissions seen
    evicted_full: int = 0  # dropped, oldest first, because max_entries were held
    evicted_age: int = 0  # dropped after max_age_s without a line about them
    unattributed: int = 0  # delivery lines for queue ids we do not know
    suppressed: int = 0  # outcomes not sent: repeated deferrals, over the per-message cap


class QueueUsers:
    """Queue id -> submitting user, bounded in entries and in age (see the module doc)."""

    def __init__(self, max_entries: int = 100_000, max_age_s: float = 6 * 3600.0) -> None:
        self.max_entries = max_entries
        self.max_age_s = max_age_s
        self.stats = QueueStats()
        self._ids: OrderedDict[tuple[str, str], Queued] = OrderedDict()
        self._latest = float("-inf")
        self._ops = 0

    def __len__(self) -> int:
        return len(self._ids)

    def add(self, qid: tuple[str, str], user: str, t: float) -> None:
        ids = self._ids
        if qid in ids:
            del ids[qid]  # a reused short queue id: the newest submission owns it
        ids[qid] = Queued(user, t)
        self.stats.remembered += 1
        if len(ids) > self.max_entries:
            ids.popitem(last=False)
            self.stats.evicted_full += 1
        if t > self._latest:  # _expire(t), inlined: one call a client= line
            self._latest = t
        self._ops += 1
        if not self._ops % _SWEEP_EVERY:
            self._sweep()

    def touch(self, qid: tuple[str, str], t: float) -> Queued | None:
        """The entry of this queue id (marked as seen now), None when unknown or too old."""
        self._expire(t)
        q = self._ids.get(qid)
        if q is None:
            self.stats.unattributed += 1
            return None
        if t > q.seen:
            q.seen = t
        self._ids.move_to_end(qid)
        return q

    def _expire(self, t: float) -> None:
        """Drop ids untouched for max_age_s; the sweep runs every _SWEEP_EVERY calls (an id
        may outlive its age by that many lines; a sweep after a quiet spell is a few pops)."""
        if t > self._latest:
            self._latest = t
        self._ops += 1
        if not self._ops % _SWEEP_EVERY:
            self._sweep()

    def _sweep(self) -> None:
        limit = self._latest - self.max_age_s
        ids = self._ids
        while ids:
            q = next(iter(ids.values()))
            if q.seen >= limit:
                return
            ids.popitem(last=False)
            self.stats.evicted_age += 1
