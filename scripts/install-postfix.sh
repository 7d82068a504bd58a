#!/usr/bin/env bash
# Install Postfix, Dovecot (SASL backend only), swaks and openssl for the e2e tests.
# Idempotent: does nothing when the binaries are already there. Needs root (CI runs as root).
# Nothing is started by the install: the e2e harness runs a private instance in a temp dir.
set -euo pipefail

have_all() {
    command -v postfix >/dev/null 2>&1 && command -v dovecot >/dev/null 2>&1 \
        && command -v swaks >/dev/null 2>&1 && command -v smtp-sink >/dev/null 2>&1 \
        && command -v openssl >/dev/null 2>&1
}

# postfix and smtp-sink live in /usr/sbin, which a non-login PATH may lack.
export PATH="$PATH:/usr/sbin:/sbin"

if have_all; then
    echo "install-postfix: postfix, dovecot, swaks, smtp-sink and openssl already installed"
    exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
    echo "install-postfix: must run as root to apt-get install postfix dovecot-core swaks" >&2
    exit 1
fi

echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    postfix swaks dovecot-core libnet-ssleay-perl libauthen-sasl-perl openssl

if ! have_all; then
    echo "install-postfix: install finished but a binary is still missing" >&2
    exit 1
fi
echo "install-postfix: done ($(postconf -d mail_version 2>/dev/null))"
