"""A real Schema Registry on loopback (Apicurio Registry, Confluent-compatible API), no Docker.

>>> with LocalSchemaRegistry() as registry:  # doctest: +SKIP
...     client = SchemaRegistryClient({"url": registry.url})

The registry is Apicurio Registry :data:`REGISTRY_VERSION` with in-memory storage (every
start is empty), serving Confluent's Schema Registry REST API under
``/apis/ccompat/v7`` (:attr:`LocalSchemaRegistry.url`), which confluent-kafka's
``SchemaRegistryClient`` and serializers speak. Confluent's own server is not on Maven
Central; Apicurio is, and builds from it.

**Build once.** :func:`ensure_registry_build` runs ``mvn -B -q package -DskipTests`` on
the devkit's own ``pom.xml`` (package data, ``_registry/pom.xml``) in a temporary
``.build-*`` directory and moves the runnable jar and its ``lib/`` into
``$EVENTWIRE_REGISTRY_CACHE/<version>/app/`` (default
``${XDG_CACHE_HOME:-~/.cache}/eventwire/registry/<version>/app/``) once complete, under a
file lock, the way the Kafka jars are fetched. About 55 s with an empty ``~/.m2``
(about 230 MB from Maven Central), 15-25 s when warm.

**Start.** One JVM (``java -jar``) on a free 127.0.0.1 port, in its own session, with
``PR_SET_PDEATHSIG`` (it dies with the thread that started it, when that is the main
thread), small-heap options (:data:`DEFAULT_JVM_ARGS`; ``EVENTWIRE_REGISTRY_JAVA_OPTS``
replaces them), ready when ``/health/ready`` answers 200 (about 2.5 s).

Quirks versus Confluent's server (the client handles all of them): an incompatible
schema is refused with HTTP 409 but ``error_code`` 0 (check the status); a missing subject
is 404 with ``error_code`` 40402 (Confluent: 40401); schema ids may skip numbers (a
refused registration uses one up).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shlex
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from types import TracebackType

from eventwire_devkit._kafka.errors import JavaNotFoundError
from eventwire_devkit._kafka.jars import cache_root, find_java
from eventwire_devkit._kafka.node import free_ports, pdeathsig_preexec

__all__ = [
    "CACHE_ENV",
    "CCOMPAT_PATH",
    "DEFAULT_JVM_ARGS",
    "JAVA_OPTS_ENV",
    "POM_PATH",
    "REGISTRY_VERSION",
    "LocalRegistryError",
    "LocalSchemaRegistry",
    "RegistryBuildError",
    "RegistryStartError",
    "RegistryUnavailableError",
    "ensure_registry_build",
    "is_registry_process",
    "registry_cache_dir",
]

Progress = Callable[[str], None]

#: The Apicurio Registry release the devkit's ``pom.xml`` builds.
REGISTRY_VERSION = "2.4.2.Final"
#: The Confluent-compatible API's path under the registry's base URL.
CCOMPAT_PATH = "/apis/ccompat/v7"
#: Overrides the build cache root (``<root>/<version>/app``).
CACHE_ENV = "EVENTWIRE_REGISTRY_CACHE"
#: Replaces :data:`DEFAULT_JVM_ARGS` (split like a shell would).
JAVA_OPTS_ENV = "EVENTWIRE_REGISTRY_JAVA_OPTS"
#: Small heap, serial GC, C1 only: about 165 MB resident idle instead of about 250 MB.
DEFAULT_JVM_ARGS = ("-XX:+UseSerialGC", "-Xmx128m", "-Xss512k", "-XX:TieredStopAtLevel=1")
POM_PATH = Path(__file__).parent / "_registry" / "pom.xml"
_RUNNER_JAR = "eventwire-registry-runner-1.0-runner.jar"
_COMPLETE_MARKER = ".complete"
_MAVEN_TIMEOUT_S = 900.0


class LocalRegistryError(Exception):
    """Base class: the local Schema Registry could not be provided or operated."""


class RegistryUnavailableError(LocalRegistryError):
    """The registry cannot run here: no Java 17+, or it is not built and Maven is missing."""


class RegistryBuildError(LocalRegistryError):
    """Maven ran but did not build a runnable registry."""


class RegistryStartError(LocalRegistryError):
    """The registry JVM exited or was not ready in time; the message holds its log's tail."""


def registry_cache_dir(version: str = REGISTRY_VERSION) -> Path:
    """Return the cache directory of one registry version (``app/`` lives inside)."""
    override = os.environ.get(CACHE_ENV)
    root = Path(override).expanduser() if override else cache_root() / "registry"
    return root / version


@contextlib.contextmanager
def _locked(lock_path: Path) -> Iterator[None]:
    with lock_path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _java() -> str:
    try:
        return find_java()
    except JavaNotFoundError as exc:
        raise RegistryUnavailableError(
            str(exc).replace("a local Apache Kafka broker", "a local Schema Registry")
        ) from None


def _run_maven(mvn: str, work: Path) -> Path:
    shutil.copyfile(POM_PATH, work / "pom.xml")
    cmd = [mvn, "-B", "-q", "package", "-DskipTests"]
    try:
        result = subprocess.run(
            cmd,
            cwd=work,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=_MAVEN_TIMEOUT_S,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise RegistryBuildError(f"Maven did not finish within {_MAVEN_TIMEOUT_S:.0f} s") from exc
    jar = work / "target" / _RUNNER_JAR
    if result.returncode != 0 or not jar.is_file():
        tail = "\n".join((result.stdout + result.stderr).strip().splitlines()[-25:])
        raise RegistryBuildError(
            f"`{' '.join(cmd)}` in {work} failed with exit code {result.returncode} (no network "
            f"access to Maven Central?); no {_RUNNER_JAR} was built:\n{tail}"
        )
    return work / "target"


def ensure_registry_build(progress: Progress | None = None) -> Path:
    """Return the directory holding the runnable registry jar; build it once with Maven.

    Raises:
        RegistryUnavailableError: it is not built and ``mvn`` or Java 17+ is missing.
        RegistryBuildError: Maven failed.

    """
    base = registry_cache_dir()
    app = base / "app"
    if (app / _COMPLETE_MARKER).is_file():
        return app
    mvn = shutil.which("mvn")
    if mvn is None:
        raise RegistryUnavailableError(
            f"The Schema Registry (Apicurio {REGISTRY_VERSION}) is not built in {app} and "
            "Maven (`mvn`) is not on PATH to build it. Install Maven (e.g. `apt-get install "
            "maven`) and a JDK 17+."
        )
    _java()
    base.mkdir(parents=True, exist_ok=True)
    with _locked(base / ".lock"):
        if (app / _COMPLETE_MARKER).is_file():  # another process built it while we waited
            return app
        for stale in base.glob(".build-*"):
            shutil.rmtree(stale, ignore_errors=True)
        if app.exists():  # no completion marker: not ours to trust
            shutil.rmtree(app)
        if progress is not None:
            progress(f"Building Apicurio Registry {REGISTRY_VERSION} with Maven into {app}")
        work = Path(tempfile.mkdtemp(prefix=".build-", dir=base))
        try:
            target = _run_maven(mvn, work)
            staged = work / "app"
            staged.mkdir()
            (target / _RUNNER_JAR).rename(staged / _RUNNER_JAR)
            (target / "lib").rename(staged / "lib")
            (staged / _COMPLETE_MARKER).write_text(f"apicurio-registry {REGISTRY_VERSION}\n")
            staged.rename(app)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    return app


def is_registry_process(pid: int) -> bool:
    """Return True if ``pid`` is a live JVM running the devkit's registry jar."""
    try:
        args = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return any(arg.endswith(_RUNNER_JAR.encode()) for arg in args)


def _jvm_args() -> list[str]:
    override = os.environ.get(JAVA_OPTS_ENV)
    return shlex.split(override) if override is not None else list(DEFAULT_JVM_ARGS)


def _ready(url: str, timeout: float) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return int(response.status) == 200
    except (OSError, urllib.error.URLError, ValueError):
        return False


class LocalSchemaRegistry:
    """One Apicurio Registry JVM on 127.0.0.1, in-memory, with a Confluent-compatible API.

    :attr:`url` is the base URL for ``SchemaRegistryClient({"url": ...})``
    (``http://127.0.0.1:<port>/apis/ccompat/v7``). :meth:`stop` (SIGTERM) and
    :meth:`kill` (SIGKILL) take it down, e.g. to test a registry outage; :meth:`close`
    also deletes its log directory. Not thread-safe.
    """

    def __init__(
        self,
        *,
        port: int | None = None,
        jvm_args: Sequence[str] | None = None,
        startup_timeout: float = 60.0,
        die_with_parent: bool = True,
        log_dir: str | Path | None = None,
        progress: Progress | None = None,
    ) -> None:
        """Configure a registry; nothing runs until :meth:`start`.

        ``jvm_args`` default: ``$EVENTWIRE_REGISTRY_JAVA_OPTS`` if set, else
        :data:`DEFAULT_JVM_ARGS`. ``log_dir`` (default: a fresh temp dir, deleted by
        :meth:`close`) receives ``registry.log``.
        """
        self.port = port or 0
        self._jvm_args = list(jvm_args) if jvm_args is not None else _jvm_args()
        self._startup_timeout = startup_timeout
        self._die_with_parent = die_with_parent
        self._given_log_dir = Path(log_dir) if log_dir is not None else None
        self._progress = progress
        self.log_dir: Path | None = None
        self.process: subprocess.Popen[bytes] | None = None
        self.startup_seconds: float | None = None

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:<port>`` (the health endpoints live under it)."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        """The Confluent-compatible API: ``http://127.0.0.1:<port>/apis/ccompat/v7``."""
        return self.base_url + CCOMPAT_PATH

    @property
    def pid(self) -> int | None:
        """Pid of the JVM (None before :meth:`start`)."""
        return self.process.pid if self.process is not None else None

    @property
    def running(self) -> bool:
        """True while the JVM process exists."""
        return self.process is not None and self.process.poll() is None

    @property
    def log_path(self) -> Path | None:
        """The JVM's output (Quarkus logs), once started."""
        return self.log_dir / "registry.log" if self.log_dir is not None else None

    def start(self) -> LocalSchemaRegistry:
        """Build once if needed, start the JVM and wait until ``/health/ready`` answers.

        Raises:
            RegistryUnavailableError: no Java 17+, or not built and no Maven.
            RegistryBuildError: Maven failed.
            RegistryStartError: the JVM exited, or was not ready within ``startup_timeout``.

        """
        if self.process is not None:
            raise LocalRegistryError("this registry was already started")
        java = _java()
        app = ensure_registry_build(self._progress)
        began = time.monotonic()
        if not self.port:
            self.port = free_ports(1)[0]
        if self._given_log_dir is not None:
            self._given_log_dir.mkdir(parents=True, exist_ok=True)
            self.log_dir = self._given_log_dir
        else:
            self.log_dir = Path(tempfile.mkdtemp(prefix="eventwire-registry-"))
        cmd = [
            java,
            *self._jvm_args,
            "-XX:+ExitOnOutOfMemoryError",
            "-Djava.awt.headless=true",
            "-Dquarkus.http.host=127.0.0.1",
            f"-Dquarkus.http.port={self.port}",
            "-jar",
            str(app / _RUNNER_JAR),
        ]
        if self._progress is not None:
            self._progress(f"Starting Apicurio Registry {REGISTRY_VERSION} on port {self.port}")
        preexec = pdeathsig_preexec() if self._die_with_parent else None
        assert self.log_path is not None
        with self.log_path.open("ab") as out:
            self.process = subprocess.Popen(
                cmd,
                cwd=self.log_dir,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=preexec,  # noqa: PLW1509 - only prctl + getppid, no locks taken
            )
        try:
            self._wait_ready(began + self._startup_timeout)
        except BaseException:
            self.close()
            raise
        self.startup_seconds = time.monotonic() - began
        return self

    def _wait_ready(self, deadline: float) -> None:
        health = self.base_url + "/health/ready"
        while True:
            if not self.running:
                code = self.process.returncode if self.process is not None else None
                raise RegistryStartError(
                    f"the Schema Registry JVM exited with code {code} while starting:\n"
                    f"{self.log_tail()}"
                )
            if _ready(health, 1.0):
                return
            if time.monotonic() > deadline:
                raise RegistryStartError(
                    f"the Schema Registry was not ready on port {self.port} within "
                    f"{self._startup_timeout:.0f} s:\n{self.log_tail()}"
                )
            time.sleep(0.1)

    def ready(self, timeout: float = 2.0) -> bool:
        """Return True if ``/health/ready`` answers 200 now."""
        return self.running and _ready(self.base_url + "/health/ready", timeout)

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM the JVM and wait for it to exit; SIGKILL after ``timeout``. Idempotent."""
        if not self.running:
            return
        assert self.process is not None
        with contextlib.suppress(ProcessLookupError):
            self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()

    def kill(self) -> None:
        """SIGKILL the JVM and reap it. Idempotent."""
        if self.process is None:
            return
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(signal.SIGKILL)
        self.process.wait()

    def close(self) -> None:
        """Kill the JVM (its storage is in memory: nothing to flush) and delete a temp log dir."""
        self.kill()
        if self.log_dir is not None and self._given_log_dir is None:
            shutil.rmtree(self.log_dir, ignore_errors=True)

    def log_tail(self, lines: int = 40) -> str:
        """The last ``lines`` of the JVM's output, for error messages."""
        if self.log_path is None:
            return "(not started)"
        try:
            text = self.log_path.read_text(errors="replace").splitlines()[-lines:]
        except OSError:
            return f"(no log at {self.log_path})"
        return f"--- {self.log_path} (last {len(text)} lines) ---\n" + "\n".join(text)

    def __enter__(self) -> LocalSchemaRegistry:
        """Start the registry (see :meth:`start`)."""
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Close the registry (see :meth:`close`)."""
        self.close()

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped" if self.process else "new"
        return f"LocalSchemaRegistry(url={self.url!r}, pid={self.pid}, {state})"
