"""The per-connection recipient-domain tracker behind the send event's recipient_domains and
recipient_domain_count: what counts as a domain, order, bounds under hostile input."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from relayguard.relay.recipient_domains import (
    MAX_LISTED_DOMAINS,
    RecipientDomains,
    RecipientTracker,
    recipient_domain,
)


@pytest.mark.parametrize(("recipient", "domain"), [
    ("bob@Example.COM", "example.com"),
    ("bob@example.com.", "example.com"),  # the root label
    ('"a@b"@Example.org', "example.org"),  # the last @ starts the domain
    ("x@[192.0.2.1]", "[192.0.2.1]"),
    ("x@[IPv6:2001:DB8::1]", "[ipv6:2001:db8::1]"),
    ("x@BÜCHER.example", "bücher.example"),
    ("postmaster", None),  # no domain: not counted
    ("bob@", None),
    ("bob@.", None),
    ("bob@exa mple.com", None),
    ("bob@exa\x00mple.com", None),
    ("bob@<example.com>", None),
    ("bob@" + "a" * 254, None),
    ("bob@" + "a" * 253, "a" * 253),
])
def test_recipient_domain(recipient: str, domain: str | None) -> None:
    assert recipient_domain(recipient) == domain


def test_distinct_domains_first_seen_first_and_case_folded() -> None:
    t = RecipientTracker()
    for rcpt in ["a@B.example", "b@a.example", "c@b.EXAMPLE", "local", "d@c.example"]:
        t.rcpt("inst-1", rcpt)
    assert t.finish("inst-1") == RecipientDomains(("b.example", "a.example", "c.example"), 3)
    assert t.finish("inst-1") is None  # forgotten at END-OF-MESSAGE


def test_list_is_capped_and_count_goes_on_up_to_the_limit() -> None:
    t = RecipientTracker(max_counted=50)
    for i in range(80):
        t.rcpt("m", f"u@d{i}.example")
        t.rcpt("m", f"v@D{i}.example")  # the same domain again
    summary = t.finish("m")
    assert summary is not None
    assert summary.names == tuple(f"d{i}.example" for i in range(MAX_LISTED_DOMAINS))
    assert summary.count == 50  # saturates at max_counted (Postfix's recipient limit)


def test_a_new_instance_forgets_the_old_message() -> None:
    t = RecipientTracker()
    t.rcpt("m1", "a@one.example")
    t.rcpt("m2", "b@two.example")  # RSET or a new MAIL FROM: m1 never ends here
    assert t.finish("m1") is None
    t.rcpt("m3", "c@three.example")
    assert t.finish("m3") == RecipientDomains(("three.example",), 1)


def test_end_of_another_message_or_no_instance() -> None:
    t = RecipientTracker()
    t.rcpt(None, "a@one.example")  # no instance: nothing ties it to END-OF-MESSAGE
    assert t.instance is None and not t.names
    t.rcpt("m1", "a@one.example")
    assert t.finish("m9") is None
    assert t.finish("m1") is None  # the other message's end forgot m1 too
    t.rcpt("m2", "")  # RCPT without a recipient attribute: the message is still known
    assert t.finish("m2") == RecipientDomains((), 0)


def test_bad_limit() -> None:
    with pytest.raises(ValueError, match="max_counted"):
        RecipientTracker(0)


HOSTILE = st.one_of(st.text(max_size=300),
                    st.builds(lambda d: f"u@{d}", st.text(max_size=300)),
                    st.sampled_from(["a@x.example", "b@X.EXAMPLE.", "c@y.example", "@", "@@"]))


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["m1", "m2", "", "m1"]), HOSTILE), max_size=120),
       st.integers(1, 40))
def test_bounded_and_exact_below_the_limit(rcpts: list[tuple[str, str]], limit: int) -> None:
    t = RecipientTracker(max_counted=limit)
    expected: list[str] = []  # a reference model of the current message
    current: str | None = None
    for instance, rcpt in rcpts:
        t.rcpt(instance, rcpt)
        if instance:
            if instance != current:
                current, expected = instance, []
            domain = recipient_domain(rcpt)
            if domain is not None and domain not in expected:
                expected.append(domain)
        assert len(t.names) <= MAX_LISTED_DOMAINS and len(t._seen) <= limit
    summary = t.finish(current)
    if current is None:
        assert summary is None
        return
    assert summary is not None
    assert summary.count == min(len(expected), limit)
    assert list(summary.names) == expected[:min(MAX_LISTED_DOMAINS, limit)]
    for name in summary.names:
        assert 1 <= len(name) <= 253 and name == name.lower() and "@" not in name


def _reference_domain(recipient: str) -> str | None:
    """recipient_domain as it was before its cache (commit cafb7dd), kept to compare."""
    import re
    import unicodedata

    at = recipient.rfind("@")
    if at < 0:
        return None
    domain = recipient[at + 1:]
    if domain.endswith("."):
        domain = domain[:-1]
    if not re.fullmatch(r'[^\s\x00-\x1f\x7f@<>"\\,;()]{1,253}', domain):
        return None
    domain = domain.lower()
    if not domain.isascii():
        domain = unicodedata.normalize("NFC", domain)
        if len(domain) > 253:
            return None
    return domain


_LABEL = st.sampled_from(["example", "EXAMPLE", "b\u00fccher", "B\u00dcCHER", "\u0130x", "a" * 60,
                          "[192.0.2.1]", "[IPv6:2001:DB8::1]", "x y", "<x>", "\u212a", "\ufb03"])


@settings(max_examples=300, deadline=None)
@given(st.one_of(
    st.lists(_LABEL, min_size=1, max_size=6).map(".".join),
    st.text(max_size=30),
    st.integers(248, 258).map(lambda n: "a" * n),  # around the 253-character limit
    st.integers(248, 258).map(lambda n: "a" * (n - 1) + "."),
), st.sampled_from(["bob@", "", "a@b@", "x"]), st.booleans())
def test_recipient_domain_equals_the_uncached_rule(domain: str, local: str,
                                                   twice: bool) -> None:
    """The cached domain rule gives what the rule gave before it had a cache, on the first
    call and on a repeated one (a cache hit)."""
    recipient = local + domain
    expected = _reference_domain(recipient)
    assert recipient_domain(recipient) == expected
    if twice:
        assert recipient_domain(recipient) == expected
