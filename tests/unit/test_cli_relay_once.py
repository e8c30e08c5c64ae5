"""`eventwire outbox relay --once` ends at the first problem, for a scheduled job.

No broker answering, a failing round, or a round that leaves entries to retry ends
the command with exit 1 and says why; the entries stay in the outbox for the next
run. Only a drained outbox exits 0.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import typer

from eventwire._shutdown import GracefulShutdown
from eventwire.cli.outbox import _relay_once
from eventwire.outbox import OutboxEntry, OutboxRelay, SQLiteOutbox
from eventwire.transports.memory import MemoryTransport

RELAY_ONCE = [sys.executable, "-m", "eventwire.cli", "outbox", "relay", "--once"]


def entry(n: int) -> OutboxEntry:
    return OutboxEntry(f"id-{n}", "T", "orders", f"k{n}".encode(), f"v{n}".encode(), ())


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SQLiteOutbox]:
    store = SQLiteOutbox(tmp_path / "outbox.db")
    store.add([entry(n) for n in range(3)])
    yield store
    store.close()


def relay_once_to_a_dead_port(db: Path, *more: str) -> subprocess.CompletedProcess[str]:
    """`eventwire outbox relay --once` toward a port nothing listens on, as a process."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("EVENTWIRE_")}
    return subprocess.run(
        [*RELAY_ONCE, "--bootstrap", "127.0.0.1:1", "--sqlite", str(db), *more],
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
        env={**env, "COLUMNS": "250"},
    )


def test_no_broker_answering_exits_1_within_the_connect_check(store: SQLiteOutbox) -> None:
    """Nothing listens on the port: exit 1 after the 10 s check (not after an hour)."""
    started = time.monotonic()
    done = relay_once_to_a_dead_port(store.path)
    assert done.returncode == 1, done.stderr
    assert time.monotonic() - started < 60
    assert "Nothing was relayed; the entries wait in the outbox." in done.stderr
    assert "Traceback" not in done.stderr
    assert "connect_timeout" not in done.stderr  # a library option, not one of this command
    assert store.status().pending == 3


def test_a_round_that_leaves_entries_to_retry_ends_the_command(
    store: SQLiteOutbox, capsys: pytest.CaptureFixture[str]
) -> None:
    """One entry fails retriably: the command ends after that round, exit 1, naming it."""
    transport = MemoryTransport()
    transport.fail_next(1, "_MSG_TIMED_OUT")
    relay = OutboxRelay(store, lambda: transport)
    with GracefulShutdown() as shutdown, pytest.raises(typer.Exit) as ended:
        _relay_once(relay, shutdown)
    relay.stop(1.0)
    assert ended.value.exit_code == 1
    err = capsys.readouterr().err
    assert "not drained: 1 entry failed and will be retried" in " ".join(err.split())
    assert store.status().pending >= 1  # kept for the next run


def test_a_drained_outbox_returns_normally(
    store: SQLiteOutbox, capsys: pytest.CaptureFixture[str]
) -> None:
    relay = OutboxRelay(store, MemoryTransport)
    with GracefulShutdown() as shutdown:
        _relay_once(relay, shutdown)
    relay.stop(1.0)
    assert store.status().pending == 0
    assert "relayed 3" in capsys.readouterr().err


def test_a_metrics_port_in_use_exits_2_naming_it(store: SQLiteOutbox) -> None:
    """--metrics-port on a taken port: one line naming the port and the option, no traceback."""
    import socket

    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    port = taken.getsockname()[1]
    try:
        done = relay_once_to_a_dead_port(store.path, "--metrics-port", str(port))
    finally:
        taken.close()
    assert done.returncode == 2, done.stderr
    assert f"cannot serve metrics on 127.0.0.1:{port}" in done.stderr
    assert "--metrics-port" in done.stderr
    assert "Traceback" not in done.stderr
