#!/usr/bin/env bash
# Install Debian's docker-compose (1.29.x, Python) for the test that validates docker-compose.yml
# with `docker-compose config`. No Docker engine is needed or started: `config` only parses,
# merges and checks the file. Idempotent; needs root (CI runs as root).
set -euo pipefail

if command -v docker-compose >/dev/null 2>&1; then
    echo "install-docker-compose: $(docker-compose version --short 2>/dev/null || echo present)"
    exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
    echo "install-docker-compose: must run as root to apt-get install docker-compose" >&2
    exit 1
fi

apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends docker-compose

if ! command -v docker-compose >/dev/null 2>&1; then
    echo "install-docker-compose: install finished but docker-compose is still missing" >&2
    exit 1
fi
echo "install-docker-compose: done ($(docker-compose version --short))"
