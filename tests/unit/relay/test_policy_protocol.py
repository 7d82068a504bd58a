"""The sans-I/O policy protocol core: parser, replies."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from relayguard.relay.policy_protocol import (
    PolicyParser,
    PolicyRequest,
    ProtocolError,
    format_reply,
)

REQ = (
    b"request=smtpd_access_policy\nprotocol_state=RCPT\nprotocol_name=ESMTP\n"
    b"client_address=192.0.2.10\nsasl_username=alice@example.com\nsender=a@example.com\n"
    b"recipient=b@example.org\nqueue_id=\ninstance=1f2a.6543abcd.12345.0\n"
    b"policy_context=x=y==z\n\n"
)


def test_one_request() -> None:
    (req,) = PolicyParser().feed(REQ)
    assert req.request == "smtpd_access_policy"
    assert req.protocol_state == "RCPT"
    assert req.sasl_username == "alice@example.com"
    assert req.queue_id is None  # empty at first RCPT
    assert req.get("policy_context") == "x=y==z"  # split on the first '=' only


def test_byte_by_byte() -> None:
    p = PolicyParser()
    got: list[PolicyRequest] = []
    for i in range(len(REQ)):
        got += p.feed(REQ[i : i + 1])
        assert p.pending or i == len(REQ) - 1
    assert got == PolicyParser().feed(REQ)
    assert not p.pending


def test_several_requests_in_one_chunk_and_a_partial_tail() -> None:
    p = PolicyParser()
    got = p.feed(REQ * 3 + REQ[:20])
    assert len(got) == 3 and p.pending
    assert len(p.feed(REQ[20:])) == 1


def test_unknown_missing_empty_and_zero_attributes() -> None:
    (req,) = PolicyParser().feed(
        b"request=smtpd_access_policy\nfuture_attr=1\nsasl_username=\nsize=0\n"
        b"recipient_count=bogus\n\n"
    )
    assert req.get("future_attr") == "1"
    assert req.sasl_username is None and req.client_address is None
    assert req.size == 0 and req.recipient_count == 0
    assert req.protocol_state == "" and req.sender == ""


def test_crlf_and_stray_empty_lines_tolerated() -> None:
    got = PolicyParser().feed(b"\n\nrequest=smtpd_access_policy\r\nsize=5\r\n\r\n")
    assert len(got) == 1 and got[0].size == 5


def test_non_utf8_value_is_kept_not_fatal() -> None:
    (req,) = PolicyParser().feed(b"helo_name=\xff\xfe\n\n")
    assert req.get("helo_name") == "\ufffd\ufffd"


def test_oversized_line_fails_without_waiting_for_newline() -> None:
    p = PolicyParser(max_line=100)
    p.feed(b"helo_name=" + b"a" * 80)
    with pytest.raises(ProtocolError):
        p.feed(b"a" * 30)
    with pytest.raises(ProtocolError):  # dead once failed
        p.feed(b"\n\n")


def test_oversized_line_inside_a_chunk() -> None:
    with pytest.raises(ProtocolError):
        PolicyParser(max_line=100).feed(b"helo_name=" + b"a" * 200 + b"\n\n")


@pytest.mark.parametrize(
    "garbage",
    [b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", b"\x16\x03\x01\x02\x00\x01\x00\n", b"=value\n",
     b"name\n", b"request\n", b"a=\x00\n", b"na me=1\n"],
)
def test_garbage_is_a_protocol_error(garbage: bytes) -> None:
    with pytest.raises(ProtocolError):
        PolicyParser().feed(garbage)


def test_too_many_attributes() -> None:
    p = PolicyParser(max_attributes=10)
    p.feed(b"".join(b"a%d=1\n" % i for i in range(10)))
    with pytest.raises(ProtocolError):
        p.feed(b"a10=1\n")


def test_attribute_count_resets_per_request() -> None:
    p = PolicyParser(max_attributes=3)
    assert len(p.feed(b"a=1\nb=2\nc=3\n\n" * 5)) == 5


def test_reply() -> None:
    assert format_reply("DUNNO") == b"action=DUNNO\n\n"
    assert format_reply("REJECT 5.7.1 no") == b"action=REJECT 5.7.1 no\n\n"
    for bad in ("", "DUNNO\n", "REJECT x\r\naction=OK", "a\0"):
        with pytest.raises(ValueError):
            format_reply(bad)


_name = st.from_regex(r"[a-z_]{1,20}", fullmatch=True)
_value = st.binary(max_size=40).filter(lambda b: b"\n" not in b and b"\0" not in b
                                       and not b.endswith(b"\r"))
_request = st.dictionaries(_name, _value, min_size=1, max_size=8)


@given(st.lists(_request, min_size=1, max_size=5), st.lists(st.integers(0, 10_000), max_size=12))
def test_any_split_gives_the_same_requests(reqs: list[dict[str, bytes]], cuts: list[int]) -> None:
    stream = b"".join(b"".join(k.encode() + b"=" + v + b"\n" for k, v in r.items()) + b"\n"
                      for r in reqs)
    whole = PolicyParser().feed(stream)
    assert [set(r.attrs) for r in whole] == [set(r) for r in reqs]
    points = sorted({c % (len(stream) + 1) for c in cuts})
    p = PolicyParser()
    got: list[PolicyRequest] = []
    for a, b in zip([0, *points], [*points, len(stream)], strict=True):
        got += p.feed(stream[a:b])
    assert got == whole
