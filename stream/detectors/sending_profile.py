"""Sending profile: what this user's mail normally looks like, and how far the last hour departs
from it.

Learned per user, in compact hashed sets (`hashed_set`, 2 bytes an entry): the recipient domains
the user writes to (256, least recently used forgotten), the envelope senders and sender domains
the user uses (16), the client networks (/16, /48) the user logs in and sends from (24), and the
user's own novelty: the share of recipient domains that were new, an EWMA over every domain seen.

Over the last hour (six 10-minute buckets) it counts recipients, recipient domains seen, new
recipient domains (at most `per_message_new_cap` a message, so one mailing-list post to a new
list is one message's worth of novelty, not a spam run), bounces (delivery events `bounced` or
`expired`), messages whose envelope sender is outside the user's own address, known senders and
domain ("foreign"), and new addresses of the user's own domain. Each is worth points:

- new domains: learned users (`learn_seconds` and `learn_domains` observations) 1 point at
  `new_domains_low` (4) new domains that are also 3x what the user's own novelty predicts, 2 at
  `new_domains_high` (12) and 4x; users known for a week but with little mail (dormant, light)
  1 point at 8, 2 at 25, since for them most domains are new; users first seen this week none;
- bounces: 1 point at 2 bounces, 2 at 5, both only with a bounce rate of at least 10% of the
  hour's recipients (SES reviews an account at 5% bounces and pauses it at 10%);
- senders: 1 point for a foreign envelope sender, 2 for three; 1 for two or more new addresses
  of the user's own domain (made-up boxes of a spam tool).

The sum is the hour's *departure*. On every send or delivery with a departure of at least 1 the
detector gives a signal-only finding (evidence `departure`, `signals`) that correlation combines
with a suspicious login; on a login from a network the user never used (after learning) a
signal-only finding with `signal = "new_network"`, which correlation counts as a weak
suspicious login. Only at `standalone_departure` (4: e.g. many new domains and many bounces)
does it give an ordinary finding: slow spam from the user's own country, with no suspicious
login at all (issue 9 item 3), is caught by the profile, not by lowering fixed limits.

While the hour departs (any point), a learned profile learns nothing new, so a spam run does
not teach the profile that its domains and senders are normal. Defaults are our choice, measured on
`relayguard simulate` (docs/detectors.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from relayguard.stream import windows
from relayguard.stream.detector import DetectorSpec
from relayguard.stream.detectors import hashed_set
from relayguard.stream.detectors.common import IpNetwork, in_networks, network_of
from relayguard.stream.evolve import evolve
from relayguard.stream.records import DeliveryEvent, Event, Finding, LoginEvent, SendEvent

NAME = "sending_profile"
DAY = 86400.0
WINDOW = windows.WindowSpec(3600.0, 600.0)
FAILED = frozenset({"bounced", "expired"})


@dataclass(frozen=True, slots=True)
class Params:
    learn_seconds: float = 7 * DAY  # Defender for Cloud Apps learns for 7 days
    learn_domains: int = 40  # recipient-domain observations before novelty is trusted
    learn_logins: int = 5  # successful logins before a new network means anything
    max_domains: int = 256
    max_senders: int = 16
    max_networks: int = 24
    novelty_alpha: float = 0.02
    novelty_prior: float = 0.1
    per_message_new_cap: int = 8
    new_domains_low: int = 4
    new_domains_high: int = 12
    novelty_multiple_low: float = 3.0
    novelty_multiple_high: float = 4.0
    unlearned_new_low: int = 8
    unlearned_new_high: int = 25
    bounces_low: int = 2
    bounces_high: int = 5
    bounce_rate: float = 0.10
    foreign_high: int = 3
    new_own_senders: int = 2
    # one message to only new domains (see _to_new_domains): learned users, and users known a
    # week with little mail
    message_new_low: int = 2
    message_new_unlearned: int = 3  # 2 locked a user back from a long silence (simulator)
    standalone_departure: int = 4
    standalone_cooldown_seconds: float = 3600.0
    ignore_networks: tuple[IpNetwork, ...] = ()


@dataclass(frozen=True, slots=True)
class State:
    first_seen: float | None = None
    logins: int = 0
    observations: int = 0  # recipient domains seen (capped), for the learning period
    novelty: float = -1.0  # EWMA share of new recipient domains; < 0 until the first one
    domains: bytes = b""
    senders: bytes = b""
    networks: bytes = b""
    recipients: windows.Buckets = ()
    seen: windows.Buckets = ()  # recipient domains observed
    new_domains: windows.Buckets = ()
    bounces: windows.Buckets = ()
    foreign: windows.Buckets = ()
    own_new: windows.Buckets = ()
    last_standalone: float | None = None
    quiet_after: float = float("-inf")  # an hour after the last departure: learn again


def initial_state() -> State:
    return State()


def _add(b: windows.Buckets, t: float, n: int, now: float) -> windows.Buckets:
    return windows.add(b, WINDOW, t, n, now) if n else b


def _total(b: windows.Buckets, now: float) -> int:
    return windows.total(b, WINDOW, now) if b else 0


def departure(params: Params, state: State, now: float,
              novelty: float | None = None) -> tuple[int, dict[str, Any]]:
    """Points for the last hour and what earned them (judged by `novelty` when given, else by
    the state's own)."""
    p = _points(params, state, now, state.novelty if novelty is None else novelty)
    p_dom, p_b, p_s, new, seen, expected, learned, bounces, rcpts, rate, foreign, own_new = p
    signals = {"new_domains": new, "domains_seen": seen, "expected_new": round(expected, 1),
               "learned": learned, "bounces": bounces, "recipients": rcpts,
               "bounce_rate": round(rate, 3), "foreign_senders": foreign,
               "new_own_senders": own_new,
               "points": {"new_domains": p_dom, "bounces": p_b, "senders": p_s}}
    return p_dom + p_b + p_s, signals


def _points(params: Params, state: State, now: float, novelty: float) -> tuple[Any, ...]:
    """The three point counts and the figures behind them (no dict: asked on every send)."""
    new, seen = _total(state.new_domains, now), _total(state.seen, now)
    old = state.first_seen is not None and now - state.first_seen >= params.learn_seconds
    learned = old and state.observations >= params.learn_domains
    novelty = novelty if novelty >= 0 else params.novelty_prior
    expected = novelty * seen
    p_dom = 0
    if learned:
        if new >= params.new_domains_high and new >= params.novelty_multiple_high * expected:
            p_dom = 2
        elif new >= params.new_domains_low and new >= params.novelty_multiple_low * expected:
            p_dom = 1
    elif old and new >= params.unlearned_new_high:  # known long, little mail: dormant, light
        p_dom = 2
    elif old and new >= params.unlearned_new_low:
        p_dom = 1  # (a user first seen this week: everything is new, nothing to judge)
    bounces, rcpts = _total(state.bounces, now), _total(state.recipients, now)
    rate = bounces / max(1, rcpts)
    p_b = 0
    if rate >= params.bounce_rate:
        p_b = 2 if bounces >= params.bounces_high else 1 if bounces >= params.bounces_low else 0
    foreign, own_new = _total(state.foreign, now), _total(state.own_new, now)
    p_s = min(2, (2 if foreign >= params.foreign_high else 1 if foreign else 0)
              + (1 if own_new >= params.new_own_senders else 0))
    return (p_dom, p_b, p_s, new, seen, expected, learned, bounces, rcpts, rate, foreign,
            own_new)


@lru_cache(maxsize=8192)
def canonical_sender(sender: str) -> str:
    """The address without its VERP / sub-address tag ("bounce+x7f@d" -> "bounce@d"), so a
    newsletter's per-message bounce addresses are one sender."""
    s = sender.lower()
    at = s.rfind("@")
    if at == -1:
        return s
    local = s[:at]
    cut = min((i for i in (local.find("+"), local.find("=")) if i != -1), default=-1)
    return s if cut == -1 else local[:cut] + s[at:]


@lru_cache(maxsize=8192)
def _lower(user: str) -> str:
    return user.lower()


@lru_cache(maxsize=8192)
def _own_domain(user: str) -> str | None:
    at = user.rfind("@")
    return user[at + 1:].lower() if at != -1 else None


def step(params: Params, state: State, event: Event) -> tuple[State, list[Finding]]:
    user = event.user
    if user is None:
        return state, []
    if isinstance(event, LoginEvent) and not event.success:
        return state, []
    t = event.event_time
    if isinstance(event, DeliveryEvent):
        if event.status not in FAILED:
            return state, []
        state = evolve(state, bounces=_add(state.bounces, t, 1, t))
        return _judge(params, state, event, user, t)
    first = t if state.first_seen is None else min(state.first_seen, t)
    # For an hour after a departure a learned profile learns nothing (a spam run must not
    # teach it its domains and senders); a profile still learning takes everything.
    learning = (t >= state.quiet_after or state.observations < params.learn_domains
                or t - first < params.learn_seconds)
    if in_networks(event.client_ip, params.ignore_networks):
        return (state if first == state.first_seen else evolve(state, first_seen=first)), []
    net = network_of(event.client_ip)
    new_net = (not hashed_set.contains(state.networks, net)
               and state.logins >= params.learn_logins
               and t - first >= params.learn_seconds)
    networks = state.networks
    if not new_net or learning:
        networks = hashed_set.touch(networks, net, params.max_networks)
    if isinstance(event, LoginEvent):
        state = evolve(state, first_seen=first, networks=networks,
                       logins=min(state.logins + 1, 1_000_000))
        if not new_net:
            return state, []
        return state, [Finding(
            detector=NAME, subject=user, subject_kind="user", event_time=t,
            summary=f"{user} logged in from a network never used before ({net})",
            evidence={"signal": "new_network", "network": net, "client_ip": event.client_ip,
                      "networks_known": hashed_set.size(state.networks)},
            signal_only=True)]
    assert isinstance(event, SendEvent)
    before = state.novelty
    observed, fresh = _observe_send(params, state, event, user, t, learning, first, networks)
    # Judge the message against the novelty the user had before it: a spam message's own new
    # domains must not raise the expectation it is judged by (20 new domains at once would
    # otherwise "predict" themselves). The message's novelty counts only if it did not depart.
    p_dom, p_b, p_s = _points(params, observed, t, before)[:3]
    if p_dom + p_b + p_s < 1:
        # the common case: nothing departs, the message is learned
        return observed, _to_new_domains(params, state, first, before, event, user, t, fresh)
    state, found = _judge(params, evolve(observed, novelty=before), event, user, t)
    if not found or not _is_learned(params, state, t):
        state = evolve(state, novelty=observed.novelty)
    return state, found


def _is_learned(params: Params, state: State, now: float) -> bool:
    return (state.first_seen is not None and now - state.first_seen >= params.learn_seconds
            and state.observations >= params.learn_domains)


def _to_new_domains(params: Params, state: State, first: float, novelty: float,
                    event: SendEvent, user: str, t: float, fresh: int) -> list[Finding]:
    """A signal-only finding for one message whose recipient domains are all new to a user
    known for `learn_seconds` (at least `message_new_low` of them, and 3x what the user's own
    novelty predicts; `message_new_unlearned` for users with little mail): alone it is
    nothing, right after a strong suspicious login it is the first spam message (correlation
    gives it one point), so the lock comes on that message, not minutes later."""
    listed = len(event.recipient_domains or ())
    if fresh != listed or fresh < params.message_new_low or t - first < params.learn_seconds:
        return []
    learned = state.observations >= params.learn_domains
    nov = novelty if novelty >= 0 else params.novelty_prior
    if learned and fresh < params.novelty_multiple_low * nov * listed:
        return []
    if not learned and fresh < params.message_new_unlearned:
        return []
    return [Finding(
        detector=NAME, subject=user, subject_kind="user", event_time=t,
        summary=f"{user}: a message to {fresh} recipient domains the user never wrote to",
        evidence={"signal": "message_to_new_domains", "message_new_domains": fresh,
                  "learned": learned, "novelty": round(nov, 3), "client_ip": event.client_ip,
                  "relay_id": event.relay_id},
        signal_only=True)]


def _observe_send(params: Params, state: State, event: SendEvent, user: str, t: float,
                  learning: bool, first: float, networks: bytes) -> tuple[State, int]:
    """The state with the message learned (when `learning`) and counted, and how many of its
    recipient domains were new."""
    domains, senders = state.domains, state.senders
    listed = event.recipient_domains or ()
    novelty = state.novelty if state.novelty >= 0 else params.novelty_prior
    new = 0
    a = params.novelty_alpha
    for d in listed:
        h = hashed_set.digest(d)
        at = hashed_set.find(domains, h)
        fresh = at == -1
        new += fresh
        if learning:
            novelty += a * (fresh - novelty)
            domains = hashed_set.touch_found(domains, h, at, params.max_domains)
    sender = canonical_sender(event.sender)
    own = _own_domain(user)
    foreign = own_new = 0
    if sender and sender != _lower(user):
        s_dom = _own_domain(sender)
        known = (hashed_set.contains(senders, sender)
                 or (s_dom is not None and hashed_set.contains(senders, "@" + s_dom)))
        if not known:
            if s_dom is not None and s_dom == own:
                own_new = 1
            else:
                foreign = 1
        if learning:
            senders = hashed_set.touch(senders, sender, params.max_senders)
            if s_dom is not None and s_dom != own:
                senders = hashed_set.touch(senders, "@" + s_dom, params.max_senders)
    return evolve(
        state, first_seen=first, networks=networks, domains=domains, senders=senders,
        novelty=novelty if listed else state.novelty,
        observations=min(state.observations + len(listed), 1_000_000),
        recipients=_add(state.recipients, t, event.recipient_count, t),
        seen=_add(state.seen, t, len(listed), t),
        new_domains=_add(state.new_domains, t, min(new, params.per_message_new_cap), t),
        foreign=_add(state.foreign, t, foreign, t),
        own_new=_add(state.own_new, t, own_new, t),
    ), new


def _judge(params: Params, state: State, event: SendEvent | DeliveryEvent, user: str,
           t: float) -> tuple[State, list[Finding]]:
    points, signals = departure(params, state, t)
    if points < 1:
        return state, []
    state = evolve(state, quiet_after=t + WINDOW.length)
    evidence = {"departure": points, "signals": signals, "window_seconds": int(WINDOW.length),
                "relay_id": event.relay_id}
    if isinstance(event, SendEvent):
        evidence["client_ip"] = event.client_ip
    found = [Finding(detector=NAME, subject=user, subject_kind="user", event_time=t,
                     summary=f"{user}: sending departs from the user's profile "
                             f"({_what(signals)})", evidence=evidence, signal_only=True)]
    last = state.last_standalone
    if points >= params.standalone_departure and (
            last is None or t - last >= params.standalone_cooldown_seconds):
        state = evolve(state, last_standalone=t)
        found.append(evolve(found[0], evidence={**evidence, "standalone": True},
                             signal_only=False))
    return state, found


def _what(s: dict[str, Any]) -> str:
    parts = []
    if s["points"]["new_domains"]:
        parts.append(f"{s['new_domains']} new recipient domains in 1 h")
    if s["points"]["bounces"]:
        parts.append(f"{s['bounces']} bounces ({s['bounce_rate']:.0%})")
    if s["points"]["senders"]:
        parts.append(f"{s['foreign_senders']} foreign and {s['new_own_senders']} new "
                     "envelope senders")
    return ", ".join(parts)


SPEC = DetectorSpec(
    name=NAME,
    key_kind="user",
    reacts_to=frozenset({"login_ok", "send", "delivery"}),
    params_type=Params,
    initial_state=initial_state,
    step=step,
    description="learned recipient domains, senders, networks and bounces; departures",
)
