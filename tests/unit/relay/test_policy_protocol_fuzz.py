"""Hypothesis fuzzing of the policy protocol core (PolicyParser, decide, send_event_from).

Properties: (1) whatever bytes arrive, split however, the parser raises nothing but
ProtocolError, and once failed stays failed; (2) a stream cut at any byte boundary (or at many)
gives the same outcome as fed whole: the same requests, or an error in both cases; (3) decide
and send_event_from answer any parsed request without raising, with a sendable reply."""

from __future__ import annotations

import pytest
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


def _request(kv: list[tuple[str, bytes]]) -> bytes:
    return b"".join(k.encode() + b"=" + v + b"\n" for k, v in kv) + b"\n"


# what may happen to a client's next request: other values, a line more or less, two lines
# swapped, a name changed (to a near miss too), a line repeated, junk in a value
MUTATION = st.sampled_from(["values", "drop", "add", "swap", "rename", "repeat", "cr", "nul",
                            "newline", "noeq"])


def _mutate(kv: list[tuple[str, bytes]], how: str, i: int, name: str,
            value: bytes) -> list[tuple[str, bytes]]:
    kv = list(kv)
    j = i % len(kv)
    if how == "values":
        kv = [(k, v + value) for k, v in kv]
    elif how == "drop" and len(kv) > 1:
        del kv[j]
    elif how == "add":
        kv.insert(j, (name, value))
    elif how == "swap":
        kv[0], kv[j] = kv[j], kv[0]
    elif how == "rename":
        kv[j] = (name, kv[j][1])
    elif how == "repeat":
        kv.insert(j, (kv[j][0], value))
    elif how in ("cr", "nul", "newline", "noeq"):
        junk = {"cr": b"\r", "nul": b"\0", "newline": b"\n", "noeq": b"\nx"}[how]
        kv[j] = (kv[j][0], kv[j][1] + junk)
    return kv


@FUZZ
@given(st.lists(st.tuples(NAMES, VALUES), min_size=1, max_size=10), st.lists(st.tuples(
    MUTATION, st.integers(0, 20), NAMES, VALUES), min_size=1, max_size=4), PARSERS)
def test_a_learnt_layout_gives_what_the_general_path_gives(
        kv: list[tuple[str, bytes]], mutations: list[tuple[str, int, str, bytes]],
        limits: dict[str, int]) -> None:
    """A connection's parser learns the layout (names in order) of a clean request and
    matches the next ones against it: for the same layout and for any other request (the
    layout path declines, the general regex takes it), every request read by the same
    parser gives what the general path gives, attributes, hot values and errors alike."""
    from relayguard.relay.policy_protocol import _layouts

    _layouts.clear()  # other examples filled the process-wide table: learn afresh
    parser = PolicyParser(**limits)
    stream = [_request([(k, v.replace(b"\r", b"")) for k, v in kv])]
    for how, i, name, value in mutations:
        stream.append(_request(_mutate(kv, how, i, name, value.replace(b"\r", b""))))
    for data in stream:
        general = _outcome(PolicyParser(**limits), [data[:1], data[1:]])
        try:
            got = parser.feed(data)
        except ProtocolError:
            assert general[1], data
            parser = PolicyParser(**limits)  # a failed parser stays failed; go on afresh
            continue
        assert (got, False) == general, data
        for req, ref in zip(got, general[0], strict=True):
            assert req.hot == ref.hot
            assert {n: req.value(n) for n in _HOT_ATTRIBUTES} == dict(
                zip(_HOT_ATTRIBUTES, ref.hot, strict=True))


def test_the_layout_path_is_taken_and_the_table_is_bounded() -> None:
    """The second request of a layout is read through it; once LAYOUTS layouts are known, a
    new one is read by the general regex alone (and still right)."""
    from relayguard.relay import policy_protocol as pp

    pp._layouts.clear()
    parser = PolicyParser()
    first = _request([("request", b"smtpd_access_policy"), ("protocol_state", b"RCPT"),
                      ("sasl_username", b"alice"), ("recipient", b"a@b.example")])
    assert len(parser.feed(first)) == 1
    assert parser._layout is not None and len(pp._layouts) == 1
    (two,) = parser.feed(first.replace(b"alice", b"bob"))
    assert two.hot.sasl_username == "bob" and two.hot.recipient == "a@b.example"
    assert two.hot.client_address is None and two == PolicyRequest(
        {"request": "smtpd_access_policy", "protocol_state": "RCPT", "sasl_username": "bob",
         "recipient": "a@b.example"})
    for i in range(pp.LAYOUTS + 5):
        other = PolicyParser()
        (req,) = other.feed(b"request=smtpd_access_policy\nx%d=1\nsize=7\n\n" % i)
        assert req.hot.size == "7" and req.attrs[f"x{i}"] == "1"
    assert len(pp._layouts) == pp.LAYOUTS
    assert other._layout is None


@pytest.mark.parametrize(("learnt", "then"), [
    (b"x.y=1\n\n", b"x y=1\n\n"),  # `.` in a name is a dot, not any character
    (b"x.y=1\n\n", b"x=y=1\n\n"),
    (b"a-b=1\nsize=2\n\n", b"a-b=1\nsize=2\nsize=3\n\n"),
    (b"size=1\nsize=2\n\n", b"size=1\nsize=\n\n"),
    (b"request=smtpd_access_policy\n\n", b"request=smtpd_access_policy\nrequest=x\n\n"),
])
def test_layout_corner_cases(learnt: bytes, then: bytes) -> None:
    from relayguard.relay.policy_protocol import _layouts

    _layouts.clear()
    parser = PolicyParser()
    assert parser.feed(learnt) == _outcome(PolicyParser(), [learnt[:1], learnt[1:]])[0]
    general = _outcome(PolicyParser(), [then[:1], then[1:]])
    try:
        got = (parser.feed(then), False)
    except ProtocolError:
        got = ([], True)
    assert got == general
    for req, ref in zip(got[0], general[0], strict=True):
        assert req.hot == ref.hot
