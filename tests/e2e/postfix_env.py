"""A private Postfix + Dovecot (SASL only) + smtp-sink on 127.0.0.1, in one temp directory.

Layout of the directory E:
  postfix/main.cf, master.cf  Postfix config (no chroot, loopback only); queue/ and data/ beside
  maillog                   Postfix's own log (postlogd; no syslog daemon is needed)
  dovecot.conf, dovecot.log Dovecot as SASL backend only (auth service on a TCP port)
  tls/                      throw-away self-signed certificate
Clients must AUTH (mynetworks excludes loopback); every recipient, DATA and end-of-data check
asks the policy service on `policy_port` first (default_action=DUNNO when nobody answers).
Mail goes on to smtp-sink, which accepts and drops it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from relayguard.roof.broker.config import free_port

SBIN = "/usr/sbin:/sbin:/usr/bin:/bin"
USERS = {"alice": "alice-secret-1", "bob": "bob-secret-2", "carol": "carol-secret-3",
         "dave": "dave-secret-4"}
INSTALL_SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "install-postfix.sh"


class HarnessError(RuntimeError):
    """The private mail system could not be installed, configured or started."""


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = env.get("PATH", "") + ":" + SBIN
    return env


def missing_tools() -> list[str]:
    path = _env()["PATH"]
    return [t for t in ("postfix", "postconf", "dovecot", "swaks", "smtp-sink", "openssl")
            if shutil.which(t, path=path) is None]


def ensure_installed() -> None:
    """Install the packages via scripts/install-postfix.sh when a binary is missing."""
    if not missing_tools():
        return
    proc = subprocess.run(["bash", str(INSTALL_SCRIPT)], capture_output=True, text=True,
                          env=_env(), timeout=600, check=False)
    still = missing_tools()
    if proc.returncode != 0 or still:
        raise HarnessError(
            f"scripts/install-postfix.sh exited {proc.returncode}; missing: {', '.join(still)}\n"
            f"--- stdout ---\n{proc.stdout[-4000:]}\n--- stderr ---\n{proc.stderr[-4000:]}")


def _run(cmd: list[str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, env=_env(), timeout=timeout,
                          check=False)


def _children(pid: int) -> list[int]:
    """Direct children of a process we started (Linux /proc)."""
    out: list[int] = []
    with contextlib.suppress(OSError):
        for task in os.listdir(f"/proc/{pid}/task"):
            text = Path(f"/proc/{pid}/task/{task}/children").read_text()
            out += [int(p) for p in text.split()]
    return out


def _wait_port(port: int, deadline: float) -> bool:
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
            return True
        time.sleep(0.1)
    return False


def _banner(port: int) -> str:
    """The first line an SMTP server on the port greets with ("" when none within 5 s)."""
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 5) as sock:
        sock.settimeout(5)
        data = b""
        while b"\n" not in data and len(data) < 512:
            chunk = sock.recv(512)
            if not chunk:
                break
            data += chunk
        return data.decode("ascii", "replace").strip()
    return ""


@dataclass
class PostfixEnv:
    directory: Path
    submission_port: int = field(default_factory=free_port)
    auth_port: int = field(default_factory=free_port)
    sink_port: int = field(default_factory=free_port)
    policy_port: int = field(default_factory=free_port)
    users: dict[str, str] = field(default_factory=lambda: dict(USERS))
    _sink: subprocess.Popen[bytes] | None = None
    _dovecot: subprocess.Popen[bytes] | None = None
    _postfix_started: bool = False

    @property
    def config_dir(self) -> Path:
        return self.directory / "postfix"

    @property
    def maillog(self) -> Path:
        return self.directory / "maillog"

    @property
    def dovecot_log(self) -> Path:
        return self.directory / "dovecot.log"

    # -- lifecycle ---------------------------------------------------------------------------
    @classmethod
    def create(cls) -> PostfixEnv:
        ensure_installed()
        env = cls(Path(tempfile.mkdtemp(prefix="rg-postfix-")))
        try:
            env.configure()
            env.start()
        except BaseException:
            env.stop()
            raise
        return env

    def configure(self) -> None:
        from tests.e2e import postfix_config

        postfix_config.write_all(self)

    def start(self) -> None:
        deadline = time.monotonic() + 30
        self._sink = subprocess.Popen(
            ["smtp-sink", "-u", "postfix", "-c", f"127.0.0.1:{self.sink_port}", "100"],
            env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.start_dovecot(deadline)
        check = _run(["postfix", "-c", str(self.config_dir), "check"])
        if check.returncode != 0:
            raise HarnessError(f"postfix check failed:\n{check.stdout}{check.stderr}"
                               + self._tail(self.maillog))
        # postfix prints fatal errors only to a terminal: give it one.
        proc = _run(["script", "-qec", f"postfix -c {self.config_dir} start", "/dev/null"])
        self._postfix_started = True
        if proc.returncode != 0 or not _wait_port(self.submission_port, deadline):
            raise HarnessError(f"postfix start exited {proc.returncode}:\n{proc.stdout}"
                               f"{proc.stderr}" + self._tail(self.maillog))
        banner = _banner(self.submission_port)
        if "relay.test" not in banner:  # someone else holds the port: say so, not "swaks 29"
            raise HarnessError(f"port {self.submission_port} answers {banner!r}, not this "
                               "Postfix (myhostname relay.test)" + self._tail(self.maillog))
        if not _wait_port(self.sink_port, deadline):
            raise HarnessError(f"smtp-sink did not listen on {self.sink_port}")

    def start_dovecot(self, deadline: float | None = None) -> None:
        """Start the SASL backend (also after stop_dovecot(), to end a simulated outage)."""
        deadline = deadline or time.monotonic() + 30
        with (self.directory / "dovecot.stderr").open("ab") as err:
            self._dovecot = subprocess.Popen(
                ["dovecot", "-F", "-c", str(self.directory / "dovecot.conf")], env=_env(),
                stdout=subprocess.DEVNULL, stderr=err)
        if not _wait_port(self.auth_port, deadline):
            raise HarnessError(f"dovecot auth did not listen on {self.auth_port}:\n"
                               + self._tail(self.directory / "dovecot.stderr")
                               + self._tail(self.dovecot_log))

    def stop_dovecot(self) -> None:
        """Take the SASL backend away (an outage as Postfix sees it)."""
        proc, self._dovecot = self._dovecot, None
        if proc is not None and proc.poll() is None:
            # Kill the auth processes first (they would keep serving open connections for a
            # while after a clean stop) while the master still lives to reap them.
            for pid in _children(proc.pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.2)
            proc.terminate()
            proc.wait(15)
        deadline = time.monotonic() + 10
        while _wait_port(self.auth_port, time.monotonic() + 0.2):  # children go a bit later
            if time.monotonic() > deadline:
                raise HarnessError(f"dovecot auth still listens on {self.auth_port}")
            time.sleep(0.1)

    def reload(self) -> None:
        """`postfix reload`: fresh smtpd processes (they cache the Dovecot connection) and a
        reopened maillog (postlogd keeps writing to a renamed file until then)."""
        proc = _run(["postfix", "-c", str(self.config_dir), "reload"])
        if proc.returncode != 0:
            raise HarnessError(f"postfix reload exited {proc.returncode}: {proc.stderr}")

    def stop(self) -> None:
        if self._postfix_started:
            _run(["postfix", "-c", str(self.config_dir), "stop"])
            self._postfix_started = False
        for proc in (self._sink, self._dovecot):
            if proc is not None and proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(5)
        self._sink = self._dovecot = None

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.directory, ignore_errors=True)

    # -- helpers -----------------------------------------------------------------------------
    def swaks(self, user: str, password: str, to: str = "bob@example.org",
              expect: int | None = 0, sender: str | None = None, timeout: float = 60,
              client_ip: str | None = None) -> tuple[int, str]:
        """Send one message with AUTH PLAIN over STARTTLS. swaks exit codes: 0 sent,
        24 RCPT rejected, 25 DATA rejected, 28 AUTH failed. `to` may list several addresses
        (comma separated); `client_ip` makes Postfix see the session as coming from there
        (XCLIENT, allowed for loopback only: smtpd_authorized_xclient_hosts)."""
        cmd = ["swaks", "--server", f"127.0.0.1:{self.submission_port}", "--tls",
               "--auth", "PLAIN", "--auth-user", user, "--auth-password", password,
               "--from", sender or f"{user}@relay.test", "--to", to,
               "--timeout", "30", "--header", "Subject: relayguard e2e"]
        if client_ip is not None:
            cmd += ["--xclient-addr", client_ip]
        proc = _run(cmd, timeout=timeout)
        out = proc.stdout + proc.stderr
        if expect is not None and proc.returncode != expect:
            raise AssertionError(f"swaks exited {proc.returncode}, expected {expect}\n{out}"
                                 + self._tail(self.maillog))
        return proc.returncode, out

    async def swaks_async(self, user: str, password: str, to: str = "bob@example.org",
                          expect: int | None = 0, client_ip: str | None = None
                          ) -> tuple[int, str]:
        """swaks() in a thread: a policy server in the test's event loop must keep answering."""
        import asyncio

        return await asyncio.to_thread(self.swaks, user, password, to, expect,
                                       client_ip=client_ip)

    async def swaks_until(self, user: str, code: int, timeout: float,
                          client_ip: str | None = None) -> float:
        """Send with the user's right password until swaks exits with `code`; seconds taken."""
        import asyncio

        start = time.monotonic()
        while True:
            got, out = await self.swaks_async(user, self.users[user], expect=None,
                                              client_ip=client_ip)
            if got == code:
                return time.monotonic() - start
            if time.monotonic() - start > timeout:
                raise AssertionError(f"swaks still exits {got}, not {code}, after {timeout}s\n"
                                     f"{out}" + self._tail(self.maillog))
            await asyncio.sleep(0.3)

    def maillog_text(self) -> str:
        try:
            return self.maillog.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def _tail(self, path: Path, lines: int = 40) -> str:
        try:
            text = path.read_text(errors="replace").splitlines()[-lines:]
        except FileNotFoundError:
            return f"\n({path.name}: no such file)"
        return f"\n--- last lines of {path} ---\n" + "\n".join(text)
