"""Run one contender process and measure it from the outside with ``os.wait4``.

``wait4`` returns the rusage of exactly that child (user+sys CPU of all its
threads, and its peak RSS), which is how the JVM contender's CPU and memory are
measured. A watchdog kills the child after ``timeout`` seconds.
"""

from __future__ import annotations

import os
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = ["ChildResult", "run_child"]


@dataclass(frozen=True)
class ChildResult:
    """Exit status, output and the child's own rusage."""

    returncode: int
    stdout: str
    stderr: str
    wall_s: float
    cpu_s: float
    peak_rss_mb: float
    timed_out: bool

    def tail(self, lines: int = 15) -> str:
        """The last lines of stderr and stdout, for error messages."""
        text = (self.stderr + "\n" + self.stdout).strip().splitlines()
        return "\n".join(text[-lines:])


def run_child(
    cmd: Sequence[str],
    *,
    timeout: float,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
) -> ChildResult:
    """Run ``cmd`` to completion (or kill it at ``timeout``) and return what it did."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        began = time.monotonic()
        proc = subprocess.Popen(
            list(cmd), stdout=out, stderr=err, stdin=subprocess.DEVNULL, cwd=cwd, env=env
        )
        fired = threading.Event()

        def kill() -> None:
            fired.set()
            if proc.returncode is None:
                os.kill(proc.pid, signal.SIGKILL)

        watchdog = threading.Timer(timeout, kill)
        watchdog.start()
        try:
            _pid, status, usage = os.wait4(proc.pid, 0)
        finally:
            watchdog.cancel()
        proc.returncode = os.waitstatus_to_exitcode(status)
        wall = time.monotonic() - began
        out.seek(0)
        err.seek(0)
        return ChildResult(
            returncode=proc.returncode,
            stdout=out.read(),
            stderr=err.read(),
            wall_s=wall,
            cpu_s=usage.ru_utime + usage.ru_stime,
            peak_rss_mb=usage.ru_maxrss / 1024,
            timed_out=fired.is_set(),
        )
