"""Cost of signing and verifying lock commands (Ed25519), per record, against the unsigned codec.

    .venv/bin/python bench/signing_bench.py [--records 20000]

Prints microseconds per record for: encode unsigned, encode signed, decode unchecked, and
decode with full verification (schema, ranges, signature), on a typical volume lock command.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from relayguard.foundation import signing
from relayguard.stream import codec
from relayguard.stream.records import LockCommand


def per_record_us(fn: Callable[[], object], n: int) -> float:
    start = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - start) / n * 1e6


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--records", type=int, default=20000)
    n = ap.parse_args().records
    now = time.time()
    cmd = LockCommand("1d3c1f9e-5d3b-5b8a-9a61-0f6d2c7a8e44", "alice@example.com", "user", "lock",
                      "alice@example.com sent 41 messages in 60s (limit 10)", "volume",
                      {"limit_name": "messages_1m", "measure": "messages", "window_seconds": 60,
                       "count": 41, "limit": 10}, now, now + 3600, "relayguard-worker",
                      int(now * 1000))
    signer = signing.Signer(signing.generate())
    ring = signing.Keyring([signer.public, signing.generate().public_key()])
    plain = codec.dumps(codec.lock_command_to_dict(cmd))
    signed_raw = codec.encode_lock_command(cmd, signer)
    rows = [
        ("encode, unsigned", lambda: codec.dumps(codec.lock_command_to_dict(cmd))),
        ("encode, signed", lambda: codec.encode_lock_command(cmd, signer)),
        ("decode, structure only", lambda: codec.decode_lock_command(plain)),
        ("decode, verified", lambda: codec.decode_signed_lock_command(signed_raw, ring, now, 300)),
    ]
    print(f"{n} records each; {len(plain)} bytes unsigned, {len(signed_raw)} signed")
    for label, fn in rows:
        print(f"  {label:24} {per_record_us(fn, n):8.1f} us/record")


if __name__ == "__main__":
    main()
