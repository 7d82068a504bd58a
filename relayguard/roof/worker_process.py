"""Run `relayguard worker` as a child process: used by the demo and by the test fixtures."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from relayguard.foundation.errors import DownstreamError
from relayguard.roof.broker.config import free_port


class WorkerProcess:
    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        self.web_port = free_port()
        self.env = {**os.environ, **env, "RELAYGUARD_WEB_PORT": str(self.web_port),
                    "RELAYGUARD_WEB_HOST": "127.0.0.1", "PYTHONUNBUFFERED": "1"}
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.web_port}"

    def start_process(self) -> None:
        """Spawn the worker without waiting for it (see `start`)."""
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "relayguard", "worker"],
                env=self.env, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def start(self, timeout: float = 90.0) -> None:
        """Spawn the worker and wait until /ready answers 200."""
        self.start_process()
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise DownstreamError(
                    f"worker exited with code {self.proc.returncode} while starting:\n"
                    + self.tail_log(), f"see {self.log_path}")
            if self.status("/ready") == 200:  # 503 while recovering or rebalancing
                return
            time.sleep(0.3)
        self.stop()
        raise DownstreamError(f"worker not ready after {timeout:.0f}s:\n{self.tail_log()}",
                              f"see {self.log_path}")

    def status(self, path: str) -> int | None:
        """HTTP status of GET `path`; None when nothing answers."""
        try:
            with urllib.request.urlopen(self.url + path, timeout=2) as resp:
                return int(resp.status)
        except urllib.error.HTTPError as exc:
            return int(exc.code)
        except (urllib.error.URLError, OSError):
            return None

    def get(self, path: str) -> str | None:
        try:
            with urllib.request.urlopen(self.url + path, timeout=2) as resp:
                body: bytes = resp.read()
                return body.decode()
        except (urllib.error.URLError, OSError):
            return None

    def tail_log(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def stop(self, timeout: float = 20.0) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
