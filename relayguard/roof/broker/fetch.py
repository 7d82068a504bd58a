"""Fetch the Kafka broker jars once with Maven into a per-user cache; later runs need no network.

The cache is `$RELAYGUARD_KAFKA_CACHE/kafka-<version>/libs` (default root ~/.cache/relayguard).
A marker file is written only after Maven finished copying, so an interrupted download is redone.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import threading
from collections import deque
from collections.abc import Callable
from importlib import resources
from pathlib import Path

from relayguard.foundation.errors import DownstreamError, MissingToolError
from relayguard.roof.broker.config import DEFAULT_VERSION, major_version

Progress = Callable[[str], None]

DEPENDENCY_PLUGIN = "org.apache.maven.plugins:maven-dependency-plugin:3.8.1"
MARKER = ".relayguard-complete"
MAVEN_TIMEOUT_S = 1200

JAVA_HINT = "install a Java 17 JDK (Debian: apt-get install openjdk-17-jre-headless)"
MAVEN_HINT = "install Maven (Debian: apt-get install maven)"


def stderr_progress(line: str) -> None:
    """Default progress sink for commands and the test fixture."""
    print(line, file=sys.stderr, flush=True)


def cache_root() -> Path:
    env = os.environ.get("RELAYGUARD_KAFKA_CACHE")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "relayguard"


def version_dir(version: str = DEFAULT_VERSION) -> Path:
    return cache_root() / f"kafka-{version}"


def cached_libs(version: str = DEFAULT_VERSION) -> Path | None:
    """The libs dir if a complete copy is cached, else None."""
    libs = version_dir(version) / "libs"
    return libs if (version_dir(version) / MARKER).is_file() and libs.is_dir() else None


def require_tool(name: str, hint: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise MissingToolError(f"`{name}` was not found on PATH", hint=hint)
    return path


def ensure_jars(version: str = DEFAULT_VERSION, progress: Progress | None = None) -> Path:
    """Return the dir holding the broker's jars, downloading them with Maven the first time."""
    major_version(version)  # reject nonsense before touching the network
    done = cached_libs(version)
    if done is not None:
        return done
    mvn = require_tool("mvn", MAVEN_HINT)
    require_tool("java", JAVA_HINT)  # Maven needs it too, and the broker can't run without it
    target = version_dir(version)
    target.mkdir(parents=True, exist_ok=True)
    (target / MARKER).unlink(missing_ok=True)
    say = progress or (lambda _line: None)
    say(f"fetching Kafka {version} broker jars with Maven into {target} (first time only)")
    staging = Path(tempfile.mkdtemp(prefix="libs.partial-", dir=target))
    try:
        count = _run_maven(mvn, version, staging, say)
        libs = target / "libs"
        if libs.exists():  # leftover of an interrupted run: never trust it
            shutil.rmtree(libs)
        staging.chmod(0o755)  # mkdtemp made it private; the cache may be shared by users
        staging.rename(libs)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    jars = sorted(p.name for p in libs.glob("*.jar"))
    if not any(name.startswith("kafka_") for name in jars):
        raise DownstreamError(f"Maven finished but no kafka_*.jar was copied into {libs}")
    (target / MARKER).write_text("\n".join(jars) + "\n")
    say(f"Kafka {version}: {len(jars)} jars ready ({count} files downloaded)")
    return libs


def _run_maven(mvn: str, version: str, out_dir: Path, say: Progress) -> int:
    """Run copy-dependencies on our packaged pom; stream a condensed download log via `say`."""
    with tempfile.TemporaryDirectory(prefix="relayguard-pom-") as work:
        pom = Path(work) / "pom.xml"
        pom.write_bytes(resources.files("relayguard.roof.broker").joinpath("pom.xml").read_bytes())
        cmd = [
            mvn, "-B", "-f", str(pom), f"{DEPENDENCY_PLUGIN}:copy-dependencies",
            "-DincludeScope=runtime", f"-DoutputDirectory={out_dir}",
            f"-Dkafka.version={version}",
        ]  # fmt: skip
        if major_version(version) < 4:
            cmd.append("-DlegacyLogging=true")
        tail: deque[str] = deque(maxlen=30)
        downloaded = 0
        try:
            proc = subprocess.Popen(
                cmd, cwd=work, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, text=True, errors="replace",
            )  # fmt: skip
        except OSError as exc:
            raise MissingToolError(f"could not run Maven: {exc}", hint=MAVEN_HINT) from exc
        assert proc.stdout is not None
        watchdog = threading.Timer(MAVEN_TIMEOUT_S, proc.kill)  # a hung download must end
        watchdog.daemon = True
        watchdog.start()
        for raw in proc.stdout:
            line = raw.rstrip()
            tail.append(line)
            if "Downloaded from" in line:
                downloaded += 1
                name, _, size = line.split(": ", 1)[-1].partition(" ")
                name = name.rsplit("/", 1)[-1]
                if name.endswith(".jar"):  # poms and metadata are noise; jars show real progress
                    say(f"  [{downloaded:3d}] {name} {size.split(' at ')[0].lstrip('(')}")
        rc = proc.wait()
        watchdog.cancel()
    if rc != 0:
        log = "\n".join(f"    {t}" for t in tail)
        raise DownstreamError(
            f"Maven could not fetch Kafka {version} (exit {rc}); last output:\n{log}",
            hint="check network access to the Maven repository (or the mirror in "
            "~/.m2/settings.xml), then run `relayguard broker fetch` again",
        )
    return downloaded
