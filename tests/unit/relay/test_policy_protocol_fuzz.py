"""Hypothesis fuzzing of the policy protocol core (PolicyParser, decide, send_event_from).

Properties: (1) whatever bytes arrive, split however, the parser raises nothing but
ProtocolError, and once failed stays failed; (2) a stream cut at any byte boundary (or at many)
gives the same outcome as fed whole: the same requests, or an error in both cases; (3) decide
and send_event_from answer any parsed request without raising, with a sendable reply."""

from __future__ import annotations

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from relayguard.relay.lock_book import LockBook
from relayguard.relay.policy_protocol import (
    _HOT_ATTRIBUTES,
    _POSTFIX_ATTRIBUTES,
    DUNNO,
    DecisionConfig,
    PolicyParser,
    PolicyRequest,
    ProtocolError,
    decide,
    format_reply,
    send_event_from,
)
from relayguard.stream.records import LockCommand
from relayguard.stream.user_names import canonical_user

NOW = 1_800_000_000.0
FUZZ = settings(max_examples=300, deadline=None,
                suppress_health_check=[HealthCheck.too_slow])

# parsers with the real limits and with tiny ones, so the limits themselves get fuzzed
PARSERS = st.sampled_from([
    {}, {"max_line": 40, "max_attributes": 3, "max_request_bytes": 90},
    {"max_line": 8, "max_attributes": 64, "max_request_bytes": 20},
])
# the fast path captures _HOT_ATTRIBUTES by name: near misses (a hot name with a prefix or a
# suffix, in another case) must not be taken for them
NEAR_MISSES = st.builds(lambda n, pre, post, up: (n.upper() if up else n) if not (pre or post)
                        else pre + n + post, st.sampled_from(_HOT_ATTRIBUTES),
                        st.sampled_from(["", "x", "_", "sasl_"]),
                        st.sampled_from(["", "_count", "2", ".", "-"]), st.booleans())
NAMES = st.one_of(st.sampled_from(_POSTFIX_ATTRIBUTES), st.sampled_from(_HOT_ATTRIBUTES),
                  NEAR_MISSES, st.from_regex(r"[A-Za-z0-9_.\-]{1,12}", fullmatch=True))
VALUES = st.binary(max_size=40).map(lambda b: b.replace(b"\n", b"").replace(b"\0", b""))
REQUEST = st.lists(st.tuples(NAMES, VALUES), min_size=1, max_size=8)
# a stream of mostly well-formed requests, with junk sometimes spliced in
STREAM = st.lists(st.one_of(
    REQUEST.map(lambda kv: b"".join(k.encode() + b"=" + v + b"\n" for k, v in kv) + b"\n"),
    st.binary(max_size=30),
    st.sampled_from([b"\r\n", b"\n", b"\r", b"=", b"\0", b"x" * 70 + b"\n"]),
), max_size=6).map(b"".join)


def _outcome(parser: PolicyParser, chunks: list[bytes]) -> tuple[list[PolicyRequest], bool]:
    """Requests parsed before any error, and whether one was raised. Only ProtocolError may
    come out; after it the parser stays failed."""
    got: list[PolicyRequest] = []
    for chunk in chunks:
        try:
            got += parser.feed(chunk)
        except ProtocolError:
            try:
                parser.feed(b"request=smtpd_access_policy\n\n")
            except ProtocolError:
                return got, True
            raise AssertionError("a failed parser accepted more input") from None
    return got, False


def _cut(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    return [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True)]


@FUZZ
@given(st.binary(max_size=600), st.lists(st.integers(0, 10_000), max_size=20), PARSERS)
@example(b"\0\n", [], {})
@example(b"a=" + b"b" * 20_000, [5, 9000], {})
def test_arbitrary_bytes_only_ever_raise_protocol_error(data: bytes, cuts: list[int],
                                                         limits: dict[str, int]) -> None:
    _outcome(PolicyParser(**limits), _cut(data, cuts))


@FUZZ
@given(STREAM, st.lists(st.integers(0, 10_000), max_size=12), PARSERS)
# a request exactly at the byte cap whose CRLF end arrives as CR, then LF
@example(b"a=bcdef\na=bcdef\na=b\n\r\n", [21],
         {"max_line": 8, "max_attributes": 64, "max_request_bytes": 20})
def test_any_cuts_give_the_same_outcome_as_whole(data: bytes, cuts: list[int],
                                                 limits: dict[str, int]) -> None:
    whole, whole_failed = _outcome(PolicyParser(**limits), [data])
    split, split_failed = _outcome(PolicyParser(**limits), _cut(data, cuts))
    assert split_failed == whole_failed
    if not whole_failed:
        assert split == whole


@FUZZ
@given(REQUEST, PARSERS)
def test_a_request_split_at_every_byte_boundary_parses_as_whole(
        kv: list[tuple[str, bytes]], limits: dict[str, int]) -> None:
    data = b"".join(k.encode() + b"=" + v + b"\n" for k, v in kv) + b"\n"
    whole, failed = _outcome(PolicyParser(**limits), [data])
    if not failed:
        assert len(whole) == 1
        # one trailing CR is the CRLF tolerance; a repeated name keeps its last value
        assert whole[0].attrs == {k: v.removesuffix(b"\r").decode("utf-8", "replace")
                                  for k, v in kv}
    for i in range(len(data) + 1):
        assert _outcome(PolicyParser(**limits), [data[:i], data[i:]]) == (whole, failed), i
    assert _outcome(PolicyParser(**limits), [bytes([b]) for b in data]) == (whole, failed)


_BOOK = LockBook()
_BOOK.apply(LockCommand("c1", "mallory", "user", "lock", "r", "d", {}, NOW, None, "t", 1))
_BOOK.apply(LockCommand("c2", "198.51.100.66", "ip", "lock", "r", "d", {}, NOW, NOW + 60,
                        "t", 1))
CONFIGS = [DecisionConfig(), DecisionConfig(ip_locks_unauthenticated=True)]


@FUZZ
@given(st.dictionaries(st.sampled_from(_POSTFIX_ATTRIBUTES),
                       st.one_of(st.text(max_size=30),
                                 st.sampled_from(["mallory", "198.51.100.66", "RCPT",
                                                  "END-OF-MESSAGE", "1e30", "-5"]))),
       st.sampled_from(CONFIGS))
def test_decide_and_send_event_answer_any_request(attrs: dict[str, str],
                                                  config: DecisionConfig) -> None:
    req = PolicyRequest(attrs)
    action = decide(req, _BOOK, NOW, config)
    assert action in (DUNNO, config.reject_action, config.throttle_action)
    assert format_reply(action).endswith(b"\n\n")
    event = send_event_from(req, "relay-f", NOW)
    if event is not None:
        # the relay sends the canonical name (stream/user_names.py), never another user's
        assert event.user == canonical_user(req.sasl_username or "")
        assert event.recipient_count >= 0
        assert event.size >= 0


ONE_REQUEST = REQUEST.map(lambda kv: b"".join(k.encode() + b"=" + v + b"\n" for k, v in kv)
                        + b"\n")


@FUZZ
@given(st.one_of(ONE_REQUEST, STREAM), PARSERS)
@example(b"a=\xe2\x82\nb=\xff=\xc3\n\n", {})  # ill-formed UTF-8 right before `\n` and `=`
@example(b"a=b\n\n\n", {})
@example(b"=b\n\n", {})
def test_one_request_fast_path_equals_the_general_path(data: bytes,
                                                       limits: dict[str, int]) -> None:
    """The C-speed path for one whole request either declines or gives exactly what the
    general per-line path gives (the general path is forced by feeding one byte first)."""
    fast = PolicyParser(**limits)._one_request(data) if data[-2:] == b"\n\n" else None
    general = _outcome(PolicyParser(**limits), [data[:1], data[1:]])
    if fast is not None:
        # the values captured while checking, before any dict exists, then the dict
        hot = {name: fast.value(name) for name in _HOT_ATTRIBUTES}
        assert general == ([fast], False)
        assert hot == {name: general[0][0].attrs.get(name) for name in _HOT_ATTRIBUTES}
        assert fast.hot == general[0][0].hot == tuple(hot.values())


@FUZZ
@given(st.lists(st.tuples(NAMES, VALUES), min_size=1, max_size=12))
def test_fast_path_values_equal_the_dict_for_clean_requests(kv: list[tuple[str, bytes]]) -> None:
    """Requests the fast path takes (no CR in values): each attribute read by name, hot or
    not, before and after the dict is built, is the general path's value; repeated names
    keep their last value."""
    data = b"".join(k.encode() + b"=" + v.replace(b"\r", b"") + b"\n" for k, v in kv) + b"\n"
    fast = PolicyParser()._one_request(data)
    assert fast is not None
    got, failed = _outcome(PolicyParser(), [data[:1], data[1:]])  # the general path
    assert not failed
    (general,) = got
    names = {k for k, _ in kv} | set(_HOT_ATTRIBUTES) | {"missing"}
    before = {name: (fast.value(name), fast.get(name)) for name in names}
    assert before == {name: (general.attrs.get(name), general.attrs.get(name) or None)
                      for name in names}
    assert fast.hot == general.hot == tuple(general.attrs.get(n) for n in _HOT_ATTRIBUTES)
    assert fast.attrs == general.attrs
    assert {name: fast.value(name) for name in names} == {n: v for n, (v, _) in before.items()}
