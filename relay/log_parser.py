"""Mail-log lines -> LoginEvents. Pure: no I/O, no clock; all state is bounded and per process.

What counts as a login (documented decision):
- Failure: Postfix ``warning: host[ip]: SASL MECH authentication failed: [REASON][,
  sasl_username=U]`` (the reason may be empty) and Exim ``NAME authenticator failed for ...
  [ip]: 535 ... (set_id=U)``. Postfix before 3.7.8 / 3.8.3 / 3.9 names no user; it is then
  taken from a Dovecot auth verdict for the same IP seen shortly before (same log stream, or
  another followed file), else user=None (per-IP counting still works). Dovecot verdicts
  (``passwd-file(U,ip): Password mismatch``, SQL, LDAP ``invalid credentials``, PAM
  ``pam_authenticate() failed: ...``, ``unknown user``; 2.3 and 2.4 prefixes; syslog or
  Dovecot's own log file) alone never make an event, so following both logs never counts one
  attempt twice. A reason that blames the SASL backend ("Connection lost to authentication
  server", temporary failures, Exim 435) becomes failure_reason="backend_unavailable";
  ``Invalid authentication mechanism`` (the client asked for a mechanism that is not offered)
  becomes "other". Detectors count neither as a password guess.
- Success: Postfix logs no line for a successful AUTH itself at normal verbosity; it logs
  ``QID: client=host[ip], sasl_method=M, sasl_username=U`` when an authenticated client starts a
  message. The first such line of an smtpd session (pid + connect/disconnect) is the login
  success; later messages of that session add no login event. Dovecot's auth process only logs
  successes at debug level and then without the client IP, so those are not used. Exim: ``<=``
  lines with ``A=authenticator:user``, one per (pid, ip, user) within EXIM_SUCCESS_DEDUP_S.
- Dovecot's submission service (``submission-login``) is a relay of its own: its ``Login:`` /
  ``Logged in:`` line is a success, ``(auth failed, N attempts ...)`` is N failures (at most
  MAX_ATTEMPTS_PER_LINE), source "dovecot-log". Other Dovecot login services (imap, pop3) are
  not relays and make no events.
- TLS: ``... TLS connection established from host[ip]: TLSv1.3 with cipher ...`` is remembered
  per smtpd process (needs smtpd_tls_loglevel >= 1); sessions without it carry tls_protocol=None.
  Dovecot logs only that TLS was used: tls_protocol="TLS".

- Password hashes: with Dovecot's ``auth_verbose_passwords = sha1:N`` its verdicts end in
  ``(SHA1 of given password: <hex>)``; the Postfix failure the verdict joins gets
  password_hash="sha1:<hex>" (``= plain`` logs the password itself: it is hashed here to
  sha1:<8 hex> and never copied). Lines without a verdict carry no hash.
- Delivery outcomes (deliveries=True, as `hook tail` / `hook journal` run it): see
  relay.log_delivery; taken with pop_deliveries() after each feed.

Speed: `feed` matches one regex (_LINE) first: the common RFC 3164 header and, for smtpd, the
message forms the rules act on (connect/disconnect, TLS, SASL failure, client=), so those lines
are split and classified in one C call (`lastgroup`) with no prefilter; other programs are
decided by name (a cached kind) and a needle or two of their rules; only Dovecot lines that may
be a verdict, other header forms and odd lines ("\n" inside, Exim) take the general path:
log_patterns.may_matter (a few substring tests), parse_header, _dispatch. Session state is a
tuple per "prog[pid]"; stamps are turned into seconds once per distinct stamp and reference hour;
Dovecot verdicts are kept per client IP and found by key; user names, IPs, failure texts and
verdict texts go through small bounded caches. tests/unit/relay_logs/test_log_parser_fast.py
checks the fast path against the general one on a mutated corpus.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, tzinfo
from typing import cast

from relayguard.relay import log_patterns as P
from relayguard.relay.log_delivery import (
    DELIVERY_AGENTS,
    MAX_REPORTS_PER_QUEUE_ID,
    PF_DELIVERY,
    PF_EXPIRED,
    QueueUsers,
    recipient_domain,
)
from relayguard.relay.log_header import (
    LEVEL_RE,
    MAX_LINE_CHARS,
    Header,
    parse_header,
    rfc3164_seconds,
)
from relayguard.relay.log_patterns import clean_ip
from relayguard.stream.records import DeliveryEvent, DeliveryStatus, LoginEvent
from relayguard.stream.user_names import DEFAULT_USER_NAMES, UserNameMode, canonical_user_or_none

DOVECOT_MATCH_WINDOW_S = 30.0  # a Dovecot verdict older than this is not the one Postfix reports
EXIM_SUCCESS_DEDUP_S = 300.0
VERDICTS_PER_IP = 8  # a burst from one IP needs only its latest few verdicts
NAME_CACHE = 8192
STAMP_CACHE = 4096  # distinct RFC 3164 stamps converted per reference hour (cleared when full)
_MISSING = object()
_NO_DATE = -math.inf  # in the stamp table: a stamp of no such date ("Feb 30", "25:00:00")
MAX_ATTEMPTS_PER_LINE = 20  # "(auth failed, 5000 attempts ...)" does not become 5000 events

# An smtpd process's current session: (client IP, TLS protocol, login success already sent).
# A tuple, replaced on change. connect and disconnect both leave _NO_SESSION: the connect line's
# client IP is not kept, as nothing could tell it from none (a client= line from another IP
# starts a new session anyway, one from the same IP finds no TLS and no success either way).
_SessionState = tuple[str | None, str | None, bool]
_NO_SESSION: _SessionState = (None, None, False)

# The one-regex fast path of `feed`: the common RFC 3164 header (what log_header.FAST_HEADER
# takes: stamp, host, prog[pid] or prog), an optional level (the empty group _MSG marks where
# the message starts) and, for an smtpd program with a pid, the message forms the rules act on
# (log_patterns.SMTPD_FORMS), so a session, failure or client= line is split and classified by
# one C call; `lastgroup` names the form, None when there is none or the program is not smtpd.
# Left to the general path (no match): Exim programs (parse_header strips their inner stamps)
# and pids with a leading zero. `key` is the session key "prog[pid]" (_session_key), "nopid"
# an smtpd line without a pid (the general path keys it as pid 0).
_LINE = re.compile(
    r"(?P<stamp>[A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d) [^\s<]\S*+(?<!:) "
    r"(?!exim)(?P<key>(?P<prog>[A-Za-z0-9_.@/-]{1,128}+)(?:(?<=[ /]smtpd)(?P<smtpd>))?"
    r"(?:\[(?P<pid>[1-9][0-9]{0,9}+)\])?): (?:" + LEVEL_RE + r")?()"
    r"(?(smtpd)(?(pid)" + P.SMTPD_FORMS + r"|(?P<nopid>)))"
)
_G = _LINE.groupindex
_STAMP, _KEY, _PROG, _PID = _G["stamp"], _G["key"], _G["prog"], _G["pid"]
_MSG = _PID + 1  # unnamed, so that lastgroup is None when no form follows
_T_IP, _T_PROTO = _G["t_ip"], _G["t_proto"]
_F_IP, _F_MECH, _F_TAIL = _G["f_ip"], _G["f_mech"], _G["f_tail"]
_C_QID, _C_IP, _C_MECH, _C_USER = _G["c_qid"], _G["c_ip"], _G["c_mech"], _G["c_user"]


def _session_key(prog: str, pid: int | None) -> str:
    """smtpd sessions are keyed "prog[pid]" (pid 0 without one), the text _LINE's `key` group
    takes from a line: no int() and no tuple per line. prog holds no "[" when it comes from a
    header; a journal identifier might, and the key still names one (prog, pid): the pid is
    what follows the last "["."""
    return f"{prog}[{pid or 0}]"


# What a program's lines can be, as _dispatch decides it (cached per program name).
_OTHER, _SMTPD, _EXIM, _DOVECOT, _QMGR, _AGENT = range(6)
_PROG_KINDS: dict[str, int] = {}
_PROG_CACHE = 1024


def _prog_kind(prog: str) -> int:
    kind = _PROG_KINDS.get(prog)
    if kind is None:
        if len(_PROG_KINDS) >= _PROG_CACHE:
            _PROG_KINDS.clear()
        kind = _PROG_KINDS[prog] = _classify_prog(prog)
    return kind


def _classify_prog(prog: str) -> int:
    if prog.startswith("exim"):  # feed leaves these to parse_header (inner Exim stamps)
        return _EXIM
    if prog.endswith("/smtpd") or prog == "smtpd":
        return _SMTPD
    if prog in ("dovecot", "auth") or prog.startswith(("dovecot/", "dovecot-")):
        return _DOVECOT
    if "/" in prog:
        agent = prog.rsplit("/", 1)[-1]
        if agent == "qmgr":
            return _QMGR
        if agent in DELIVERY_AGENTS:
            return _AGENT
    return _OTHER


_LOGIN_FIELDS = ("event_id", "event_time", "relay_id", "user", "client_ip", "success",
                 "tls_protocol", "sasl_mechanism", "failure_reason", "source", "password_hash",
                 "geo")
_LoginMaker = Callable[[str, float, str, str | None, str, bool, str | None, str | None,
                        str | None, str, str | None], LoginEvent]


def _login_maker() -> _LoginMaker:
    """LoginEvent(event_id, ..., password_hash) with geo=None, built by setting the slots
    through their descriptors: the frozen dataclass's __init__ calls object.__setattr__ once a
    field, about half of what a login line costs the parser. The same object (class, every
    field); used only while LoginEvent is the frozen slots dataclass of these fields with no
    __post_init__, else LoginEvent itself (test_log_parser_fast checks both)."""
    fields = getattr(LoginEvent, "__dataclass_fields__", {})
    if (tuple(fields) != _LOGIN_FIELDS or hasattr(LoginEvent, "__post_init__")
            or getattr(LoginEvent, "__slots__", None) != _LOGIN_FIELDS):
        return LoginEvent
    (s_id, s_time, s_relay, s_user, s_ip, s_ok, s_tls, s_mech, s_reason, s_source, s_hash,
     s_geo) = (getattr(LoginEvent, name).__set__ for name in _LOGIN_FIELDS)
    new = object.__new__

    def make(event_id: str, event_time: float, relay_id: str, user: str | None,
             client_ip: str, success: bool, tls_protocol: str | None,
             sasl_mechanism: str | None, failure_reason: str | None, source: str,
             password_hash: str | None) -> LoginEvent:
        e = new(LoginEvent)
        s_id(e, event_id)
        s_time(e, event_time)
        s_relay(e, relay_id)
        s_user(e, user)
        s_ip(e, client_ip)
        s_ok(e, success)
        s_tls(e, tls_protocol)
        s_mech(e, sasl_mechanism)
        s_reason(e, failure_reason)
        s_source(e, source)
        s_hash(e, password_hash)
        s_geo(e, None)
        return e

    return make


_login_event = _login_maker()


@dataclass(slots=True)
class _Verdict:
    time: float
    user: str
    reason: str
    password_hash: str | None = None


@dataclass(slots=True)
class LogParser:
    relay_id: str
    tz: tzinfo = UTC  # zone of stamps that carry none (RFC 3164, Exim without log_timezone)
    max_sessions: int = 4096
    max_verdicts: int = 1024  # client IPs with remembered Dovecot verdicts
    user_names: UserNameMode = DEFAULT_USER_NAMES  # RELAYGUARD_USER_NAMES (stream/user_names.py)
    # Delivery outcomes (relay.log_delivery): off by default (replay wants logins only); the
    # followers turn them on and take them with pop_deliveries() after each feed.
    deliveries: bool = False
    sent_deliveries: bool = False  # also status=sent (one event per delivered recipient)
    queue: QueueUsers = field(default_factory=QueueUsers)
    _pending: list[DeliveryEvent] = field(default_factory=list)
    _sessions: OrderedDict[str, _SessionState] = field(default_factory=OrderedDict)  # by key
    _verdicts: OrderedDict[str, list[_Verdict]] = field(default_factory=OrderedDict)
    _exim_seen: OrderedDict[tuple[int | None, str, str], float] = field(
        default_factory=OrderedDict)
    _names: dict[str, str | None] = field(default_factory=dict)  # see _user()
    # RFC 3164 stamp text -> seconds (_NO_DATE: no such date) for reference hour _hour in zone
    # _stamp_tz (see _stamps_for)
    _stamps: dict[str, float] = field(default_factory=dict)
    _hour: float = math.nan
    _stamp_tz: tzinfo | None = None
    _ref: float = math.nan  # the reference time _stamps was last checked against

    def _user(self, name: str | None) -> str | None:
        """canonical_user_or_none of the (at most 320 chars of the) name, cached: the same few
        thousand users come back on every line. Cleared when full, so it stays bounded."""
        if not name:
            return None
        got = self._names.get(name, _MISSING)
        if got is _MISSING:
            if len(self._names) >= NAME_CACHE:
                self._names.clear()
            got = self._names[name] = canonical_user_or_none(name[:320], self.user_names)
        return got  # type: ignore[return-value]

    def _stamps_for(self, reference_time: float) -> dict[str, float]:
        """The stamp table for this reference time: RFC 3164 stamp text -> rfc3164_seconds of
        it (_NO_DATE: no such date) in the reference hour and zone; a new hour or zone clears
        it."""
        hour = reference_time // 3600
        if hour != self._hour or self.tz is not self._stamp_tz:
            self._stamps.clear()
            self._hour, self._stamp_tz = hour, self.tz
        self._ref = reference_time
        return self._stamps

    def _new_stamp(self, stamp: str) -> float:
        stamps = self._stamps
        if len(stamps) >= STAMP_CACHE:
            stamps.clear()
        t = rfc3164_seconds(stamp, int(self._hour), self.tz)
        stamps[stamp] = _NO_DATE if t is None else t
        return stamps[stamp]

    def _passes(self, line: str) -> bool:
        """The prefilter (log_patterns.may_matter), and status=sent when those are wanted."""
        return P.may_matter(line) or (self.sent_deliveries and "status=sent" in line)

    def feed(
        self, line: str, reference_time: float, line_id: str | None = None
    ) -> list[LoginEvent]:
        """Events in this line. `line_id` (file identity + offset) makes event ids replay-stable;
        without it the id is a hash of the line text."""
        m = _LINE.match(line)
        if m is None or len(line) > MAX_LINE_CHARS:
            return self._feed_general(line, reference_time, line_id)
        # The common header. What the rules would do is decided from the form the regex found
        # (smtpd) or the program, with no prefilter: each form holds one of its needles, and
        # the checks of other programs below are those of their rules. A "\n" inside the line
        # or a "\r" ending it (the general path cuts the message there) cannot change a
        # session or TLS line's outcome; the other lines with one take the general path.
        form = m.lastgroup
        if form is None:  # not an smtpd form
            prog = m[_PROG]
            kind = _PROG_KINDS.get(prog)
            if kind is None:
                kind = _prog_kind(prog)
            if kind == _OTHER:
                return []
            if "\n" in line or line[-1] == "\r":
                return self._feed_general(line, reference_time, line_id)
            if kind == _DOVECOT:  # what _dovecot needs before it can act, then the prefilter
                start = m.end(_MSG)
                if line.find("-login: ", start) == -1:
                    if "," not in line:  # no verdict: its request is "passdb(user,ip...)"
                        return []
                elif not line.startswith("submission-login: ", start):
                    return []  # another login service
                if not self._passes(line):
                    return []
            elif kind == _SMTPD or not self.deliveries:  # smtpd: no form, no rule
                return []
            elif kind == _QMGR:
                if "status=expired" not in line:  # PF_EXPIRED's own needle
                    return []
            elif ("status=bounced" not in line and "status=deferred" not in line  # PF_DELIVERY
                  and not (self.sent_deliveries and "status=sent" in line)):
                return []
            t = self._stamps_for(reference_time).get(m[_STAMP])
            if t is None:
                t = self._new_stamp(m[_STAMP])
            if t == _NO_DATE:
                return []
            pid = m[_PID]
            h = Header(t, prog, int(pid) if pid is not None else None, line[m.end(_MSG):])
            base = line_id if line_id is not None else _hash(line)
            if kind == _DOVECOT:
                return self._dovecot(h, base)
            self._delivery(h, base)
            return []
        if form == "nopid":
            return self._feed_general(line, reference_time, line_id)
        if reference_time == self._ref and self.tz is self._stamp_tz:
            t = self._stamps.get(m[_STAMP])
        else:
            t = self._stamps_for(reference_time).get(m[_STAMP])
        if t is None:
            t = self._new_stamp(m[_STAMP])
        if t == _NO_DATE:
            return []
        key = m[_KEY]
        sessions = self._sessions
        if form == "reset":  # _store_session(key, _NO_SESSION), inlined
            sessions[key] = _NO_SESSION
            sessions.move_to_end(key)
            if len(sessions) > self.max_sessions:
                self._store_session(key, _NO_SESSION)
            return []
        if form == "tls":  # _tls_line, inlined
            s = sessions.get(key)
            sessions[key] = (clean_ip(m[_T_IP]), m[_T_PROTO], s is not None and s[2])
            sessions.move_to_end(key)
            if len(sessions) > self.max_sessions:
                self._store_session(key, sessions[key])
            return []
        if "\n" in line or line[-1] == "\r":
            return self._feed_general(line, reference_time, line_id)
        base = line_id if line_id is not None else _hash(line)
        if form == "fail":
            ev = self._failure(key, t, m[_F_IP], m[_F_MECH], m[_F_TAIL], base)
        else:
            ev = self._success(key, m[_PROG], t, m[_C_QID], m[_C_IP], m[_C_MECH], m[_C_USER],
                               base)
        return [] if ev is None else [ev]

    def _feed_general(self, line: str, reference_time: float, line_id: str | None
                      ) -> list[LoginEvent]:
        """feed for every line: the prefilter, parse_header, then the rules by program."""
        if not self._passes(line):
            return []
        h = parse_header(line, reference_time, self.tz)
        if h is None:
            return []
        return self._dispatch(h, line_id if line_id is not None else _hash(line))

    def feed_entry(self, time: float, prog: str, pid: int | None, message: str,
                   entry_id: str) -> list[LoginEvent]:
        """Events in one already split record (a journal entry: SYSLOG_IDENTIFIER, pid,
        MESSAGE). `entry_id` makes event ids stable (the journal cursor's seqnum part)."""
        if not self._passes(message):
            return []
        msg = message.rstrip("\r\n")
        if prog == "dovecot" and msg[:1].isalnum():
            # Dovecot logging to stderr (log_path = /dev/stderr): its own log-file line,
            # "[stamp ]auth: Info: ...", as the message; keep the journal's time.
            inner = parse_header(msg, time, self.tz)
            if inner is not None and inner.prog == "dovecot":
                msg = inner.msg
            else:
                lvl = P.DOVECOT_FILE_TAG.match(msg)
                if lvl:
                    msg = f"{lvl['tag']}: {lvl['msg']}"
        if prog.startswith("exim") and msg[:1].isdigit():
            h = parse_header(f"{prog}: {msg}", time, self.tz)  # strips Exim's own stamp
            if h is None:
                return []
            h = Header(time, prog, h.pid if h.pid is not None else pid, h.msg)
        else:
            h = Header(time, prog, pid, msg)
        return self._dispatch(h, entry_id)

    def pop_deliveries(self) -> list[DeliveryEvent]:
        """Delivery events found since the last call (only with deliveries=True)."""
        if not self._pending:
            return []
        out, self._pending = self._pending, []
        return out

    def _dispatch(self, h: Header, base: str) -> list[LoginEvent]:
        prog = h.prog
        if prog.endswith("/smtpd") or prog == "smtpd":
            ev = self._postfix(h, base)
        elif prog.startswith("exim"):
            ev = self._exim(h, base)
        elif prog in ("dovecot", "auth") or prog.startswith(("dovecot/", "dovecot-")):
            return self._dovecot(h, base)
        elif self.deliveries and "/" in prog:
            self._delivery(h, base)
            return []
        else:
            ev = None
        return [] if ev is None else [ev]

    # -- Postfix ------------------------------------------------------------------------------
    def _store_session(self, key: str, state: _SessionState) -> None:
        """Set a session's state; it becomes the most recently used (the least recently used
        goes when more than max_sessions are held)."""
        sessions = self._sessions
        sessions[key] = state
        sessions.move_to_end(key)
        while len(sessions) > self.max_sessions:
            sessions.popitem(last=False)

    def _tls_line(self, key: str, ip_text: str, proto: str) -> None:
        s = self._sessions.get(key)
        self._store_session(key, (clean_ip(ip_text), proto, s is not None and s[2]))

    def _session_line(self, key: str, msg: str) -> bool:
        """An smtpd connect / disconnect / TLS line: session state only. False: not one."""
        if msg.startswith(("connect from ", "disconnect from ")):
            self._store_session(key, _NO_SESSION)
            return True
        m = P.PF_TLS.match(msg) if "TLS connection established" in msg else None
        if m:
            self._tls_line(key, m["ip"], m["proto"])
            return True
        return False

    def _postfix(self, h: Header, base: str) -> LoginEvent | None:
        """An smtpd line: a session line, a SASL failure or an authenticated client= line (the
        login success), else nothing."""
        key = _session_key(h.prog, h.pid)
        msg = h.msg
        if self._session_line(key, msg):
            return None
        m = P.PF_AUTH_FAIL.match(msg) if msg.startswith("warning: ") else None
        if m:
            return self._failure(key, h.time, m["ip"], m["mech"], m["tail"], base)
        m = P.PF_CLIENT.match(msg) if "sasl_method=" in msg else None
        if m and m["user"]:
            return self._success(key, h.prog, h.time, m["qid"], m["ip"], m["mech"], m["user"],
                                 base)
        return None

    def _failure(self, key: str, t: float, ip_text: str, mech: str, tail: str,
                 base: str) -> LoginEvent | None:
        ip = clean_ip(ip_text)
        if ip is None:
            return None
        reason_text, user_text = P.failure_tail(tail)
        user = P.clean_user(user_text)
        reason = P.postfix_reason(reason_text.strip())
        pw_hash = None
        if reason == "bad_credentials":
            v = self._take_verdict(ip, user, t)
            if v is not None:
                user, reason, pw_hash = v.user, v.reason, v.password_hash
        s = self._sessions.get(key)  # TLS of this process's session, if it is this client's
        tls = s[1] if s is not None and s[0] == ip else None
        return self._event(t, base, "postfix-log", user, ip, False, mech, reason, tls, pw_hash)

    def _success(self, key: str, prog: str, t: float, qid: str, ip_text: str, mech: str,
                 user: str, base: str) -> LoginEvent | None:
        """A client= line: the first of its session is the login success."""
        if self.deliveries:
            self._remember_queue_id(prog, qid, user, t)
        ip = clean_ip(ip_text)
        s = self._sessions.get(key)
        if ip is None:
            self._store_session(key, _NO_SESSION if s is None else s)
            return None
        if s is None or s[0] != ip:  # another client: its connect line was not seen
            s = (ip, None, False)
        elif s[2]:
            self._store_session(key, s)
            return None
        self._store_session(key, (ip, s[1], True))
        return self._event(t, base, "postfix-log", user, ip, True, mech, None, s[1])

    def _event(self, t: float, base: str, source: str, user: str | None, ip: str, ok: bool,
               mech: str | None, reason: str | None, tls: str | None,
               password_hash: str | None = None) -> LoginEvent:
        return _login_event(_event_id(source, self.relay_id, base), t, self.relay_id,
                            self._user(user), ip, ok, tls, mech.upper()[:64] if mech else None,
                            reason, source, password_hash)

    # -- Dovecot ------------------------------------------------------------------------------
    def _dovecot(self, h: Header, base: str) -> list[LoginEvent]:
        msg = h.msg
        if "-login: " in msg:
            if msg.startswith("submission-login: "):
                return self._submission(h, base)
            return []
        found = P.dovecot_verdict(msg)
        if found is None:
            return []
        user, ip_text, reason, pw_hash = found
        ip = P.clean_ip(ip_text)
        if ip is None or not user:
            return []
        vs = self._verdicts.get(ip)
        if vs is None:
            vs = self._verdicts[ip] = []
            while len(self._verdicts) > self.max_verdicts:
                self._verdicts.popitem(last=False)
        else:
            self._verdicts.move_to_end(ip)
        vs.append(_Verdict(h.time, user, reason, pw_hash))
        if len(vs) > VERDICTS_PER_IP:
            del vs[0]
        return []

    def _take_verdict(self, ip: str, user: str | None, t: float) -> _Verdict | None:
        """The newest recent Dovecot verdict for this IP (and user, when Postfix named one)."""
        vs = self._verdicts.get(ip)
        if not vs:
            return None
        for i in range(len(vs) - 1, -1, -1):
            v = vs[i]
            if (user is None or v.user == user) and abs(t - v.time) <= DOVECOT_MATCH_WINDOW_S:
                del vs[i]
                if not vs:
                    del self._verdicts[ip]
                return v
        return None

    def _submission(self, h: Header, base: str) -> list[LoginEvent]:
        m = P.DOVECOT_LOGIN.match(h.msg)
        if m is None:
            return []
        ip = P.clean_ip(m["ip"])
        if ip is None:
            return []
        user = m["user"] or None
        tls = "TLS" if P.DOVECOT_TLS.search(m["rest"]) else None
        if m["ok"]:
            return [self._event(h.time, base, "dovecot-log", user, ip, True, m["mech"], None, tls)]
        n = min(int(m["n"]), MAX_ATTEMPTS_PER_LINE)
        return [self._event(h.time, base if i == 0 else f"{base}#{i}", "dovecot-log", user, ip,
                            False, m["mech"], "bad_credentials", tls) for i in range(n)]

    # -- Postfix delivery outcomes (relay.log_delivery) ------------------------------------------
    def _remember_queue_id(self, prog: str, qid: str, user: str, t: float) -> None:
        name = self._user(user)
        if name is not None:
            self.queue.add(_queue_key(prog, qid), name, t)

    def _delivery(self, h: Header, base: str) -> None:
        prog, msg = h.prog, h.msg
        agent = prog.rsplit("/", 1)[-1]
        if agent == "qmgr":
            m = PF_EXPIRED.match(msg) if "status=expired" in msg else None
            if m:
                self._outcome(h, base, m["qid"], "expired", None, None)
            return
        if agent not in DELIVERY_AGENTS or "status=" not in msg:
            return
        m = PF_DELIVERY.match(msg)
        if m is None:
            return
        status = m["status"]
        if status == "sent" and not self.sent_deliveries:
            return
        self._outcome(h, base, m["qid"], status, recipient_domain(m["rcpt"]), m["dsn"])

    def _outcome(self, h: Header, base: str, qid: str, status: str, domain: str | None,
                 dsn: str | None) -> None:
        q = self.queue.touch(_queue_key(h.prog, qid), h.time)
        if q is None:
            return
        if (status == "deferred" and q.deferred) or q.reports >= MAX_REPORTS_PER_QUEUE_ID:
            self.queue.stats.suppressed += 1
            return
        if status == "deferred":
            q.deferred = True
        q.reports += 1
        self._pending.append(DeliveryEvent(
            event_id=_event_id("postfix-delivery", self.relay_id, base), event_time=h.time,
            relay_id=self.relay_id, user=q.user, queue_id=qid,
            status=cast(DeliveryStatus, status),
            recipient_domain=domain, dsn=dsn, source="postfix-log"))

    # -- Exim ---------------------------------------------------------------------------------
    def _exim(self, h: Header, base: str) -> LoginEvent | None:
        m = P.EXIM_FAIL.match(h.msg)
        if m:
            ip = P.clean_ip(m["ip"])
            if ip is None:
                return None
            reason = "backend_unavailable" if m["code"].startswith("4") else "bad_credentials"
            return self._event(h.time, base, "exim-log", m["user"] or None, ip, False,
                               P.exim_mechanism(m["auth"]), reason, None)
        if " <= " not in h.msg:
            return None
        a = P.EXIM_AUTH.search(h.msg)
        hm = P.EXIM_HOST.search(h.msg)
        if a is None or hm is None:
            return None
        ip = P.clean_ip(hm["ip"])
        if ip is None:
            return None
        user = a["user"]
        key = (h.pid, ip, user)
        last = self._exim_seen.get(key)
        self._exim_seen[key] = h.time
        self._exim_seen.move_to_end(key)
        while len(self._exim_seen) > self.max_sessions:
            self._exim_seen.popitem(last=False)
        if last is not None and 0 <= h.time - last <= EXIM_SUCCESS_DEDUP_S:
            return None
        x = P.EXIM_TLS.search(h.msg)
        tls = P.exim_tls_protocol(x["proto"]) if x else None
        return self._event(h.time, base, "exim-log", user, ip, True, P.exim_mechanism(a["auth"]),
                           None, tls)


def _queue_key(prog: str, qid: str) -> tuple[str, str]:
    """Queue ids are per Postfix instance ("postfix-out/smtp" is instance "postfix-out")."""
    return prog.partition("/")[0], qid


def _hash(line: str) -> str:
    return hashlib.sha256(line.encode()).hexdigest()[:32]


def _event_id(source: str, relay_id: str, base: str) -> str:
    text = f"{source}:{relay_id}:{base}"
    if len(text) <= 256:
        return text
    return f"{source}:{hashlib.sha256(text.encode()).hexdigest()}"
