"""LocalPostgres, the devkit's private PostgreSQL server, does not outlive its owner."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

from eventwire_devkit.postgres import find_postgres_bin
from eventwire_devkit.pytest_plugin import unavailable

_OWNER = textwrap.dedent(
    """
    import time
    from eventwire_devkit.postgres import LocalPostgres
    server = LocalPostgres().start()
    print(server._proc.pid, flush=True)
    time.sleep(600)
    """
)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie (our grandchild, reparented to init) counts as gone
    with open(f"/proc/{pid}/stat") as stat:
        return stat.read().rsplit(")", 1)[1].split()[0] != "Z"


def test_a_sigkilled_owner_takes_its_server_along() -> None:
    """SIGKILL of the process that started it (a timeout, a cancelled CI job) stops it too."""
    if find_postgres_bin() is None:
        unavailable("PostgreSQL is not installed")
    owner = subprocess.Popen(
        [sys.executable, "-c", _OWNER], stdout=subprocess.PIPE, text=True, env=os.environ
    )
    try:
        assert owner.stdout is not None
        line = owner.stdout.readline()
        assert line, f"the owner exited early with {owner.wait()}"
        server = int(line)
        assert alive(server)
    finally:
        owner.send_signal(signal.SIGKILL)
        owner.wait()
    deadline = time.monotonic() + 15
    while alive(server) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not alive(server), "the PostgreSQL server outlived its SIGKILLed owner"
