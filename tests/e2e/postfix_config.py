"""Config files of the private Postfix + Dovecot instance (see postfix_env.py)."""

from __future__ import annotations

import os
import pwd
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tests.e2e.postfix_env import PostfixEnv

# No chroot anywhere: the instance lives in a temp dir, not under the default queue directory.
MASTER_CF = """\
{listen}  inet n - n - - smtpd
  -o syslog_name=postfix/submission
  -o smtpd_sasl_auth_enable=yes
  -o smtpd_tls_security_level=encrypt
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
tlsmgr    unix  -       -       n       1000?   1       tlsmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
proxywrite unix -       -       n       -       1       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
local     unix  -       n       n       -       -       local
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
"""


def main_cf(env: PostfixEnv) -> str:
    e = env.directory
    policy = (f"check_policy_service {{ inet:127.0.0.1:{env.policy_port}, timeout=5s, "
              "default_action=DUNNO }")
    return f"""\
compatibility_level = 3.6
queue_directory = {e}/queue
data_directory = {e}/data
meta_directory = /etc/postfix
myhostname = relay.test
mydomain = relay.test
myorigin = relay.test
mydestination =
local_recipient_maps =
inet_interfaces = loopback-only
inet_protocols = ipv4
# loopback is NOT trusted: every client has to AUTH
mynetworks = 192.0.2.0/32
alias_maps =
alias_database =
biff = no
smtputf8_enable = no
maillog_file = {e}/maillog
maillog_file_prefixes = {e}
relayhost = [127.0.0.1]:{env.sink_port}
smtp_tls_security_level = none
smtpd_sasl_type = dovecot
smtpd_sasl_path = inet:127.0.0.1:{env.auth_port}
smtpd_sasl_auth_enable = no
smtpd_tls_cert_file = {e}/tls/cert.pem
smtpd_tls_key_file = {e}/tls/key.pem
smtpd_tls_security_level = may
# 1 = one summary line per handshake: the log follower takes the TLS protocol from it
smtpd_tls_loglevel = 1
smtpd_relay_restrictions = permit_mynetworks, permit_sasl_authenticated, reject_unauth_destination
# the policy service comes first so that locked users are refused even when authenticated
smtpd_recipient_restrictions = {policy}
smtpd_data_restrictions = {policy}
smtpd_end_of_data_restrictions = {policy}
smtpd_policy_service_try_limit = 1
# tests play clients from elsewhere (swaks --xclient-addr); only loopback may do so
smtpd_authorized_xclient_hosts = 127.0.0.1
"""


def dovecot_conf(env: PostfixEnv) -> str:
    e = env.directory
    return f"""\
protocols =
base_dir = {e}/dovecot-run
state_dir = {e}/dovecot-state
log_path = {e}/dovecot.log
info_log_path = {e}/dovecot.log
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
auth_verbose = yes
auth_failure_delay = 0
# The name as the client typed it (Dovecot's default %Lu would lower-case it for Postfix)...
auth_username_format = %u
passdb {{
  driver = passwd-file
  # ... looked up case-insensitively, as an SQL or LDAP passdb with a case-insensitive
  # match does: ALICE logs in as alice, and Postfix reports sasl_username=ALICE
  args = scheme=PLAIN username_format=%Lu {e}/dovecot.passwd
}}
userdb {{
  driver = static
  args = uid=nobody gid=nogroup home=/nonexistent
}}
service auth {{
  inet_listener {{
    address = 127.0.0.1
    port = {env.auth_port}
  }}
}}
"""


def write_all(env: PostfixEnv) -> None:
    e = env.directory
    os.chmod(e, 0o755)  # postfix daemons run as "postfix" and must reach the queue under E
    (e / "queue").mkdir(mode=0o755)
    data = e / "data"
    data.mkdir(mode=0o700)
    pw = pwd.getpwnam("postfix")
    os.chown(data, pw.pw_uid, pw.pw_gid)
    env.config_dir.mkdir(mode=0o755)
    (env.config_dir / "main.cf").write_text(main_cf(env))
    listen = f"127.0.0.1:{env.submission_port}"
    (env.config_dir / "master.cf").write_text(MASTER_CF.format(listen=listen))
    (e / "dovecot.conf").write_text(dovecot_conf(env))
    passwd = "".join(f"{u}:{{PLAIN}}{p}::::::\n" for u, p in env.users.items())
    (e / "dovecot.passwd").write_text(passwd)
    _make_cert(e / "tls")


def _make_cert(d: Path) -> None:
    d.mkdir(mode=0o755)
    proc = subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
         "-subj", "/CN=relay.test", "-keyout", str(d / "key.pem"), "-out", str(d / "cert.pem")],
        capture_output=True, text=True, check=False, timeout=60)
    if proc.returncode != 0:
        from tests.e2e.postfix_env import HarnessError

        raise HarnessError(f"openssl req failed: {proc.stderr}")
    os.chmod(d / "key.pem", 0o600)
