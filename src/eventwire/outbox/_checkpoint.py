"""WAL checkpoints of a SQLite outbox, run on their own thread instead of in a commit.

SQLite checkpoints a WAL database in the commit that pushes the log past
``wal_autocheckpoint`` pages (1,000 by default): that commit copies the log's
pages into the database file and fsyncs it, on the writer's thread. For the
relay, whose rounds rewrite a few hundred pages twice, that was the largest
single cost of a round (30-40 ms of ~110 ms per 2,000 entries, measured in
bench/results/outbox-relay.md).

A :class:`Checkpointer` takes that work off the writers: the store's connection
checkpoints itself only past :data:`SAFETY_NET_PAGES` (so the log stays bounded
even if this thread falls behind), and after each write the store calls
:meth:`Checkpointer.written`; the thread then runs ``PRAGMA
wal_checkpoint(PASSIVE)`` on its own connection, at most every
:data:`INTERVAL_S`. PASSIVE never blocks a reader or a writer and never waits
for a lock. sqlite3 releases the GIL while it runs, so the copy overlaps the
relay's producing and the next claim.

Durability is unchanged: a commit is durable once it is in the WAL (fsynced by
``synchronous=FULL``); a checkpoint only moves pages from the log into the file.
"""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

from eventwire.observability.logging import get_logger

__all__ = ["INTERVAL_S", "SAFETY_NET_PAGES", "Checkpointer"]

_log = get_logger("eventwire.outbox")

#: Shortest time between two background checkpoints: writes within it share one.
INTERVAL_S = 0.1
#: The store's own connections still checkpoint past this many WAL pages (40 MB with
#: 4 KB pages), e.g. while the background thread is starved.
SAFETY_NET_PAGES = 10_000


class Checkpointer:
    """One daemon thread checkpointing one SQLite file's WAL after writes (see module doc).

    The thread starts with the first write and ends with :meth:`close`.
    """

    def __init__(self, path: Path, *, busy_timeout_s: float) -> None:
        # absolute now (a later chdir must not point the thread elsewhere), and opened
        # read-write only: the thread never creates a database file
        self._path = path
        self._uri = f"{path.absolute().as_uri()}?mode=rw"
        self._busy_timeout_s = busy_timeout_s
        self._wake = threading.Event()
        self._closed = threading.Event()
        self._start = threading.Lock()
        #: Held around every SQLite call of the thread (see :meth:`hold`).
        self._busy = threading.Lock()
        self._thread: threading.Thread | None = None

    def written(self) -> None:
        """Note a committed write: a checkpoint follows within :data:`INTERVAL_S`."""
        if self._thread is None:
            with self._start:
                if self._thread is None and not self._closed.is_set():
                    self._thread = threading.Thread(
                        target=self._run, name="eventwire-sqlite-checkpoint", daemon=True
                    )
                    self._thread.start()
        self._wake.set()

    def hold(self, timeout: float) -> bool:
        """Wait until the thread runs no SQLite call, and keep it so; True if held.

        For a fork (see :mod:`eventwire._fork`): SQLite's process-wide mutexes must
        not be caught held by a thread the child will not have. :meth:`unhold` ends it.
        """
        return self._busy.acquire(timeout=timeout)

    def unhold(self) -> None:
        """Let the thread run SQLite calls again (after a successful :meth:`hold`)."""
        self._busy.release()

    def _run(self) -> None:
        try:
            with self._busy:
                conn = sqlite3.connect(
                    self._uri, uri=True, isolation_level=None, timeout=self._busy_timeout_s
                )
        except sqlite3.Error as exc:  # e.g. the file was removed: the safety net stays
            _log.warning("outbox_checkpoint_failed", path=str(self._path), error=str(exc))
            return
        failing = False
        try:
            while True:
                self._wake.wait()
                if self._closed.wait(INTERVAL_S):  # let close() win over a last checkpoint
                    return
                self._wake.clear()
                try:
                    with self._busy:
                        conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
                    failing = False
                except sqlite3.Error as exc:  # the writers' safety net still checkpoints
                    if not failing:
                        _log.warning(
                            "outbox_checkpoint_failed", path=str(self._path), error=str(exc)
                        )
                    failing = True
        finally:
            with self._busy:
                conn.close()

    def close(self, timeout: float = 5.0) -> None:
        """Stop the thread (a checkpoint in progress finishes first); idempotent."""
        with self._start:
            self._closed.set()
            self._wake.set()
            thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
