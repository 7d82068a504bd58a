"""A real single-node Kafka (KRaft) broker as a child process, for tests and one-box demos.

Usage:
    with LocalBroker() as broker:        # temp data dir, removed on stop
        print(broker.bootstrap)          # "127.0.0.1:PORT"

    with LocalBroker(secure=True) as broker:     # SASL_SSL + SCRAM users + StandardAuthorizer
        broker.apply_acls(acls.layout(topics, app_id, relays=["relay-1"], workers=["worker"]))
        broker.client_security("relay-1")        # KafkaSecurity for that user
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

from relayguard.foundation.errors import ConfigError, DownstreamError
from relayguard.foundation.kafka_clients import KafkaSecurity, aiokafka_options, librdkafka_config
from relayguard.roof.broker import acls, probe
from relayguard.roof.broker.config import (
    DEFAULT_VERSION,
    BrokerLayout,
    free_port,
    logging_jvm_flag,
    new_cluster_id,
    write_config,
)
from relayguard.roof.broker.fetch import JAVA_HINT, Progress, ensure_jars, require_tool
from relayguard.roof.broker.secure import ADMIN, SecureSetup

JVM_FLAGS = ["-Xms256m", "-Xmx512m", "-XX:+UseG1GC", "-Djava.awt.headless=true"]
LOG_TAIL_LINES = 25
PR_SET_PDEATHSIG = 1  # linux/prctl.h


def tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    """Last lines of a broker log, without Java stack frames (the messages say what went wrong)."""
    try:
        text = path.read_text(errors="replace").splitlines()
    except OSError:
        return ""
    kept = [t for t in text if not re.match(r"\s+(at |\.\.\. \d+ more)", t)]
    return "\n".join(kept[-lines:])


class LocalBroker:
    """Owns one broker JVM. `data_dir=None` means a fresh temp dir that stop() deletes; a given
    data_dir is kept and reused (formatted only once), so its topics survive restarts.

    die_with_parent: the kernel SIGTERMs the JVM when the thread that called start() dies, so a
    killed test run leaves no broker behind. Pass False when starting from a short-lived thread.

    secure: a SASL_SSL client listener with SCRAM-SHA-512 users (`roles`: role -> user names,
    plus the super user `admin`), created when the storage is formatted, a throwaway CA, and the
    StandardAuthorizer denying whatever no ACL allows. Files in <data dir>/secure.
    """

    def __init__(
        self,
        data_dir: Path | None = None,
        version: str = DEFAULT_VERSION,
        port: int | None = None,
        progress: Progress | None = None,
        die_with_parent: bool = True,
        secure: bool = False,
        roles: dict[str, tuple[str, ...]] | None = None,
    ) -> None:
        self.version = version
        self._owns_dir = data_dir is None
        root = Path(tempfile.mkdtemp(prefix="relayguard-kafka-")) if data_dir is None else data_dir
        self.layout = BrokerLayout(Path(root).resolve())
        self._wanted_port = port
        self._progress = progress
        self._die_with_parent = die_with_parent
        self._proc: subprocess.Popen[bytes] | None = None
        self.port: int | None = None
        self._secure = secure
        self._secure_roles = roles
        self.secure: SecureSetup | None = None

    @property
    def bootstrap(self) -> str:
        if self.port is None:
            raise RuntimeError("broker not started")
        return f"127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self, timeout: float = 90) -> None:
        """Fetch jars if needed, format storage once, launch, and wait until a metadata round
        trip succeeds. Raises MissingToolError / DownstreamError with the broker log tail."""
        if self.running():
            return
        java = require_tool("java", JAVA_HINT)
        libs = ensure_jars(self.version, self._progress)
        if self._wanted_port and probe.port_open("127.0.0.1", self._wanted_port):
            raise ConfigError(
                f"port {self._wanted_port} on 127.0.0.1 is already in use",
                hint="stop whatever listens there, or leave the port out to pick a free one",
            )
        if _locked_by_other_process(self.layout.log_dirs / ".lock"):
            raise ConfigError(
                f"another Kafka broker is running on the data dir {self.layout.data_dir}",
                hint="stop that broker first, or use another --data-dir",
            )
        self.port = self._wanted_port or free_port()
        controller_port = free_port(exclude={self.port})
        if self._secure:
            self.secure = SecureSetup.prepare(self.layout.data_dir / "secure", self._secure_roles)
        listener = self.secure.listener() if self.secure else None
        write_config(self.version, self.layout, self.port, controller_port, listener)
        classpath = f"{libs}/*"
        log_flag = logging_jvm_flag(self.version, self.layout)
        late_users: list[str] = []
        if not self.layout.formatted_marker.exists():
            self._format(java, classpath, log_flag)
        elif self.secure is not None:
            late_users = self.secure.unformatted_users()
        cmd = [java, *JVM_FLAGS, log_flag, "-cp", classpath, "kafka.Kafka",
               str(self.layout.properties)]  # fmt: skip
        with self.layout.console_log.open("ab") as out:
            # Own session/process group, so stop() can signal the JVM and anything it spawned.
            self._proc = subprocess.Popen(
                cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                cwd=self.layout.data_dir, start_new_session=True,
                preexec_fn=_term_on_parent_death if self._die_with_parent else None,
            )  # fmt: skip
        try:
            self._wait_ready(timeout)
            if late_users:
                self._add_users(late_users)
        except BaseException:
            self.stop(keep_dir=True)  # keep the logs for the error message / post-mortem
            raise

    # ---- secure mode ---------------------------------------------------------------------------

    def client_security(self, user: str = ADMIN) -> KafkaSecurity:
        """Client settings (RELAYGUARD_KAFKA__*) for one of the secure broker's users."""
        if self.secure is None:
            return KafkaSecurity()
        return self.secure.security(user)

    def client_options(self, user: str = ADMIN) -> dict[str, object]:
        """aiokafka keyword arguments for that user ({} on a plaintext broker)."""
        return aiokafka_options(self.client_security(user))

    def apply_acls(self, rules: list[acls.AclRule]) -> int:
        """Create ACLs as the super user (no-op on a plaintext broker, which has no authorizer)."""
        if self.secure is None:
            return 0
        return acls.apply(rules, librdkafka_config(self.client_security(), self.bootstrap))

    def _add_users(self, users: list[str]) -> None:
        """Users added to `roles` after the data dir was formatted: create them via the Admin
        API (what kafka-configs --alter --entity-type users does)."""
        assert self.secure is not None
        self.secure.add_users(users, librdkafka_config(self.client_security(), self.bootstrap))

    def _format(self, java: str, classpath: str, log_flag: str) -> None:
        cmd = [java, log_flag, "-cp", classpath, "kafka.tools.StorageTool", "format",
               f"--cluster-id={new_cluster_id()}", "-c", str(self.layout.properties)]  # fmt: skip
        if self.secure is not None:  # SCRAM users exist before the first client connects
            cmd += self.secure.scram_args()
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
        if done.returncode != 0:
            output = (done.stdout + done.stderr).strip().splitlines()[-LOG_TAIL_LINES:]
            raise DownstreamError(
                f"formatting Kafka storage in {self.layout.log_dirs} failed "
                f"(exit {done.returncode}):\n" + "\n".join(output),
                hint="delete that data dir or pick another one",
            )
        if self.secure is not None:
            self.secure.mark_formatted(self.secure.users)

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        reason = "port never opened"
        port = self.port
        assert port is not None
        while time.monotonic() < deadline:
            assert self._proc is not None
            code = self._proc.poll()
            if code is not None:
                raise DownstreamError(
                    f"Kafka broker exited with code {code} during start\n{self._logs()}",
                    hint=f"read {self.layout.broker_log}; a port clash or a data dir from "
                    "another Kafka version are the usual causes",
                )
            if probe.port_open("127.0.0.1", port):
                problem = probe.round_trip_error(self.bootstrap, timeout=5,
                                                 kafka_options=self.client_options())
                if problem is None:
                    return
                reason = f"metadata round trip failed: {problem}"
            time.sleep(0.25)
        raise DownstreamError(
            f"Kafka broker not ready after {timeout:.0f}s ({reason})\n{self._logs()}",
            hint="the machine may be overloaded; retry, or raise the start timeout",
        )

    def _logs(self) -> str:
        parts = []
        for path in (self.layout.broker_log, self.layout.console_log):
            text = tail(path)
            if text:
                parts.append(f"--- last lines of {path} ---\n{text}")
        return "\n".join(parts) or f"(no broker output in {self.layout.data_dir})"

    def stop(self, timeout: float = 30, keep_dir: bool = False) -> None:
        """SIGTERM (Kafka shuts down cleanly), SIGKILL after `timeout`. Idempotent."""
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            _signal_group(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                _signal_group(proc.pid, signal.SIGKILL)
                proc.wait(10)
        if proc is not None:
            _signal_group(proc.pid, signal.SIGKILL)  # stragglers left in the group, if any
        if self._owns_dir and not keep_dir:
            shutil.rmtree(self.layout.data_dir, ignore_errors=True)

    def __enter__(self) -> LocalBroker:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def _locked_by_other_process(lock_file: Path) -> bool:
    """Kafka holds a POSIX lock on <log.dirs>/.lock; a second JVM on the same dir can damage the
    first one's metadata log before it notices, so refuse before launching."""
    if not lock_file.exists():
        return False
    with lock_file.open("a") as handle:
        try:
            fcntl.lockf(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return True
        fcntl.lockf(handle, fcntl.LOCK_UN)
    return False


def _term_on_parent_death() -> None:
    """Runs in the child before exec (Linux): ask for SIGTERM when our parent goes away."""
    with contextlib.suppress(Exception):  # not Linux / no libc: just skip the safety net
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)


def _signal_group(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):  # already gone
        os.killpg(pid, sig)
