#!/usr/bin/env bash
# Install the systemd tools the journal and unit-file tests use: journalctl, systemd-analyze
# (package systemd) and systemd-journal-remote (turns journal export format into a journal file
# in a private directory). Idempotent: does nothing when they are there. Needs root (CI is root).
# Nothing is started: the tests write private journal files and verify unit files offline.
set -euo pipefail

REMOTE=/lib/systemd/systemd-journal-remote

have_all() {
    command -v journalctl >/dev/null 2>&1 && command -v systemd-analyze >/dev/null 2>&1 \
        && [ -x "$REMOTE" ]
}

if have_all; then
    echo "install-systemd-tools: journalctl, systemd-analyze, systemd-journal-remote present"
    exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
    echo "install-systemd-tools: must run as root to apt-get install systemd" \
         "systemd-journal-remote" >&2
    exit 1
fi

apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    systemd systemd-journal-remote

if ! have_all; then
    echo "install-systemd-tools: install finished but a tool is still missing" >&2
    exit 1
fi
echo "install-systemd-tools: done ($(journalctl --version | head -1))"
