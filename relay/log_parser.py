"""Mail-log lines -> LoginEvents. Pure: no I/O, no clock; all state is bounded and per process.

What counts as a login (documented decision):
- Failure: Postfix ``warning: host[ip]: SASL MECH authentication failed: REASON[, sasl_username=U]``
  and Exim ``NAME authenticator failed for ... [ip]: 535 ... (set_id=U)``. Postfix before 3.7.8
  / 3.8.3 / 3.9 names no user; it is then taken from a Dovecot ``auth: passwd-file(U,ip): Password
  mismatch`` / ``unknown user`` line for the same IP seen shortly before (same log stream), else
  user=None (per-IP counting still works). Dovecot lines alone never make an event, so following
  both logs never counts one attempt twice. A reason that blames the SASL backend ("Connection
  lost to authentication server", temporary failures, Exim 435) becomes
  failure_reason="backend_unavailable", which detectors ignore.
- Success: Postfix logs no line for a successful AUTH itself at normal verbosity; it logs
  ``QID: client=host[ip], sasl_method=M, sasl_username=U`` when an authenticated client starts a
  message. The first such line of an smtpd session (pid + connect/disconnect) is the login
  success; later messages of that session add no login event. Dovecot only logs successes at
  debug level and then without the client IP, so those are not used. Exim: ``<=`` lines with
  ``A=authenticator:user``, one per (pid, ip, user) within EXIM_SUCCESS_DEDUP_S.
- TLS: ``... TLS connection established from host[ip]: TLSv1.3 with cipher ...`` is remembered
  per smtpd process (needs smtpd_tls_loglevel >= 1); sessions without it carry tls_protocol=None.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from datetime import UTC, tzinfo

from relayguard.relay import log_patterns as P
from relayguard.relay.log_header import Header, parse_header
from relayguard.stream.records import LoginEvent

DOVECOT_MATCH_WINDOW_S = 30.0  # a Dovecot verdict older than this is not the one Postfix reports
EXIM_SUCCESS_DEDUP_S = 300.0


@dataclass(slots=True)
class _Session:
    """One smtpd process's current SMTP session."""

    client_ip: str | None = None
    tls_protocol: str | None = None
    success_sent: bool = False


@dataclass(slots=True)
class _Verdict:
    time: float
    ip: str
    user: str
    reason: str


@dataclass(slots=True)
class LogParser:
    relay_id: str
    tz: tzinfo = UTC  # zone of stamps that carry none (RFC 3164, Exim without log_timezone)
    max_sessions: int = 4096
    max_verdicts: int = 1024
    _sessions: OrderedDict[tuple[str, int], _Session] = field(default_factory=OrderedDict)
    _verdicts: deque[_Verdict] = field(default_factory=deque)
    _exim_seen: OrderedDict[tuple[int | None, str, str], float] = field(
        default_factory=OrderedDict)

    def feed(
        self, line: str, reference_time: float, line_id: str | None = None
    ) -> list[LoginEvent]:
        """Events in this line. `line_id` (file identity + offset) makes event ids replay-stable;
        without it the id is a hash of the line text."""
        h = parse_header(line, reference_time, self.tz)
        if h is None:
            return []
        base = line_id if line_id is not None else hashlib.sha256(line.encode()).hexdigest()[:32]
        prog = h.prog.rsplit("/", 1)[-1]
        if prog == "smtpd":
            ev = self._postfix(h, base)
        elif h.prog.startswith("exim"):
            ev = self._exim(h, base)
        elif h.prog in ("dovecot", "auth") or h.prog.startswith("dovecot/"):
            self._dovecot(h)
            ev = None
        else:
            ev = None
        return [] if ev is None else [ev]

    # -- Postfix ------------------------------------------------------------------------------
    def _session(self, h: Header) -> _Session:
        key = (h.prog, h.pid or 0)
        s = self._sessions.get(key)
        if s is None:
            s = self._sessions[key] = _Session()
            while len(self._sessions) > self.max_sessions:
                self._sessions.popitem(last=False)
        else:
            self._sessions.move_to_end(key)
        return s

    def _postfix(self, h: Header, base: str) -> LoginEvent | None:
        msg = h.msg
        if msg.startswith(("connect from ", "disconnect from ")):
            s = self._session(h)
            s.client_ip = P.client_ip(msg)
            s.tls_protocol, s.success_sent = None, False
            return None
        m = P.PF_TLS.match(msg)
        if m:
            s = self._session(h)
            s.client_ip, s.tls_protocol = P.clean_ip(m["ip"]), m["proto"]
            return None
        m = P.PF_AUTH_FAIL.match(msg)
        if m:
            ip = P.clean_ip(m["ip"])
            if ip is None:
                return None
            user = P.clean_user(m["user"])
            reason = P.postfix_reason(m["reason"])
            v = self._take_verdict(ip, user, h.time)
            if v is not None and reason == "bad_credentials":
                user, reason = v.user, v.reason
            return self._event(h, base, "postfix-log", user, ip, False, m["mech"], reason,
                               self._tls(h, ip))
        m = P.PF_CLIENT.match(msg)
        if m and m["user"]:
            ip = P.clean_ip(m["ip"])
            s = self._session(h)
            if ip is None:
                return None
            if s.client_ip != ip:  # another client: its connect line was not seen
                s.client_ip, s.tls_protocol, s.success_sent = ip, None, False
            if s.success_sent:
                return None
            s.success_sent = True
            return self._event(h, base, "postfix-log", m["user"], ip, True, m["mech"], None,
                               self._tls(h, ip))
        return None

    def _tls(self, h: Header, ip: str) -> str | None:
        """TLS of this process's current session, if it is the same client's."""
        s = self._sessions.get((h.prog, h.pid or 0))
        return s.tls_protocol if s is not None and s.client_ip == ip else None

    def _event(self, h: Header, base: str, source: str, user: str | None, ip: str, ok: bool,
               mech: str | None, reason: str | None, tls: str | None) -> LoginEvent:
        return LoginEvent(
            event_id=_event_id(source, self.relay_id, base), event_time=h.time,
            relay_id=self.relay_id, user=user[:320] if user else None, client_ip=ip, success=ok,
            tls_protocol=tls, sasl_mechanism=mech.upper()[:64] if mech else None,
            failure_reason=reason, source=source,
        )

    # -- Dovecot ------------------------------------------------------------------------------
    def _dovecot(self, h: Header) -> None:
        m = P.DOVECOT_FAIL.search(h.msg)
        if not m:
            return
        ip = P.clean_ip(m["ip"])
        if ip is None or not m["user"]:
            return
        unknown = m["what"].lower().startswith("unknown user")
        reason = "unknown_user" if unknown else "bad_credentials"
        self._verdicts.append(_Verdict(h.time, ip, m["user"], reason))
        while len(self._verdicts) > self.max_verdicts:
            self._verdicts.popleft()

    def _take_verdict(self, ip: str, user: str | None, t: float) -> _Verdict | None:
        """The newest recent Dovecot verdict for this IP (and user, when Postfix named one)."""
        for i in range(len(self._verdicts) - 1, -1, -1):
            v = self._verdicts[i]
            if v.ip == ip and (user is None or v.user == user) and \
                    abs(t - v.time) <= DOVECOT_MATCH_WINDOW_S:
                del self._verdicts[i]
                return v
        return None

    # -- Exim ---------------------------------------------------------------------------------
    def _exim(self, h: Header, base: str) -> LoginEvent | None:
        m = P.EXIM_FAIL.match(h.msg)
        if m:
            ip = P.clean_ip(m["ip"])
            if ip is None:
                return None
            reason = "backend_unavailable" if m["code"].startswith("4") else "bad_credentials"
            return self._event(h, base, "exim-log", m["user"] or None, ip, False,
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
        return self._event(h, base, "exim-log", user, ip, True, P.exim_mechanism(a["auth"]), None,
                           tls)


def _event_id(source: str, relay_id: str, base: str) -> str:
    text = f"{source}:{relay_id}:{base}"
    if len(text) <= 256:
        return text
    return f"{source}:{hashlib.sha256(text.encode()).hexdigest()}"
