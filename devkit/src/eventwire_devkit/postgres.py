"""A throwaway local PostgreSQL server for tests (Debian's ``postgresql`` package).

:class:`LocalPostgres` runs ``initdb`` into a temporary directory and starts
``postgres`` on a free loopback port with trust authentication. PostgreSQL
refuses to run as root, so as root the server runs as the ``postgres`` user.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

from eventwire_devkit._process import pdeathsig_preexec

__all__ = ["LocalPostgres", "PostgresUnavailableError", "find_postgres_bin"]


class PostgresUnavailableError(RuntimeError):
    """PostgreSQL is not installed, or the local server did not start."""


def find_postgres_bin() -> Path | None:
    """The newest ``/usr/lib/postgresql/<v>/bin`` with initdb and postgres, if any."""
    candidates = sorted(
        glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(Path(p).parent.name)
    )
    for path in reversed(candidates):
        if (Path(path) / "initdb").exists() and (Path(path) / "postgres").exists():
            return Path(path)
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class LocalPostgres:
    """A private PostgreSQL server on 127.0.0.1; ``dsn`` is valid after :meth:`start`."""

    def __init__(self, *, user: str = "eventwire", startup_timeout: float = 60.0) -> None:
        self.user = user
        self.port = 0
        self._timeout = startup_timeout
        self._dir: Path | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._run_as: pwd.struct_passwd | None = None

    @property
    def dsn(self) -> str:
        """``postgresql://<user>@127.0.0.1:<port>/postgres``."""
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/postgres"

    def _demote(self) -> None:
        if self._run_as is not None:
            os.setgid(self._run_as.pw_gid)
            os.setuid(self._run_as.pw_uid)

    def start(self) -> LocalPostgres:
        """Initdb + start; raise PostgresUnavailableError with the server log on failure."""
        bindir = find_postgres_bin()
        if bindir is None:
            raise PostgresUnavailableError(
                "PostgreSQL is not installed (no /usr/lib/postgresql/*/bin/initdb); "
                "install Debian's package: apt-get install postgresql"
            )
        self._dir = Path(tempfile.mkdtemp(prefix="eventwire-pg-"))
        if os.geteuid() == 0:
            self._run_as = pwd.getpwnam("postgres")
            os.chown(self._dir, self._run_as.pw_uid, self._run_as.pw_gid)
        data = self._dir / "data"
        subprocess.run(
            [
                str(bindir / "initdb"),
                "-D",
                str(data),
                "-U",
                self.user,
                "--auth=trust",
                "-E",
                "UTF8",
            ],
            check=True,
            capture_output=True,
            preexec_fn=self._demote,
        )
        self.port = _free_port()
        self._launch()
        return self

    def _launch(self) -> None:
        bindir = find_postgres_bin()
        assert bindir is not None
        assert self._dir is not None
        data = self._dir / "data"
        log = open(self._dir / "server.log", "ab")  # noqa: SIM115 - kept open for the server
        self._proc = subprocess.Popen(
            [
                str(bindir / "postgres"),
                "-D",
                str(data),
                "-p",
                str(self.port),
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                f"unix_socket_directories={self._dir}",
                "-c",
                "fsync=on",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            # the server goes when this process does (SIGQUIT: immediate shutdown),
            # even when it is killed (a timeout, a cancelled CI job) before close()
            preexec_fn=pdeathsig_preexec(signal.SIGQUIT, then=self._demote),  # noqa: PLW1509
            start_new_session=True,
        )
        self._wait_ready()

    def stop(self) -> None:
        """Stop the server (fast shutdown), keeping its data; :meth:`resume` starts it again."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.send_signal(signal.SIGINT)  # fast shutdown: cuts sessions (SIGTERM waits)
            try:
                self._proc.wait(20)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait(5)
        self._proc = None

    def resume(self) -> LocalPostgres:
        """Start a server stopped with :meth:`stop` again: same data, same port and DSN."""
        if self._dir is None:
            raise PostgresUnavailableError("resume() needs a server started with start()")
        self._launch()
        return self

    def restart(self) -> LocalPostgres:
        """Stop and start the server (as a database restart); every connection is cut."""
        self.stop()
        return self.resume()

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self._timeout
        while time.monotonic() < deadline:
            if self._proc is not None and self._proc.poll() is not None:
                break
            if self._accepting():
                return
            time.sleep(0.2)
        log = (self._dir / "server.log").read_text(errors="replace")[-2000:] if self._dir else ""
        self.close()
        raise PostgresUnavailableError(f"PostgreSQL did not start:\n{log}")

    def _accepting(self) -> bool:
        """True once the server accepts sessions (not only TCP: recovery is over)."""
        bindir = find_postgres_bin()
        isready = None if bindir is None else bindir / "pg_isready"
        if isready is not None and isready.exists():
            probe = [str(isready), "-q", "-h", "127.0.0.1", "-p", str(self.port), "-t", "1"]
            return subprocess.run(probe, check=False, capture_output=True).returncode == 0
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), 0.5):
            time.sleep(0.3)  # accepting TCP; give it a moment to finish recovery
            return True
        return False

    def close(self) -> None:
        """Stop the server (fast shutdown) and delete its data."""
        self.stop()
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None

    def __enter__(self) -> LocalPostgres:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
