#!/usr/bin/env bash
# Install promtool (Debian package `prometheus`) for the test that checks deploy/prometheus/.
# Idempotent: does nothing when promtool is there. Needs root (CI runs as root).
# Nothing is started: services are held back during the install (policy-rc.d), and the tests
# only run `promtool check rules` / `promtool test rules` on files.
set -euo pipefail

if command -v promtool >/dev/null 2>&1; then
    echo "install-promtool: promtool already installed ($(promtool --version 2>&1 | head -1))"
    exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
    echo "install-promtool: must run as root to apt-get install prometheus (for promtool)" >&2
    exit 1
fi

# The package's init script would start a Prometheus server; refuse service starts while we
# install, unless the machine already has its own policy (containers usually do).
POLICY=/usr/sbin/policy-rc.d
if [ ! -e "$POLICY" ]; then
    printf '#!/bin/sh\nexit 101\n' > "$POLICY"
    chmod 755 "$POLICY"
    trap 'rm -f "$POLICY"' EXIT
fi

apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus

if ! command -v promtool >/dev/null 2>&1; then
    echo "install-promtool: install finished but promtool is still missing" >&2
    exit 1
fi
echo "install-promtool: done ($(promtool --version 2>&1 | head -1))"
