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

Speed: `feed` first asks log_patterns.may_matter (a few substring tests), so the many lines that
cannot matter (queue manager, cleanup, status=sent deliveries, imap sessions) never reach header
parsing; log_header parses the common RFC 3164 header with one regex and turns each distinct
stamp into seconds once; Dovecot verdicts are kept per client IP and found by key; user names
and IPs are canonicalised through small bounded caches.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
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
    DOVECOT_LEVEL,
    FAST_HEADER,
    LEVEL_INITIALS,
    MAX_LINE_CHARS,
    Header,
    parse_header,
    rfc3164_seconds,
)
from relayguard.stream.records import DeliveryEvent, DeliveryStatus, LoginEvent
from relayguard.stream.user_names import DEFAULT_USER_NAMES, UserNameMode, canonical_user_or_none

DOVECOT_MATCH_WINDOW_S = 30.0  # a Dovecot verdict older than this is not the one Postfix reports
EXIM_SUCCESS_DEDUP_S = 300.0
VERDICTS_PER_IP = 8  # a burst from one IP needs only its latest few verdicts
NAME_CACHE = 8192
_MISSING = object()
MAX_ATTEMPTS_PER_LINE = 20  # "(auth failed, 5000 attempts ...)" does not become 5000 events


@dataclass(slots=True)
class _Session:
    """One smtpd process's current SMTP session."""

    client_ip: str | None = None
    tls_protocol: str | None = None
    success_sent: bool = False


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
    _sessions: OrderedDict[tuple[str, int], _Session] = field(default_factory=OrderedDict)
    _verdicts: OrderedDict[str, list[_Verdict]] = field(default_factory=OrderedDict)
    _exim_seen: OrderedDict[tuple[int | None, str, str], float] = field(
        default_factory=OrderedDict)
    _names: dict[str, str | None] = field(default_factory=dict)  # see _user()

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

    def feed(
        self, line: str, reference_time: float, line_id: str | None = None
    ) -> list[LoginEvent]:
        """Events in this line. `line_id` (file identity + offset) makes event ids replay-stable;
        without it the id is a hash of the line text."""
        if not P.may_matter(line) and not (self.sent_deliveries and "status=sent" in line):
            return []
        f = FAST_HEADER.match(line)
        if (f is not None and "\n" not in line and line[-1] != "\r"
                and len(line) <= MAX_LINE_CHARS and not f[2].startswith("exim")):
            # parse_header's own fast path, inlined: the header is matched once, and smtpd
            # session lines (two thirds of what passes) go straight to the session table
            stamp, prog, pid_text = f.groups()
            t = rfc3164_seconds(stamp, int(reference_time // 3600), self.tz)
            if t is None:
                return []
            msg, pid = line[f.end():], int(pid_text)
            smtpd = prog.endswith("/smtpd") or prog == "smtpd"
            if msg[:1] in LEVEL_INITIALS:
                lvl = DOVECOT_LEVEL.match(msg)
                if lvl:
                    msg = msg[lvl.end():]
                smtpd_checked = False  # "Info: connect from ..." is still a session line
            elif smtpd:
                if self._session_line(prog, pid, msg):
                    return []
                smtpd_checked = True
            else:
                smtpd_checked = False
            fast = Header(t, prog, pid, msg)
            base = line_id if line_id is not None else _hash(line)
            if smtpd_checked:  # exactly what _dispatch -> _postfix does after this check
                ev = self._postfix_event(fast, base)
                return [] if ev is None else [ev]
            return self._dispatch(fast, base)
        h = parse_header(line, reference_time, self.tz)
        if h is None:
            return []
        return self._dispatch(h, line_id if line_id is not None else _hash(line))

    def feed_entry(self, time: float, prog: str, pid: int | None, message: str,
                   entry_id: str) -> list[LoginEvent]:
        """Events in one already split record (a journal entry: SYSLOG_IDENTIFIER, pid,
        MESSAGE). `entry_id` makes event ids stable (the journal cursor's seqnum part)."""
        if not P.may_matter(message) and not (self.sent_deliveries and "status=sent" in message):
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
    def _session(self, h: Header) -> _Session:
        return self._session_of((h.prog, h.pid or 0))

    def _session_of(self, key: tuple[str, int]) -> _Session:
        s = self._sessions.get(key)
        if s is None:
            s = self._sessions[key] = _Session()
            while len(self._sessions) > self.max_sessions:
                self._sessions.popitem(last=False)
        else:
            self._sessions.move_to_end(key)
        return s

    def _session_line(self, prog: str, pid: int, msg: str) -> bool:
        """An smtpd connect / disconnect / TLS line: session state only. False: not one."""
        if msg.startswith("connect from "):
            s = self._session_of((prog, pid))
            s.client_ip = P.client_ip(msg)
            s.tls_protocol, s.success_sent = None, False
            return True
        if msg.startswith("disconnect from "):
            s = self._session_of((prog, pid))
            s.client_ip, s.tls_protocol, s.success_sent = None, None, False
            return True
        m = P.PF_TLS.match(msg) if "TLS connection established" in msg else None
        if m:
            s = self._session_of((prog, pid))
            s.client_ip, s.tls_protocol = P.clean_ip(m["ip"]), m["proto"]
            return True
        return False

    def _postfix(self, h: Header, base: str) -> LoginEvent | None:
        if self._session_line(h.prog, h.pid or 0, h.msg):
            return None
        return self._postfix_event(h, base)

    def _postfix_event(self, h: Header, base: str) -> LoginEvent | None:
        """An smtpd line that is not a session line: a SASL failure or an authenticated
        client= line (the login success), else nothing."""
        msg = h.msg
        m = P.PF_AUTH_FAIL.match(msg) if msg.startswith("warning: ") else None
        if m:
            ip = P.clean_ip(m["ip"])
            if ip is None:
                return None
            reason_text, user_text = P.failure_tail(m["tail"])
            user = P.clean_user(user_text)
            reason = P.postfix_reason(reason_text.strip())
            pw_hash = None
            if reason == "bad_credentials":
                v = self._take_verdict(ip, user, h.time)
                if v is not None:
                    user, reason, pw_hash = v.user, v.reason, v.password_hash
            return self._event(h, base, "postfix-log", user, ip, False, m["mech"], reason,
                               self._tls(h, ip), pw_hash)
        m = P.PF_CLIENT.match(msg) if "sasl_method=" in msg else None
        if m and m["user"]:
            if self.deliveries:
                self._remember_queue_id(h, m["qid"], m["user"])
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
               mech: str | None, reason: str | None, tls: str | None,
               password_hash: str | None = None) -> LoginEvent:
        return LoginEvent(
            event_id=_event_id(source, self.relay_id, base), event_time=h.time,
            relay_id=self.relay_id, user=self._user(user),
            client_ip=ip, success=ok,
            tls_protocol=tls, sasl_mechanism=mech.upper()[:64] if mech else None,
            failure_reason=reason, source=source, password_hash=password_hash,
        )

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
            return [self._event(h, base, "dovecot-log", user, ip, True, m["mech"], None, tls)]
        n = min(int(m["n"]), MAX_ATTEMPTS_PER_LINE)
        return [self._event(h, base if i == 0 else f"{base}#{i}", "dovecot-log", user, ip,
                            False, m["mech"], "bad_credentials", tls) for i in range(n)]

    # -- Postfix delivery outcomes (relay.log_delivery) ------------------------------------------
    def _remember_queue_id(self, h: Header, qid: str, user: str) -> None:
        name = self._user(user)
        if name is not None:
            self.queue.add(_queue_key(h.prog, qid), name, h.time)

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
