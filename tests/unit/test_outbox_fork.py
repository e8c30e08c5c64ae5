"""An outbox store or relay inherited through ``os.fork()`` (e.g. a pre-forking server).

A store carries on in the child with a connection, a lock and a checkpoint thread of
its own; it never touches what the parent's copy holds. A relay refuses to run in
the child: its producer and its claimed batches are the parent's.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from eventwire import PublisherStateError
from eventwire.outbox import OutboxEntry, OutboxRelay, SQLiteOutbox
from eventwire.transports.memory import MemoryTransport
from tests.forked import in_forked_child

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")


def entry(n: int) -> OutboxEntry:
    return OutboxEntry(f"id-{n}", "T", "orders", b"k", f"v{n}".encode(), ())


@pytest.fixture
def store(tmp_path: Path) -> SQLiteOutbox:
    store = SQLiteOutbox(tmp_path / "outbox.db")
    store.add([entry(0)])  # connection in use, checkpoint thread started
    return store


def held_by_another_thread(lock: threading.Lock) -> threading.Event:
    """Hold ``lock`` on a helper thread until the returned event is set."""
    taken, release = threading.Event(), threading.Event()

    def hold() -> None:
        with lock:
            taken.set()
            release.wait(30)

    threading.Thread(target=hold, daemon=True).start()
    assert taken.wait(5)
    return release


class TestSQLiteStoreInAForkedChild:
    def test_the_child_writes_through_its_own_connection(self, store: SQLiteOutbox) -> None:
        """The child's writes commit to the shared file; the parent's connection is unused."""
        parents = store._conn

        def child() -> dict[str, object]:
            ids = store.add([entry(1), entry(2)])
            return {"ids": ids, "own_connection": store._conn is not parents}

        answer = in_forked_child(child)
        assert answer["own_connection"] is True
        assert len(answer["ids"]) == 2
        # the parent sees the child's rows, and goes on with its own connection
        assert store._conn is parents
        assert store.status().pending == 3
        store.add([entry(3)])
        assert store.status().pending == 4

    def test_a_lock_held_by_a_parent_thread_at_the_fork_does_not_block_the_child(
        self, store: SQLiteOutbox
    ) -> None:
        """The thread holding it does not exist in the child: the child gets its own lock."""
        release = held_by_another_thread(store._lock)
        try:
            ids = in_forked_child(lambda: store.add([entry(1)]), timeout=10)
        finally:
            release.set()
        assert len(ids) == 1

    def test_the_child_checkpoints_on_a_thread_of_its_own(self, store: SQLiteOutbox) -> None:
        """The parent's checkpoint thread did not survive the fork: the child starts one."""
        parents = store._checkpointer
        assert parents is not None and parents._thread is not None

        def child() -> dict[str, bool]:
            store.add([entry(1)])
            mine = store._checkpointer
            return {
                "new": mine is not parents,
                "running": mine is not None
                and mine._thread is not None
                and mine._thread.is_alive(),
            }

        assert in_forked_child(child) == {"new": True, "running": True}
        assert parents._thread.is_alive()  # the parent's is untouched

    def test_forks_while_the_parent_writes_and_checkpoints_never_hang_the_child(
        self, store: SQLiteOutbox
    ) -> None:
        """No SQLite mutex is inherited held by the parent's writer or checkpoint thread."""
        stop = threading.Event()

        def write() -> None:
            n = 100
            while not stop.wait(0.002):  # a pause: the child's writes need the write lock too
                store.add([entry(n)])
                n += 1

        writer = threading.Thread(target=write, daemon=True)
        writer.start()
        try:
            for n in range(20):
                assert len(in_forked_child(lambda n=n: store.add([entry(-1 - n)]), timeout=15)) == 1
        finally:
            stop.set()
            writer.join(10)

    def test_a_store_closed_before_the_fork_stays_closed_in_the_child(
        self, store: SQLiteOutbox
    ) -> None:
        store.close()

        def child() -> str:
            try:
                store.status()
            except Exception as exc:  # the child reports what it got
                return type(exc).__name__
            return "opened again"

        assert in_forked_child(child) == "ProgrammingError"

    def test_an_in_memory_store_keeps_its_rows_in_the_child(self) -> None:
        """An in-memory database is the child's own copy: it is kept, not reopened empty."""
        store = SQLiteOutbox(":memory:")
        store.add([entry(1)])
        assert in_forked_child(lambda: store.status().pending) == 1


class TestRelayInAForkedChild:
    def test_every_use_in_the_child_is_a_clear_error(self, store: SQLiteOutbox) -> None:
        """run_once, drain, run and start raise PublisherStateError naming the fork."""
        relay = OutboxRelay(store, MemoryTransport, batch_size=10)

        def child() -> dict[str, str]:
            said = {}
            calls = {
                "run_once": relay.run_once,
                "drain": lambda: relay.drain(1),
                "run": relay.run,
                "start": relay.start,
            }
            for name, call in calls.items():
                try:
                    call()
                    said[name] = "ran"
                except PublisherStateError as exc:
                    said[name] = "fork" if "os.fork()" in str(exc) else str(exc)
            return said

        answer = in_forked_child(child)
        assert answer == {"run_once": "fork", "drain": "fork", "run": "fork", "start": "fork"}
        assert store.status().pending == 1  # the child claimed nothing
        assert relay.run_once() == 1  # the parent's relay is unaffected
        relay.stop(1)

    def test_stop_in_the_child_leaves_the_parents_batches_and_producer_alone(
        self, store: SQLiteOutbox
    ) -> None:
        """A batch the parent claimed ahead is neither released nor marked by the child."""
        store.add([entry(n) for n in range(1, 6)])
        relay = OutboxRelay(store, MemoryTransport, batch_size=2)
        relay.run_once()  # a full batch: the next one is claimed ahead, leased to the parent
        ahead = [item.id for item in relay._ahead]
        assert ahead

        def child() -> bool:
            relay.stop(1)
            return relay.transport.closed if hasattr(relay.transport, "closed") else False

        assert in_forked_child(child) is False
        leased = store._conn.execute(
            "SELECT COUNT(*) FROM eventwire_outbox WHERE lease_owner = ? AND state = 'pending'",
            (relay.owner,),
        ).fetchone()[0]
        assert leased == len(ahead)  # still the parent's to send
        relay.stop(1)


_ABANDON_SCRIPT = """
import gc, os, sys
from eventwire import _fork

class Connection:
    def __init__(self, stage):
        self.stage = stage  # held here: module globals may be gone when __del__ runs

    def __del__(self):
        os.write(1, f"closed at {self.stage[0]}\\n".encode())

STAGE = ["run"]
held = Connection(STAGE)
pid = os.fork()
if pid == 0:
    _fork.abandon(held)
    del held
    gc.collect()
    STAGE[0] = "exit"
    sys.exit(0)  # a normal exit: module globals are cleared, finalizers run
os.waitpid(pid, 0)
os._exit(0)
"""


def test_what_a_child_abandons_stays_open_while_the_child_runs() -> None:
    """No garbage collection closes it under the child; only the child's own exit may."""
    done = subprocess.run(
        [sys.executable, "-c", _ABANDON_SCRIPT],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == "closed at exit\n"
