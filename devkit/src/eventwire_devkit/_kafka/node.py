"""One combined broker+controller JVM of a local cluster: its files, process and signals."""

from __future__ import annotations

import contextlib
import re
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import TYPE_CHECKING

from eventwire_devkit._kafka.errors import ClusterStartError
from eventwire_devkit._process import pdeathsig_preexec

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence

__all__ = [
    "LOG4J_CONFIG",
    "Node",
    "free_ports",
    "pdeathsig_preexec",
    "port_open",
    "startup_cause",
    "wait_ready",
]

LOG4J_CONFIG = Path(__file__).with_name("log4j2.yaml")

#: Java stack frames and their "... 18 more": no cause a reader can act on.
_FRAME = re.compile(r"^\s+(?:at |\.\.\. \d+ more)")
#: Kafka's message for a listener port another process took (free_ports() is a guess).
_BIND = re.compile(r"failed to bind to \S+?:(\d+): Address already in use")
#: A log4j record's first line: "[2026-01-01 00:00:00,000] ERROR message (logger)".
_RECORD = re.compile(r"^\[[^]]+\] (?P<level>[A-Z]+) (?P<message>.*?)(?: \([\w.$]+\))?$")
_MAX_LINE = 300
_SHORT_TAIL = 8


def _clip(line: str) -> str:
    line = line.strip()
    return line if len(line) <= _MAX_LINE else line[: _MAX_LINE - 3] + "..."


def startup_cause(lines: Sequence[str]) -> str | None:
    """Return the cause of a failed start found in a node's log lines, in one line.

    A taken port first ("port N is already in use"), else the first ERROR record's message
    with its root cause (the last ``Caused by:`` of that record), else the first line of
    the JVM's own complaint (``Error: ...``, ``Exception in thread ...``). None if none.
    """
    for line in lines:
        if match := _BIND.search(line):
            detail = line.split("Exception: ", 1)[-1].strip().rstrip(".")
            return _clip(f"port {match[1]} is already in use ({detail})")
    for i, line in enumerate(lines):
        record = _RECORD.match(line)
        if record is None or record["level"] not in {"ERROR", "FATAL"}:
            continue
        cause = ""
        for later in lines[i + 1 :]:
            if _RECORD.match(later):
                break
            if later.startswith("Caused by: "):
                cause = later.removeprefix("Caused by: ")
            elif not cause and not _FRAME.match(later) and later.strip():
                cause = later  # the exception itself, until a deeper cause shows
        message = record["message"].strip().rstrip(".")
        return _clip(f"{message}: {cause.strip()}" if cause else message)
    for line in lines:
        if line.startswith(("Error", "Exception in thread")) or "Exception:" in line:
            return _clip(line)
    return None


def free_ports(count: int) -> list[int]:
    """Return ``count`` distinct TCP ports on 127.0.0.1 that were free a moment ago."""
    sockets: list[socket.socket] = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind(("127.0.0.1", 0))
            sockets.append(sock)
        return [int(s.getsockname()[1]) for s in sockets]
    finally:
        for sock in sockets:
            sock.close()


def port_open(port: int, timeout: float = 0.5) -> bool:
    """Return True if something accepts TCP connections on 127.0.0.1:``port``."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout):
            return True
    except OSError:
        return False


class Node:
    """Files and process of one node; ``node_id`` is the Kafka ``node.id`` (1-based)."""

    def __init__(self, node_id: int, port: int, controller_port: int, directory: Path) -> None:
        """Describe a node; nothing is written or started yet."""
        self.node_id = node_id
        self.port = port
        self.controller_port = controller_port
        self.directory = directory
        self.process: subprocess.Popen[bytes] | None = None
        self.paused = False

    @property
    def properties_path(self) -> Path:
        """The node's ``server.properties``."""
        return self.directory / "server.properties"

    @property
    def log_path(self) -> Path:
        """The node's log4j log file (WARN and above)."""
        return self.directory / "server.log"

    @property
    def stdout_path(self) -> Path:
        """The JVM's captured stdout/stderr (crashes, JVM warnings)."""
        return self.directory / "stdout.log"

    @property
    def data_path(self) -> Path:
        """The node's ``log.dirs``."""
        return self.directory / "data"

    @property
    def pid(self) -> int | None:
        """Pid of the current JVM, None if never started."""
        return self.process.pid if self.process is not None else None

    @property
    def running(self) -> bool:
        """True while the JVM process exists (paused counts as running)."""
        return self.process is not None and self.process.poll() is None

    def write_properties(self, props: Mapping[str, str]) -> None:
        """Write ``server.properties``."""
        self.directory.mkdir(parents=True, exist_ok=True)
        text = "".join(f"{k}={v}\n" for k, v in props.items())
        self.properties_path.write_text(text)

    def jvm_command(
        self, java: str, classpath: str, main: Sequence[str], jvm_args: Sequence[str]
    ) -> list[str]:
        """Return the java command line for ``main`` (class and args) with quiet logging."""
        return [
            java,
            *jvm_args,
            "-XX:+ExitOnOutOfMemoryError",
            "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={LOG4J_CONFIG}",
            f"-Deventwire.node.log={self.log_path}",
            f"-Dkafka.logs.dir={self.directory}",
            "-cp",
            classpath,
            *main,
        ]

    def start(
        self, java: str, classpath: str, jvm_args: Sequence[str], *, die_with_parent: bool
    ) -> None:
        """Start the broker JVM in its own session; output goes to the node's files."""
        cmd = self.jvm_command(
            java, classpath, ["kafka.Kafka", str(self.properties_path)], jvm_args
        )
        preexec = pdeathsig_preexec() if die_with_parent else None
        with self.stdout_path.open("ab") as out:
            self.process = subprocess.Popen(
                cmd,
                cwd=self.directory,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=preexec,  # noqa: PLW1509 - only prctl + getppid, no locks taken
            )
        self.paused = False

    def send(self, sig: signal.Signals) -> None:
        """Send ``sig`` to the JVM if it runs."""
        if self.process is not None and self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(sig)

    def stop(self, timeout: float) -> None:
        """SIGTERM (resuming a paused JVM so it can act on it); SIGKILL after ``timeout``."""
        if not self.running:
            return
        self.send(signal.SIGTERM)
        self.resume()
        assert self.process is not None
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()

    def wait(self, timeout: float | None = None) -> None:
        """Wait for the JVM to exit (raises ``subprocess.TimeoutExpired``)."""
        if self.process is not None:
            self.process.wait(timeout)

    def kill(self) -> None:
        """SIGKILL the JVM and reap it."""
        self.send(signal.SIGKILL)
        if self.process is not None:
            self.process.wait()
        self.paused = False

    def pause(self) -> None:
        """SIGSTOP the JVM (looks like a long GC pause or a network partition)."""
        self.send(signal.SIGSTOP)
        self.paused = self.running

    def resume(self) -> None:
        """SIGCONT the JVM."""
        self.send(signal.SIGCONT)
        self.paused = False

    def log_lines(self) -> list[str]:
        """Return the lines of the node's log file, then of its JVM output (empty if none)."""
        lines: list[str] = []
        for path in (self.log_path, self.stdout_path):
            with contextlib.suppress(OSError):
                lines += path.read_text(errors="replace").splitlines()
        return lines

    def failure(self) -> str:
        """Say in a few lines why the node did not start, and where its whole log is.

        The cause found in the log (:func:`startup_cause`) comes first; without one, the
        last lines that are not stack frames. Never the raw stack trace.
        """
        lines = self.log_lines()
        where = f"its logs are in {self.directory} (server.log, stdout.log)"
        cause = startup_cause(lines)
        if cause is not None:
            return f"{cause}; {where}"
        tail = [_clip(line) for line in lines if line.strip() and not _FRAME.match(line)]
        if not tail:
            return f"no error in its log; {where}"
        shown = "\n".join(tail[-_SHORT_TAIL:])
        return f"no cause found in its log, which ends:\n{shown}\n({where})"

    def log_tail(self, lines: int = 40) -> str:
        """Return the last ``lines`` of the node's log file and JVM output, for error messages."""
        parts: list[str] = []
        for path in (self.log_path, self.stdout_path):
            try:
                text = path.read_text(errors="replace").splitlines()[-lines:]
            except OSError:
                continue
            if text:
                parts.append(f"--- {path} (last {len(text)} lines) ---\n" + "\n".join(text))
        return "\n".join(parts) or f"(node {self.node_id} wrote no log in {self.directory})"


def wait_ready(nodes: Sequence[Node], listed: Callable[[], set[int]], deadline: float) -> None:
    """Wait until every node runs, accepts TCP and is in ``listed()`` (a Metadata request).

    Raises:
        ClusterStartError: a node exited (fail fast) or ``deadline`` (monotonic) passed;
            the message starts with the cause found in the node's log and names the log.

    """
    seen: set[int] = set()
    wanted = {n.node_id for n in nodes}
    while True:
        for node in nodes:
            if not node.running:
                code = node.process.returncode if node.process is not None else None
                raise ClusterStartError(
                    f"Kafka node {node.node_id} failed to start (exit code {code}): "
                    f"{node.failure()}"
                )
        if all(port_open(n.port, 0.2) for n in nodes):
            seen = listed()
            if seen >= wanted:
                return
        if time.monotonic() > deadline:
            missing = [n for n in nodes if n.node_id not in seen]
            causes = "\n".join(f"node {n.node_id}: {n.failure()}" for n in missing or nodes)
            raise ClusterStartError(
                f"Kafka nodes {[n.node_id for n in missing]} not ready in time "
                f"(Metadata listed {sorted(seen)}):\n{causes}"
            )
        time.sleep(0.1)
