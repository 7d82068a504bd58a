#!/bin/sh
# Unpack Debian's fail2ban package (for fail2ban-regex and its postfix / dovecot filters) into a
# directory, without installing it as a service: bench/log_parser_bench.py runs it from there.
#   scripts/fetch-fail2ban.sh [DIR]   (default: ~/.cache/relayguard/fail2ban)
set -eu
DIR=${1:-$HOME/.cache/relayguard/fail2ban}
mkdir -p "$DIR"
if [ ! -x "$DIR/root/usr/bin/fail2ban-regex" ]; then
    (cd "$DIR" && rm -f fail2ban_*.deb && apt-get download fail2ban >/dev/null)
    dpkg-deb -x "$DIR"/fail2ban_*.deb "$DIR/root"
fi
# The package's Python modules live under usr/lib/python3/dist-packages.
test -d "$DIR/root/usr/lib/python3/dist-packages/fail2ban"
test -f "$DIR/root/etc/fail2ban/filter.d/postfix.conf"
test -f "$DIR/root/etc/fail2ban/filter.d/dovecot.conf"
echo "$DIR/root"
