"""Run `relayguard hook postfix` as a real process and talk the policy protocol to it
(shared by the hook load and outage tests)."""

from __future__ import annotations

import os
import resource
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

RELAYGUARD = str(Path(sys.executable).with_name("relayguard"))


def policy_request(user: str, state: str, queue_id: str = "Q1", instance: str = "i.1") -> bytes:
    return (f"request=smtpd_access_policy\nprotocol_state={state}\nsasl_username={user}\n"
            f"client_address=198.51.100.20\nsender={user}@example.com\nqueue_id={queue_id}\n"
            f"instance={instance}\nrecipient_count=1\nsize=1000\n\n").encode()


def start_hook(args: list[str], env: dict[str, str], log_path: Path,
               nofile: int | None = None) -> subprocess.Popen[bytes]:
    def limit() -> None:  # in the child, before exec: soft and hard, so it cannot be raised
        if nofile is not None:
            resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))

    # its own data dir (spool, saved lock book) unless the test gives one: no state shared
    env = {"RELAYGUARD_DATA_DIR": str(log_path.parent / "hook-data"), **env}
    with log_path.open("ab") as log_file:
        return subprocess.Popen([RELAYGUARD, "hook", "postfix", *args], stdout=log_file,
                                stderr=subprocess.STDOUT, env={**os.environ, **env},
                                preexec_fn=limit)


def ask(port: int, request: bytes, timeout: float = 5.0) -> bytes:
    """One request on a fresh connection; the reply, or b"" if the server closed."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(request)
        buf = b""
        while not buf.endswith(b"\n\n"):
            chunk = s.recv(4096)
            if not chunk:
                return buf
            buf += chunk
        return buf


def wait_until(cond: Callable[[], bool], timeout: float, what: str,
               proc: subprocess.Popen[bytes] | None = None, log_path: Path | None = None) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if proc is not None and proc.poll() is not None:
            tail = log_path.read_text()[-3000:] if log_path else ""
            raise AssertionError(f"hook exited ({proc.returncode}) before: {what}\n{tail}")
        if time.monotonic() > deadline:
            tail = log_path.read_text()[-3000:] if log_path else ""
            raise AssertionError(f"not within {timeout}s: {what}\n{tail}")
        time.sleep(0.1)


def answers(port: int) -> bool:
    try:
        return ask(port, policy_request("probe", "RCPT"), 2.0) == b"action=DUNNO\n\n"
    except OSError:
        return False


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS for pid {pid}")


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.kill()
        proc.wait(10)
