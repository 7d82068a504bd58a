"""Postfix SMTPD policy delegation protocol, sans I/O (in the style of h11).

Postfix sends `name=value` lines, an empty line ends a request; we answer `action=...` and an
empty line, and Postfix keeps the connection for further requests. `PolicyParser` turns bytes
into `PolicyRequest`s with bounded memory; `decide` and `send_event_from` are pure functions of
a request, the lock book and the time. relay/policy_server.py does the sockets.

For send events, Postfix must consult us at END-OF-MESSAGE too, i.e. `check_policy_service`
also in `smtpd_end_of_data_restrictions` (that is the only state with the real size).
"""

from __future__ import annotations

import functools
import hashlib
import re
from dataclasses import dataclass
from typing import NamedTuple

from relayguard.relay.lock_book import LockView
from relayguard.relay.recipient_domains import MAX_COUNTED, MAX_LISTED_DOMAINS, RecipientDomains
from relayguard.stream.policy import refuses_authenticated, spares
from relayguard.stream.records import SendEvent
from relayguard.stream.user_names import DEFAULT_USER_NAMES, UserNameMode, canonical_user

MAX_LINE = 8 * 1024
MAX_ATTRIBUTES = 256
# A Postfix request is ~1 KiB (30-odd attributes); 16 KiB leaves room for long certificate
# subjects and bounds the memory an unfinished request can hold.
MAX_REQUEST_BYTES = 16 * 1024
_NAME = re.compile(rb"[A-Za-z0-9_.\-]{1,64}")
DUNNO = "DUNNO"
# names Postfix 3.x sends: skip the regex for them (hot path)
_POSTFIX_ATTRIBUTES = (
    "request", "protocol_state", "protocol_name", "helo_name", "queue_id", "sender", "recipient",
    "client_address", "client_name", "reverse_client_name", "instance", "sasl_method",
    "sasl_username", "sasl_sender", "size", "ccert_subject", "ccert_issuer", "ccert_fingerprint",
    "ccert_pubkey_fingerprint", "encryption_protocol", "encryption_cipher", "encryption_keysize",
    "etrn_domain", "recipient_count", "stress", "client_port", "policy_context", "server_address",
    "server_port", "compatibility_level", "mail_version", "tls_sni",
)
_KNOWN: dict[bytes, str] = {n.encode(): n for n in _POSTFIX_ATTRIBUTES}


class HotAttributes(NamedTuple):
    """What relay/policy_server.py reads of a request (decide, recipient tracking, send
    events), each as sent (maybe empty), None when missing."""

    request: str | None
    protocol_state: str | None
    sasl_username: str | None
    client_address: str | None
    instance: str | None
    recipient: str | None
    queue_id: str | None
    sender: str | None
    size: str | None
    recipient_count: str | None
    encryption_protocol: str | None


_HOT_ATTRIBUTES = HotAttributes._fields
_HOT_INDEX = {name: i for i, name in enumerate(_HOT_ATTRIBUTES)}
# One clean request's decoded lines: each `name=value\n`, the name by the _NAME rule (the known
# names follow it too). A line named like one of _HOT_ATTRIBUTES is captured by its group (an
# alternative matches a line only if the line's name is exactly that one); a repeated group
# keeps its last capture, as the dict keeps the last value. Possessive, so a near miss fails
# at once instead of backtracking.
_CLEAN_REQUEST = re.compile(
    "(?:(?:" + "|".join(f"{name}=([^\n]*+)" for name in _HOT_ATTRIBUTES)
    + r"|[A-Za-z0-9_.\-]{1,64}+=[^\n]*+)\n)++")


class ProtocolError(Exception):
    """The peer is not speaking the policy protocol: close the connection without a reply."""


class PolicyRequest:
    """One request's attributes: all of them as a dict (`attrs`), one by name (`value`, `get`).

    The general parser path builds the dict. The one-request fast path instead keeps the
    request's text and the values of the few attributes the server reads (_HOT_ATTRIBUTES),
    captured by the same regex pass that checks the request; the dict is built only when
    `attrs` is asked for (equality, tests, an attribute outside that set), with the same
    values: splitting ~30 attributes into a dict was half of the server's own time."""

    __slots__ = ("_attrs", "_hot", "_text")

    def __init__(self, attrs: dict[str, str] | None = None) -> None:
        self._attrs: dict[str, str] | None = {} if attrs is None else attrs
        self._hot: HotAttributes | None = None
        self._text = ""

    @classmethod
    def _of_text(cls, text: str, hot: HotAttributes) -> PolicyRequest:
        """`text`: the request's lines, each `name=value` and ending in "\n"; `hot`: the last
        value of each of _HOT_ATTRIBUTES in it (None when missing)."""
        req = cls.__new__(cls)
        req._attrs = None
        req._hot = hot
        req._text = text
        return req

    @property
    def attrs(self) -> dict[str, str]:
        attrs = self._attrs
        if attrs is None:
            attrs = self._attrs = dict([line.split("=", 1)
                                        for line in self._text[:-1].split("\n")])
        return attrs

    @property
    def hot(self) -> HotAttributes:
        """The attributes the server reads, in one go (read once per request)."""
        hot = self._hot
        if hot is None:  # built from the dict each time: a caller may have changed it
            return HotAttributes._make(map(self.attrs.get, _HOT_ATTRIBUTES))
        return hot

    def value(self, name: str) -> str | None:
        """The attribute as sent (maybe empty), or None when missing: `attrs.get(name)`."""
        hot = self._hot
        if hot is not None:
            i = _HOT_INDEX.get(name)
            if i is not None:
                return hot[i]
        return self.attrs.get(name)

    def get(self, name: str) -> str | None:
        """The attribute, or None when missing or empty."""
        return self.value(name) or None

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, PolicyRequest):
            return NotImplemented
        return self.attrs == other.attrs

    __hash__ = None  # type: ignore[assignment]  # a dict inside, as before

    def __repr__(self) -> str:
        return f"PolicyRequest(attrs={self.attrs!r})"

    @property
    def request(self) -> str | None:
        return self.get("request")

    @property
    def protocol_state(self) -> str:
        return (self.value("protocol_state") or "").upper()

    @property
    def sasl_username(self) -> str | None:
        return self.get("sasl_username")

    @property
    def client_address(self) -> str | None:
        return self.get("client_address")

    @property
    def sender(self) -> str:
        return self.value("sender") or ""

    @property
    def queue_id(self) -> str | None:
        return self.get("queue_id")

    @property
    def instance(self) -> str | None:
        return self.get("instance")

    @property
    def encryption_protocol(self) -> str | None:
        return self.get("encryption_protocol")

    @property
    def recipient_count(self) -> int:
        return _count(self.value("recipient_count"))

    @property
    def size(self) -> int:
        return _count(self.value("size"))


def _count(value: str | None) -> int:
    """A numeric attribute: missing, empty, negative or not a number count as 0."""
    try:
        return max(0, int(value or 0))
    except ValueError:
        return 0


_hot_attributes = functools.partial(tuple.__new__, HotAttributes)  # from the regex's groups


class _Layout:
    """The names of a request, in order, as one regex that matches exactly a request with
    those lines (any values) and captures the values of _HOT_ATTRIBUTES. Postfix sends the
    same attributes in the same order every time, so after the first request of a connection
    the check is a literal match of the names instead of the general regex's per-line
    alternatives; a request that does not fit takes the general regex (the same result)."""

    __slots__ = ("hot", "regex")

    def __init__(self, names: tuple[str, ...]) -> None:
        last = {name: i for i, name in enumerate(names)}  # a repeated name: its last line
        captured = [i for i, name in enumerate(names) if name in _HOT_INDEX and last[name] == i]
        capture = set(captured)
        # group 1 never takes part (None): the group of every hot attribute not sent
        self.regex = re.compile("(?:(?!)())?" + "".join(
            f"{re.escape(name)}=([^\n]*+)\n" if i in capture else f"{re.escape(name)}=[^\n]*+\n"
            for i, name in enumerate(names)))
        group = {names[i]: g for g, i in enumerate(captured, 2)}
        # match.group(*hot): the values of _HOT_ATTRIBUTES in their order
        self.hot = tuple(group.get(name, 1) for name in _HOT_ATTRIBUTES)


# Layouts seen, by their names. Learnt only from requests that passed the general regex, and
# at most LAYOUTS of them (compiling one costs ~0.2 ms; a client sending new layouts cannot
# make the process compile more than that); when full, new layouts take the general regex.
LAYOUTS = 16
_layouts: dict[tuple[str, ...], _Layout] = {}


def _layout_of(text: str) -> _Layout | None:
    names = tuple([line.split("=", 1)[0] for line in text[:-1].split("\n")])
    layout = _layouts.get(names)
    if layout is None and len(_layouts) < LAYOUTS:
        layout = _layouts[names] = _Layout(names)
    return layout


class PolicyParser:
    """Feed it bytes as they arrive; get back the requests completed so far."""

    def __init__(self, max_line: int = MAX_LINE, max_attributes: int = MAX_ATTRIBUTES,
                 max_request_bytes: int = MAX_REQUEST_BYTES) -> None:
        self.max_line = max_line
        self.max_attributes = max_attributes
        self.max_request_bytes = max_request_bytes
        self._buf = bytearray()
        self._attrs: dict[str, str] = {}
        self._count = 0
        self._req_bytes = 0  # bytes of the current request in complete lines
        self._dead = False
        self._layout: _Layout | None = None  # of this client's last clean request

    @property
    def pending(self) -> bool:
        """True if a request has started but not ended (a disconnect now loses it)."""
        return bool(self._buf) or self._count > 0

    def feed(self, data: bytes) -> list[PolicyRequest]:
        if self._dead:
            raise ProtocolError("parser already failed")
        if not self._buf and not self._count and data[-2:] == b"\n\n":
            fast = self._one_request(data)
            if fast is not None:
                return [fast]
        try:
            self._buf += data
            if 10 not in data:  # common with tiny reads: no line completed (10: "\n")
                self._check_tail()
                return []
            last = self._buf.rindex(b"\n")
            chunk = bytes(self._buf[:last])
            del self._buf[: last + 1]
            if 0 in chunk:
                raise ProtocolError("NUL byte in the request")
            out = self._lines(chunk.split(b"\n"))
            self._check_tail()
            return out
        except ProtocolError:
            self._dead = True
            self._buf.clear()
            raise

    def _one_request(self, data: bytes) -> PolicyRequest | None:
        """The common case at C speed: `data` is exactly one complete, clean request (what a
        Postfix smtpd sends per read). Returns None for anything else (CR, NUL, stray empty
        lines, a line without `=`, a name that breaks the name rule, a limit reached): the
        general path below then gives the same result or the same error. Decoding the whole
        request at once equals decoding each value: `\n` and `=` are ASCII, and an ill-formed
        UTF-8 sequence never swallows an ASCII byte."""
        size = len(data) - 1  # the request's lines with their newlines, not the empty end line
        # `13 in data`, not `b"\r" in data`: with a bytes needle CPython first tries it as an
        # int, and building (then dropping) that TypeError costs more than the memchr
        if size > self.max_request_bytes or size > self.max_line or 13 in data or 0 in data:
            return None
        text = data[:-1].decode("utf-8", "replace")
        layout = self._layout
        if layout is not None:  # learnt under this parser's limits
            match = layout.regex.fullmatch(text)
            if match is not None:  # the same names as the last request: values only
                return PolicyRequest._of_text(text, _hot_attributes(match.group(*layout.hot)))
        if data.count(b"\n") - 1 > self.max_attributes:
            return None
        match = _CLEAN_REQUEST.fullmatch(text)
        if match is None:
            return None
        self._layout = _layout_of(text)
        return PolicyRequest._of_text(text, _hot_attributes(match.groups()))

    def _check_tail(self) -> None:
        """The unfinished line alone, or with the request it belongs to, is over its cap."""
        if len(self._buf) > self.max_line:
            raise ProtocolError(f"line longer than {self.max_line} bytes")
        tail = len(self._buf)
        if tail == 1 and self._buf[0] == 13:  # a lone CR may be the CRLF ending the request
            tail = 0
        if self._req_bytes + tail > self.max_request_bytes:
            raise ProtocolError(f"request longer than {self.max_request_bytes} bytes")

    def _lines(self, lines: list[bytes]) -> list[PolicyRequest]:
        # the hot loop of the policy service: locals only, no per-line method calls
        out: list[PolicyRequest] = []
        attrs, count, max_line, max_attrs = self._attrs, self._count, self.max_line, \
            self.max_attributes
        size, max_size = self._req_bytes, self.max_request_bytes
        for line in lines:
            if not line or line == b"\r":
                if count:  # a stray empty line is no request; Postfix never sends one
                    out.append(PolicyRequest(attrs))
                    attrs, count, size = {}, 0, 0
                continue
            if len(line) > max_line:
                raise ProtocolError(f"line longer than {max_line} bytes")
            size += len(line) + 1
            if size > max_size:
                raise ProtocolError(f"request longer than {max_size} bytes")
            if line[-1] == 13:  # tolerate CRLF
                line = line[:-1]
            name, eq, value = line.partition(b"=")
            key = _KNOWN.get(name)
            if key is None or not eq:
                if not eq or not _NAME.fullmatch(name):
                    raise ProtocolError(f"not an attribute line: {line[:60]!r}")
                key = name.decode("ascii")
            count += 1
            if count > max_attrs:
                raise ProtocolError(f"more than {max_attrs} attributes in one request")
            # values may be any bytes Postfix saw (HELO names, addresses): never fail on them
            attrs[key] = value.decode("utf-8", "replace")
        self._attrs, self._count, self._req_bytes = attrs, count, size
        return out


def format_reply(action: str) -> bytes:
    if not action or any(c in action for c in "\r\n\0"):
        raise ValueError(f"policy action must be one non-empty line: {action!r}")
    return b"action=" + action.encode("utf-8") + b"\n\n"


@dataclass(frozen=True, slots=True)
class DecisionConfig:
    reject_text: str = "Account locked by relayguard, contact your mail administrator"
    # for locks with an expiry (throttles): a temporary refusal, so the client retries later
    throttle_action: str = "DEFER 4.7.1 Sending rate limited by relayguard, try again later"
    # Off: unauthenticated sessions are not ours to judge. On: also refuse locked client IPs
    # before AUTH (needs check_policy_service in smtpd_client_restrictions).
    ip_locks_unauthenticated: bool = False
    # RELAYGUARD_USER_NAMES: how send events name the user (the lock book has its own copy)
    user_names: UserNameMode = DEFAULT_USER_NAMES

    def __post_init__(self) -> None:
        format_reply(self.reject_action)  # fail at start-up, not at the first locked user
        format_reply(self.throttle_action)

    @property
    def reject_action(self) -> str:
        return f"REJECT 5.7.1 {self.reject_text}"


_DECIDE_STATES = frozenset({"RCPT", "DATA", "END-OF-MESSAGE"})
_LOCK_STATES = _DECIDE_STATES | {"MAIL"}  # where an authenticated user's lock is enforced


def decide(request: PolicyRequest, locks: LockView, now: float, config: DecisionConfig) -> str:
    """The access(5) action for one policy request."""
    hot = request.hot
    return decide_on(hot.sasl_username or None, (hot.protocol_state or "").upper(),
                     hot.client_address, locks, now, config)


def decide_on(user: str | None, state: str, client: str | None, locks: LockView, now: float,
              config: DecisionConfig) -> str:
    """`decide` on the three attributes it reads (the server reads them once per request):
    `sasl_username` (None when missing or empty), `protocol_state` upper-cased ("" when
    missing) and `client_address` as sent."""
    lock = None
    if user is None:
        if not config.ip_locks_unauthenticated:
            return DUNNO
    else:
        if state not in _LOCK_STATES:
            return DUNNO
        lock = locks.active_lock("user", user, now)
        if lock is not None and spares(lock, client):
            lock = None  # scope "unfamiliar_networks": the user's own network; IP still checked
    if lock is None:
        if client:
            lock = locks.active_lock("ip", client, now)
            if lock is not None and user is not None and not refuses_authenticated(lock):
                lock = None  # scope "unauthenticated": this user authenticated correctly
        if lock is None:
            return DUNNO
    return config.throttle_action if lock.expires_at is not None else config.reject_action


# the same few users send again and again: NFC, a regex and lower() once per name (names are at
# most 320 characters here, so the cache holds at most a few MiB)
_canonical_user = functools.lru_cache(maxsize=4096)(canonical_user)


def send_event_id(relay_id: str, queue_id: str | None, instance: str | None) -> str:
    """Same message, same id: a retried END-OF-MESSAGE request dedupes downstream."""
    raw = f"postfix-policy:{relay_id}:{queue_id or '-'}:{instance or '-'}"
    if len(raw) <= 256:
        return raw
    return "postfix-policy:" + hashlib.sha256(raw.encode()).hexdigest()


def send_event_from(request: PolicyRequest, relay_id: str, now: float,
                    user_names: UserNameMode = DEFAULT_USER_NAMES,
                    recipients: RecipientDomains | None = None) -> SendEvent | None:
    """The send event for an authenticated END-OF-MESSAGE request, else None. The user is
    named in canonical form (stream/user_names.py), so the worker keys it as the lock book does.
    `recipients` is the message's recipient-domain summary (relay/recipient_domains.py), when
    this connection saw its RCPT requests; without it the event has no domain fields."""
    if request.protocol_state != "END-OF-MESSAGE":  # first: most requests are RCPT checks
        return None
    return end_of_message_event(request, relay_id, now, user_names, recipients)


def end_of_message_event(request: PolicyRequest, relay_id: str, now: float,
                         user_names: UserNameMode = DEFAULT_USER_NAMES,
                         recipients: RecipientDomains | None = None) -> SendEvent | None:
    """`send_event_from` for a request already known to be at END-OF-MESSAGE. Each attribute
    are read once, from `request.hot`."""
    hot = request.hot
    user = hot.sasl_username or None
    if user is None or len(user) > 320:
        return None
    user = _canonical_user(user, user_names)
    if not user:
        return None
    queue_id = hot.queue_id or None
    instance = hot.instance or None
    if queue_id is None and instance is None:
        return None  # no stable id: a retry could not be deduped
    tls = hot.encryption_protocol or None
    return SendEvent(
        event_id=send_event_id(relay_id, queue_id, instance),
        event_time=now,
        relay_id=relay_id,
        user=user,
        client_ip=hot.client_address or "unknown",
        sender=(hot.sender or "")[:998],
        recipient_count=min(_count(hot.recipient_count), 100_000),
        size=_count(hot.size),
        tls_protocol=None if tls is None else tls[:64],
        queue_id=None if queue_id is None else queue_id[:64],
        source="postfix-policy",
        recipient_domains=None if recipients is None
        else tuple(recipients.names[:MAX_LISTED_DOMAINS]),
        recipient_domain_count=None if recipients is None
        else min(recipients.count, MAX_COUNTED),
    )
