"""Regular expressions and small normalisers for Postfix, Dovecot and Exim log messages.

Messages here are what follows the ``prog[pid]: `` tag (see relay.log_header).
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
from typing import Any

# Substrings one of which every line that can change parser state contains. Lines with none of
# them are dropped before the header is parsed (most of a busy mail log: queue manager, smtp
# deliveries, cleanup, imap sessions).
PREFILTER = (
    "authentication failed",  # Postfix SASL failure
    "sasl_method=",  # Postfix authenticated client= line (success)
    "connect from ",  # Postfix session start/end (also "disconnect from ")
    "TLS connection established",  # Postfix TLS of the session
    "authenticator failed",  # Exim failure
    " A=",  # Exim <= line of an authenticated client (success)
    "mismatch",  # Dovecot passwd-file/SQL "Password mismatch", PAM "(password mismatch?)"
    "nknown user",  # Dovecot "unknown user" / "Unknown user"
    "invalid credentials",  # Dovecot LDAP (auth_bind)
    "pam_authenticate",  # Dovecot PAM
    "submission-login",  # Dovecot submission service: a relay of its own
    "status=bounced",  # Postfix delivery outcomes (relay.log_delivery); status=sent is
    "status=deferred",  # only let through when sent deliveries are wanted
    "status=expired",
)


def may_matter(text: str) -> bool:
    """False when no rule of the parser can use this line. The PREFILTER tests spelt out: a
    chain of `in` is about 1.5x faster than a loop over the tuple and 3x faster than one
    alternation regex (tests/unit/relay_logs/test_log_formats.py keeps the two in step). The
    order is the likeliest first among the lines LogParser.feed asks about (Dovecot verdicts,
    Exim and the header forms other than RFC 3164: smtpd lines of that form never ask)."""
    return ("mismatch" in text or "authentication failed" in text
            or "authenticator failed" in text or "connect from " in text
            or "nknown user" in text or "TLS connection established" in text
            or "sasl_method=" in text or " A=" in text or "invalid credentials" in text
            or "pam_authenticate" in text or "submission-login" in text
            or "status=bounced" in text or "status=deferred" in text
            or "status=expired" in text)


# host[ip] or host[ip]:port (smtpd_client_port_logging); IPv6 may come as [2001:db8::1] or
# [ipv6:2001:db8::1].
_HOST = r"[^\s\[\]]*+\[(?P<ip>[^\]\s]{2,80}+)\](?::\d{1,5}+)?"

# The smtpd message forms the parser acts on, as pattern text with {host} for _HOST, so the
# rules below and log_parser's one-regex line classifier (SMTPD_FORMS) are the same text.
# Possessive repeats (`*+`, `{m,n}+`) where what follows cannot be taken by the repeat itself:
# the same matches, without the engine trying every shorter length first when one fails.
_TLS_FORM = (r"(?:Anonymous|Trusted|Verified|Untrusted) TLS connection established from "
             r"{host}: (?P<proto>[A-Za-z0-9.]{{2,32}}+) with cipher ")
# "... authentication failed: REASON[, sasl_username=U]"; REASON may be empty (Postfix then
# writes "failed:" or "failed: , sasl_username=U"). The tail is split by `failure_tail`: a lazy
# `(?P<reason>.*?)(?:, sasl_username=(?P<user>.*))?$` gives the same and retries the optional
# group at every character of the reason.
_FAIL_FORM = (r"warning: {host}: SASL (?P<mech>[A-Za-z0-9_-]{{1,40}}+) authentication failed:"
              r"(?P<tail>.*)$")
# QID: client=host[ip][:port], sasl_method=M, sasl_username=U[, sasl_sender=S][, orig_...]. The
# user runs to the first comma (greedy: a lazy `[^,]*?` gives the same on a message that does
# not end in "\n", which no message does, and retries the optional group at every character).
_CLIENT_FORM = (r"(?P<qid>[0-9A-Za-z]{{5,20}}+): client={host}, "
                r"sasl_method=(?P<mech>[A-Za-z0-9_-]{{1,40}}+), "
                r"sasl_username=(?P<user>[^,\s][^,]*+)(?:, [a-z_]+=.*)?$")

PF_TLS = re.compile(_TLS_FORM.format(host=_HOST))
PF_AUTH_FAIL = re.compile(_FAIL_FORM.format(host=_HOST))
PF_CLIENT = re.compile(_CLIENT_FORM.format(host=_HOST))


def _renamed(form: str, prefix: str) -> str:
    """A form with its groups renamed prefix_NAME (one regex cannot name a group twice)."""
    return re.sub(r"\(\?P<([a-z]+)>", rf"(?P<{prefix}_\1>",
                  form.format(host=_HOST.replace("?P<", f"?P<{prefix}_")))


# What log_parser matches right after an smtpd line's header (and level): one alternative per
# form, in the order the rules try them, each ending in an empty group named after its kind, so
# `match.lastgroup` says which one matched. "connect from" and "disconnect from" are one kind
# (see LogParser._session_line). A message that none of them matches changes nothing.
SMTPD_FORMS = (
    r"(?:(?:dis)?connect from (?P<reset>)"
    + "|" + _renamed(_TLS_FORM, "t") + "(?P<tls>)"
    + "|" + _renamed(_FAIL_FORM, "f").removesuffix("$") + "(?P<fail>)$"
    + "|" + _renamed(_CLIENT_FORM, "c").removesuffix("$") + "(?P<client>)$"
    + ")?"
)
_SASL_USER = ", sasl_username="


def failure_tail(tail: str) -> tuple[str, str | None]:
    """PF_AUTH_FAIL's tail -> (reason, user or None), split at the first ", sasl_username="."""
    at = tail.find(_SASL_USER)
    if at == -1:
        return tail, None
    return tail[:at], tail[at + len(_SASL_USER):]


_CONNECT = re.compile(r"(?:dis)?connect from " + _HOST)

# Dovecot auth verdicts. The request prefix names the passdb (2.3: "passwd-file(u,ip[,<sess>]):
# ", also sql/ldap/pam/...) or, in 2.4, the request ("auth(u,ip,sasl:plain)<sess>: passwd-file:
# "). The message before it ("auth: ", "auth-worker(22401): ", "Info: ") varies; the last
# "name(user,ip...)" group is the request (2.4 auth-worker lines carry two).
DOVECOT_REQUEST = re.compile(
    r"(?:.*: )?[a-z][a-z0-9_-]{0,40}\((?P<user>[^,()]{0,320}),(?P<ip>[0-9A-Fa-f.:]{2,45})"
    r"(?:,[^()]{0,200})?\)(?:<[^<>\s]{0,80}>)?: (?P<what>.*)$"
)
# "auth-worker(22401): Info: msg" -> tag + msg (Dovecot's log-file form without a stamp).
DOVECOT_FILE_TAG = re.compile(
    r"(?P<tag>[a-z][a-z0-9-]{0,40}(?:\([^()]{0,400}\))?(?:<[^<>\s]{0,80}>)?): "
    r"(?:Info|Warning|Error|Fatal|Panic|Debug): (?P<msg>.*)"
)
_DOVECOT_LEVEL_OR_DB = re.compile(
    r"(?:(?:Info|Warning|Error|Debug): )?(?:[a-z][a-z0-9_-]{0,40}: )?"
)
# Verdict texts (lower case, after "pam_authenticate() failed: " for PAM) -> failure_reason.
# Looked up by key, so anything else (lookups, debug lines, errors) is no verdict at all.
DOVECOT_VERDICTS = {
    "password mismatch": "bad_credentials",  # passwd-file, sql, static, ...
    "unknown user": "unknown_user",
    "invalid credentials": "bad_credentials",  # ldap with auth_bind
    "pam:authentication failure": "bad_credentials",  # "... (password mismatch?)"
    "pam:permission denied": "bad_credentials",  # PAM_PERM_DENIED: account refused
    "pam:user not known to the underlying authentication module": "unknown_user",
}
_PAM = "pam_authenticate() failed: "


# auth_verbose_passwords = sha1[:N] appends "(SHA1 of given password: <hex>)" to the verdict,
# = plain "(given password: <text>)" (Dovecot 2.3 auth-request.c, seen on 2.3.19).
_GIVEN_SHA1 = re.compile(r" \(SHA1 of given password: (?P<hex>[0-9a-f]{1,40})\)$")
_GIVEN_PLAIN = " (given password: "
PLAIN_HASH_HEX = 8  # a logged plain password becomes sha1:<8 hex>; never the password itself


def password_hash(what: str) -> tuple[str, str | None]:
    """The verdict text without Dovecot's given-password suffix, and the login event's
    password_hash ("sha1:<hex>", the truncated SHA-1 Dovecot logged) or None."""
    if not what.endswith(")"):
        return what, None
    m = _GIVEN_SHA1.search(what)
    if m:
        return what[:m.start()], "sha1:" + m["hex"]
    i = what.rfind(_GIVEN_PLAIN)
    if i < 0:
        return what, None
    given = what[i + len(_GIVEN_PLAIN):-1]  # the password may hold "(", ")" and ": "
    digest = hashlib.sha1(given.encode("utf-8", "surrogateescape")).hexdigest()
    return what[:i], "sha1:" + digest[:PLAIN_HASH_HEX]


def dovecot_verdict(msg: str) -> tuple[str, str, str, str | None] | None:
    """(user, ip text, failure_reason, password hash) of a Dovecot auth verdict line, else
    None."""
    m = DOVECOT_REQUEST.match(msg)
    if m is None:
        return None
    what = m["what"]
    got = _WHATS.get(what)
    if got is None:
        got = _verdict_of(what)
        _remember(_WHATS, _WHAT_CACHE, what, got)
    reason, pw_hash = got
    if reason is None:
        return None
    return m["user"], m["ip"], reason, pw_hash


# dovecot_verdict's reading of a verdict text ("Password mismatch", "unknown user", ...): a
# pure function of the text, and a few texts make nearly every line. Cleared when full.
_WHATS: dict[str, tuple[str | None, str | None]] = {}
_WHAT_CACHE = 1024


def _remember(cache: dict[str, Any], cap: int, text: str, value: Any) -> None:
    """Keep `value` for a short `text` (long ones are one-offs); cleared when full, so bounded."""
    if len(text) <= 200:
        if len(cache) >= cap:
            cache.clear()
        cache[text] = value


def _verdict_of(what: str) -> tuple[str | None, str | None]:
    """(failure_reason or None, password hash) of the text after a Dovecot request prefix."""
    what, pw_hash = password_hash(what)
    skip = _DOVECOT_LEVEL_OR_DB.match(what)
    if skip:
        what = what[skip.end():]
    key = "pam:" + what[len(_PAM):].lower() if what.startswith(_PAM) else what.lower()
    reason = DOVECOT_VERDICTS.get(key)
    if reason is None:
        # "Password mismatch (SHA1 of given password: ...)", "... (password mismatch?)",
        # "User not known ...: 3 Time(s)"
        key = key.split(" (", 1)[0].split(": ", 1)[0]
        reason = DOVECOT_VERDICTS.get(key)
    return reason, pw_hash


# Dovecot login processes: "Login: user=<u>, method=M, rip=IP, lip=..., TLS, session=<..>" (2.3),
# "Logged in: ..." (2.4); failures "Disconnected (auth failed, 2 attempts in 4 secs): user=<u>,
# method=M, rip=IP, ...", "Aborted login (auth failed, ...)", 2.4 "Login aborted: Connection
# closed (auth failed, 1 attempts in 2 secs) (auth_failed): ...".
DOVECOT_LOGIN = re.compile(
    r"(?P<svc>[a-z0-9-]{1,40})-login: (?:(?P<ok>Login|Logged in)|"
    r"(?P<fail>.{0,120}?\(auth failed, (?P<n>\d{1,6}) attempts?[^)]{0,40}\)"
    r"(?: \([a-z_]{1,40}\))?)): (?:user=<(?P<user>[^>]{0,320})>, )?"
    r"(?:method=(?P<mech>[A-Za-z0-9_-]{1,40}), )?rip=(?P<ip>[0-9A-Fa-f.:]{2,45})(?P<rest>.*)$"
)
DOVECOT_TLS = re.compile(r", (?:TLS|secured)(?:[,:]|$)")

# Exim: "dovecot_plain authenticator failed for (helo) [1.2.3.4]:587: 535 Incorrect
# authentication data (set_id=alice)"; the host part is Exim's sender_fullhost: [name ][(helo) ]
# [ip][:port], the HELO may itself be an IP literal "([1.2.3.5])"; then optional I=[iface]:port,
# U=ident, Ci=connection-id. 435 = "Unable to authenticate at present" (backend down).
EXIM_FAIL = re.compile(
    r"(?P<auth>[A-Za-z0-9_-]{1,64}) authenticator failed for "
    r"(?:[^\s()\[\]]{1,255} )?(?:\((?:[^()]|\([^()]*\)){0,255}\) )?\[(?P<ip>[^\]\s]{2,80})\]"
    r"(?::\d{1,5})?(?: (?:I=\[[^\]\s]{2,80}\](?::\d{1,5})?|U=\S{1,255}|Ci=\S{1,64}))*"
    r": (?P<code>[45]\d\d)\b(?P<text>[^(]*)(?:\(set_id=(?P<user>[^)]*)\))?"
)
EXIM_AUTH = re.compile(r" A=(?P<auth>[A-Za-z0-9_-]{1,64}):(?P<user>\S+)")
EXIM_HOST = re.compile(
    r" H=(?:[^\[\s()]+ )?(?:\((?:[^()]|\([^()]*\))*\) )?\[(?P<ip>[^\]\s]{2,80})\]"
)
EXIM_TLS = re.compile(r" X=(?P<proto>TLS[v]?1\.[0-3]|SSLv3)\b")

_MECHS = ("PLAIN", "LOGIN", "CRAM-MD5", "CRAM_MD5", "XOAUTH2", "OAUTHBEARER", "NTLM",
          "SCRAM-SHA-1", "SCRAM-SHA-256", "DIGEST-MD5")

# Failure reasons that blame the SASL backend, not the client's credentials.
_BACKEND = re.compile(
    r"connection lost to authentication server|temporary|timed? ?out|connection refused|"
    r"try again later|authentication server",
    re.IGNORECASE,
)
# Failure reasons that are the client's protocol mistake, not a password guess.
_CLIENT_ERROR = re.compile(r"invalid authentication mechanism", re.IGNORECASE)


def clean_user(text: str | None) -> str | None:
    """Postfix writes sasl_username=(unavailable) when the backend went away mid-AUTH."""
    if not text or text in ("(unavailable)", "(unknown)"):
        return None
    return text


_OCTET = r"(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)"
_V4 = re.compile(rf"{_OCTET}(?:\.{_OCTET}){{3}}")


_IPS: dict[str, str | None] = {}  # clean_ip's answers; cleared when full, so bounded
_IP_CACHE = 8192


def clean_ip(text: str | None) -> str | None:
    """A normalised IP address, or None for anything that is not one (cached: a pure
    function of the text, and the same clients come back line after line)."""
    if not text:
        return None
    got = _IPS.get(text, "")
    if got != "":
        return got
    if len(_IPS) >= _IP_CACHE:
        _IPS.clear()
    got = _IPS[text] = _clean_ip(text)
    return got


def _clean_ip(text: str) -> str | None:
    if _V4.fullmatch(text):
        return text  # canonical dotted quad: the common case, without ipaddress's cost
    if text[:5].lower() == "ipv6:":
        text = text[5:]
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        return None


def client_ip(msg: str) -> str | None:
    m = _CONNECT.match(msg)
    return clean_ip(m["ip"]) if m else None


_REASONS: dict[str, str] = {}  # postfix_reason's answers; cleared when full, so bounded
_REASON_CACHE = 1024


def postfix_reason(text: str) -> str:
    """Map Postfix's failure text (possibly empty) to a login-event failure_reason (cached:
    a few texts, "UGFzc3dvcmQ6", "authentication failure", ..., make nearly every line)."""
    got = _REASONS.get(text)
    if got is None:
        got = _postfix_reason(text)
        _remember(_REASONS, _REASON_CACHE, text, got)
    return got


def _postfix_reason(text: str) -> str:
    if _BACKEND.search(text):
        return "backend_unavailable"
    if _CLIENT_ERROR.search(text):
        return "other"
    return "bad_credentials"


_EXIM_MECHS: dict[str, str | None] = {}  # exim_mechanism's answers; cleared when full
_EXIM_MECH_CACHE = 256


def exim_mechanism(authenticator: str) -> str | None:
    """Exim logs the authenticator's configured name; guess the mechanism from its suffix
    (cached: a relay has a handful of authenticators)."""
    got = _EXIM_MECHS.get(authenticator, "")
    if got == "":
        got = _exim_mechanism(authenticator)
        if len(_EXIM_MECHS) >= _EXIM_MECH_CACHE:
            _EXIM_MECHS.clear()
        _EXIM_MECHS[authenticator] = got
    return got


def _exim_mechanism(authenticator: str) -> str | None:
    up = authenticator.upper()
    for mech in _MECHS:
        if up == mech or up.endswith(("_" + mech, "-" + mech)) or up.startswith(mech + "_"):
            return mech.replace("_", "-")
    return None


def exim_tls_protocol(proto: str) -> str:
    """Exim (OpenSSL or GnuTLS) writes TLS1.3 or TLSv1.3; events use OpenSSL's TLSv1.3."""
    return proto if proto.startswith(("TLSv", "SSL")) else "TLSv" + proto[3:]
