"""Small pure helpers several detectors share: bounded "distinct things seen recently" sets and
IP network tests. Everything here returns new values; nothing reads the clock."""

from __future__ import annotations

import ipaddress
from functools import lru_cache
from typing import TypeGuard

from relayguard.stream.records import Event, LoginEvent

IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# (thing, last time seen), oldest first. A detector keeps at most `cap` of them, so a busy key
# cannot grow its state; once a threshold is crossed the detector does not need more.
Recent = tuple[tuple[str, float], ...]


def touch(recent: Recent, thing: str, t: float, now: float, window: float, cap: int) -> Recent:
    """`recent` with `thing` seen at `t`, entries older than `now - window` dropped, and at
    most `cap` entries kept (the least recently seen go first)."""
    horizon = now - window
    if recent and len(recent) <= cap:
        last, at = recent[-1]
        if last == thing and t >= at and recent[0][1] >= horizon:
            # The common case (the same network, IP or user again, nothing expired): the
            # loop below would keep every entry and move `thing`, already last, to time `t`.
            return (*recent[:-1], (thing, t))
    seen = t
    kept: list[tuple[str, float]] = []
    for k, s in recent:
        if k == thing:
            seen = max(seen, s)
        elif s >= horizon:
            kept.append((k, s))
    if seen >= horizon:
        if kept and seen < kept[-1][1]:  # a late event: keep the list ordered by time
            kept.append((thing, seen))
            kept.sort(key=lambda ks: ks[1])
        else:
            kept.append((thing, seen))
    return tuple(kept[-cap:])


def live(recent: Recent, now: float, window: float) -> Recent:
    horizon = now - window
    return tuple((k, s) for k, s in recent if s >= horizon)


def count_live(recent: Recent, now: float, window: float) -> int:
    horizon = now - window
    if not recent or recent[0][1] >= horizon:  # oldest first: nothing expired
        return len(recent)
    return len([1 for _, s in recent if s >= horizon])


@lru_cache(maxsize=4096)
def parse_ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def in_networks(ip: str, networks: tuple[IpNetwork, ...]) -> bool:
    if not networks:
        return False
    addr = parse_ip(ip)
    return addr is not None and any(addr in net for net in networks)


@lru_cache(maxsize=4096)
def network_of(ip: str, v4_prefix: int = 16, v6_prefix: int = 48) -> str:
    """The network an address belongs to for "same or unrelated network" questions: its /16
    (IPv4) or /48 (IPv6, a typical site allocation). Unparseable text stands for itself."""
    if v4_prefix == 16 and ip.count(".") == 3 and ":" not in ip:  # fast path, no parsing
        a, b, _, _ = ip.split(".")
        if a.isdigit() and b.isdigit():
            return f"{int(a)}.{int(b)}.0.0/16"
    addr = parse_ip(ip)
    if addr is None:
        return ip
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    prefix = v4_prefix if addr.version == 4 else v6_prefix
    return str(ipaddress.ip_network(f"{addr}/{prefix}", strict=False))


def parse_networks(items: tuple[str, ...] | list[str]) -> tuple[IpNetwork, ...]:
    return tuple(ipaddress.ip_network(n, strict=False) for n in items)


BACKEND_FAILURE = "backend_unavailable"
# Not password guesses: the SASL backend was down (the server's fault), or "other", e.g. the
# client asked for a mechanism that is not offered (a protocol error, no password was tried).
NOT_GUESSES = frozenset({BACKEND_FAILURE, "other"})


def is_guess(event: Event) -> TypeGuard[LoginEvent]:
    """A failed login where the client tried credentials; no brute-force detector counts the
    others (NOT_GUESSES)."""
    return (isinstance(event, LoginEvent) and not event.success
            and event.failure_reason not in NOT_GUESSES)
