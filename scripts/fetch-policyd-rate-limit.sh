#!/bin/sh
# Install policyd-rate-limit 1.2.0 (the comparison policy server of bench/policy_server_bench.py)
# into a throwaway venv, from PyPI through pip as configured on this machine.
#   scripts/fetch-policyd-rate-limit.sh [DIR]   (default: ~/.cache/relayguard/policyd-rate-limit)
# Prints the venv's python; the bench finds it there by default.
set -eu
DIR=${1:-$HOME/.cache/relayguard/policyd-rate-limit}
if [ ! -x "$DIR/bin/python" ]; then
    python3 -m venv "$DIR"
fi
"$DIR/bin/pip" install --quiet 'policyd-rate-limit==1.2.0'
"$DIR/bin/python" -c 'import policyd_rate_limit' && echo "$DIR/bin/python"
