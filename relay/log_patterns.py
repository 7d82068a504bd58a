"""Regular expressions and small normalisers for Postfix, Dovecot and Exim log messages.

Messages here are what follows the ``prog[pid]: `` tag (see relay.log_header).
"""

from __future__ import annotations

import ipaddress
import re

# host[ip] or host[ip]:port (smtpd_client_port_logging); IPv6 may come as [2001:db8::1] or
# [ipv6:2001:db8::1].
_HOST = r"(?P<host>[^\s\[\]]*)\[(?P<ip>[^\]\s]{2,80})\](?::\d{1,5})?"

PF_TLS = re.compile(
    r"(?:Anonymous|Trusted|Verified|Untrusted) TLS connection established from "
    + _HOST + r": (?P<proto>[A-Za-z0-9.]{2,32}) with cipher "
)
PF_AUTH_FAIL = re.compile(
    r"warning: " + _HOST + r": SASL (?P<mech>[A-Za-z0-9_-]{1,40}) authentication failed: "
    r"(?P<reason>.*?)(?:, sasl_username=(?P<user>.*))?$"
)
# QID: client=host[ip][:port], sasl_method=M, sasl_username=U[, sasl_sender=S][, orig_...]
PF_CLIENT = re.compile(
    r"[0-9A-Za-z]{5,20}: client=" + _HOST + r", sasl_method=(?P<mech>[A-Za-z0-9_-]{1,40}), "
    r"sasl_username=(?P<user>[^,\s][^,]*?)(?:, [a-z_]+=.*)?$"
)
_CONNECT = re.compile(r"(?:dis)?connect from " + _HOST)

# Dovecot auth (syslog "auth: passwd-file(u,ip): ...", file "auth: Info: ..."); 2.3 may add
# ",<session>" after the IP.
DOVECOT_FAIL = re.compile(
    r"(?:auth: )?(?:Info: )?[a-z][a-z0-9_-]*\((?P<user>[^,()]*),(?P<ip>[0-9A-Fa-f.:]+)"
    r"(?:,[^)]*)?\): (?P<what>Password mismatch|unknown user|Unknown user)"
)

# Exim: "dovecot_plain authenticator failed for (helo) [1.2.3.4]:587: 535 Incorrect
# authentication data (set_id=alice)"; 435 = "Unable to authenticate at present" (backend down).
EXIM_FAIL = re.compile(
    r"(?P<auth>[A-Za-z0-9_-]{1,64}) authenticator failed for [^\[]*\[(?P<ip>[^\]\s]{2,80})\]"
    r"(?::\d{1,5})?(?: I=\[[^\]]*\](?::\d{1,5})?)?: (?P<code>[45]\d\d)\b[^(]*"
    r"(?:\(set_id=(?P<user>[^)]*)\))?"
)
EXIM_AUTH = re.compile(r" A=(?P<auth>[A-Za-z0-9_-]{1,64}):(?P<user>\S+)")
EXIM_HOST = re.compile(r" H=(?:[^\[\s]+ )?(?:\([^)]*\) )?\[(?P<ip>[^\]\s]{2,80})\]")
EXIM_TLS = re.compile(r" X=(?P<proto>TLS[v]?1\.[0-3]|SSLv3)\b")

_MECHS = ("PLAIN", "LOGIN", "CRAM-MD5", "CRAM_MD5", "XOAUTH2", "OAUTHBEARER", "NTLM",
          "SCRAM-SHA-1", "SCRAM-SHA-256", "DIGEST-MD5")

# Failure reasons that blame the SASL backend, not the client's credentials.
_BACKEND = re.compile(
    r"connection lost to authentication server|temporary|timed? ?out|connection refused|"
    r"try again later|authentication server",
    re.IGNORECASE,
)


def clean_user(text: str | None) -> str | None:
    """Postfix writes sasl_username=(unavailable) when the backend went away mid-AUTH."""
    if not text or text in ("(unavailable)", "(unknown)"):
        return None
    return text


def clean_ip(text: str | None) -> str | None:
    """A normalised IP address, or None for anything that is not one."""
    if not text:
        return None
    if text[:5].lower() == "ipv6:":
        text = text[5:]
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        return None


def client_ip(msg: str) -> str | None:
    m = _CONNECT.match(msg)
    return clean_ip(m["ip"]) if m else None


def postfix_reason(text: str) -> str:
    """Map Postfix's failure text to a login-event failure_reason."""
    return "backend_unavailable" if _BACKEND.search(text) else "bad_credentials"


def exim_mechanism(authenticator: str) -> str | None:
    """Exim logs the authenticator's configured name; guess the mechanism from its suffix."""
    up = authenticator.upper()
    for mech in _MECHS:
        if up == mech or up.endswith(("_" + mech, "-" + mech)) or up.startswith(mech + "_"):
            return mech.replace("_", "-")
    return None


def exim_tls_protocol(proto: str) -> str:
    """Exim (OpenSSL or GnuTLS) writes TLS1.3 or TLSv1.3; events use OpenSSL's TLSv1.3."""
    return proto if proto.startswith(("TLSv", "SSL")) else "TLSv" + proto[3:]
