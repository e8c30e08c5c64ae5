"""The embedded outbox: one SQLite file, WAL mode, ``synchronous=FULL``.

``add()`` returns after the entries are committed and fsynced, so an event
survives a crash of the process (and of the machine) from then on. Several
processes may share the file; claims take a write lock (``BEGIN IMMEDIATE``),
which also makes id order commit order.

Clocks. A WAL database can only be shared by processes of one host, so leases
and retry times are measured with the host's *monotonic* clock
(``time.monotonic()``, system-wide, immune to wall-clock steps in either
direction): a step of the wall clock neither steals a live lease nor stalls a
retry. The monotonic clock restarts at a reboot; a lease or retry time then
appears to lie in the future from before it was set, and is treated as over
(the processes of the previous boot are gone). Timestamps meant for people --
``created_at``, ``first_failed_at``, ``sent_at``, heartbeats, and the ages
computed from them (``max_age_s``, ``cleanup``, ``status``) -- use the wall clock,
so a wall-clock step shifts those by the step, and nothing else.

Schema: a file made by an older eventwire (without the ``leased_at`` and
``retry_scheduled_at`` columns) is refused with a :class:`ConfigurationError`
saying what to do; it is not migrated.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import threading
import time
import weakref
from collections.abc import Callable, Collection, Sequence
from pathlib import Path
from typing import Any, NoReturn

from eventwire import _fork
from eventwire._errors import ConfigurationError, OutboxWriteError
from eventwire.observability.logging import get_logger
from eventwire.outbox import _plan, _sql
from eventwire.outbox._checkpoint import SAFETY_NET_PAGES, Checkpointer
from eventwire.outbox.base import (
    ClaimedEntry,
    EventIdConflictError,
    OutboxEntry,
    OutboxStatus,
    RelayHeartbeat,
    RowState,
    encode_headers,
    unwrap_connection,
)

__all__ = ["SQLiteOutbox", "insert_plan"]

_log = get_logger("eventwire.outbox")

_TABLES = """
CREATE TABLE IF NOT EXISTS eventwire_outbox (
    id                 INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id           TEXT NOT NULL,
    event_type         TEXT NOT NULL,
    topic              TEXT NOT NULL,
    key                BLOB,
    value              BLOB NOT NULL,
    headers            BLOB NOT NULL,
    created_at         REAL NOT NULL,            -- wall clock (Unix s)
    state              TEXT NOT NULL DEFAULT 'pending',
    attempts           INTEGER NOT NULL DEFAULT 0,
    next_attempt_at    REAL NOT NULL DEFAULT 0,  -- monotonic clock
    retry_scheduled_at REAL NOT NULL DEFAULT 0,  -- monotonic clock
    lease_owner        TEXT,
    leased_at          REAL NOT NULL DEFAULT 0,  -- monotonic clock
    lease_until        REAL NOT NULL DEFAULT 0,  -- monotonic clock
    last_error         TEXT,
    first_failed_at    REAL,                     -- wall clock
    sent_at            REAL                      -- wall clock
);
CREATE TABLE IF NOT EXISTS eventwire_outbox_relays (
    owner         TEXT PRIMARY KEY,
    last_round_at REAL NOT NULL,                 -- wall clock
    last_error    TEXT
);
"""

_INDEXES = """
CREATE INDEX IF NOT EXISTS eventwire_outbox_pending
    ON eventwire_outbox (state, id);
-- eventwire_outbox_key (topic, key, id), made by earlier versions, served no query:
-- it is dropped, as each write paid for it (a third of a mark_sent).
DROP INDEX IF EXISTS eventwire_outbox_key;
-- One unsent row per event id: add() of an event still waiting returns that row.
CREATE UNIQUE INDEX IF NOT EXISTS eventwire_outbox_unsent_event
    ON eventwire_outbox (event_id) WHERE state <> 'sent';
"""

# ON CONFLICT: the event already has an unsent row; the no-op update makes RETURNING
# give that row's id (and state, so a parked one can be requeued), and whether its
# topic, key and value are this entry's (a fresh row: trivially; ``IS``: NULL keys
# compare equal), so a different event under the same id is found without a query.
_INSERT = (
    "INSERT INTO eventwire_outbox (event_id, event_type, topic, key, value, headers, created_at)"
    " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)"
    " ON CONFLICT (event_id) WHERE state <> 'sent' DO UPDATE SET state = state"
    " RETURNING id, state, topic IS ?3, key IS ?4, value IS ?5"
)

_REQUEUE = f"UPDATE eventwire_outbox SET {_sql.REQUEUE_SET.format(wall=':wall')}"

# The pending rows in claim order (id: commit order), each with whether it is held
# back now (leased elsewhere or waiting for its retry time); ``claim_batch`` walks
# them with :func:`_sql.pick_sendable` and stops once it has a batch. Rows in flight
# (``:passing``, a JSON array of ids) are left out here, not in Python: the claim
# ahead then reads only the rows it may pick (a third less time per claim).
_PENDING_IN_ORDER = f"""
SELECT {_sql.ENTRY_COLUMNS}, :wall - created_at, {_sql.held_back(":now")}
FROM eventwire_outbox
WHERE state = 'pending' AND id NOT IN (SELECT value FROM json_each(:passing))
ORDER BY id
"""

_LEASE = (
    "UPDATE eventwire_outbox SET lease_owner = :owner, leased_at = :now,"
    " lease_until = :until, attempts = attempts + 1"
    " WHERE id IN (SELECT value FROM json_each(:ids))"
)

_MARK_SENT = (
    "UPDATE eventwire_outbox SET state = 'sent', sent_at = ?, lease_until = 0,"
    " leased_at = 0, lease_owner = NULL, last_error = ?"
    " WHERE id IN (SELECT value FROM json_each(?))"
)

#: The lease is still the caller's (``owner=``): the row was neither done nor taken over.
_OWNED = " AND state = 'pending' AND lease_owner = :owner"

#: Primary result codes of a failed COMMIT after which SQLite has rolled the
#: transaction back (if none is open any more): nothing of it was stored.
_UNDONE_ON_FAILED_COMMIT = frozenset(
    {sqlite3.SQLITE_FULL, sqlite3.SQLITE_NOMEM, sqlite3.SQLITE_BUSY}
)

#: SQLite's "the file is locked" result codes.
_LOCK_CODES = frozenset({sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED})
_LOCKED_HINT = (
    "another connection held the file's write lock for busy_timeout_s: another process, "
    "or a write transaction of this application still open on the same file (publish() "
    "inside it waits for it, then fails: write the event in that transaction with "
    "publisher.stage(event, connection=conn))"
)

#: The page cache of the store's own connection, in KiB.
_CACHE_KIB = 16384

#: How long a fork waits for this store's threads to leave SQLite (see _before_fork).
_FORK_WAIT_S = 5.0

#: Heartbeats of one owner with the same error are written at most this often.
_BEAT_INTERVAL_S = 1.0
_BEATS_KEPT_S = 86400.0


def insert_plan(entries: Sequence[OutboxEntry]) -> _plan.Plan:
    """Insert (or find the unsent rows of) ``entries`` in the open transaction: their ids.

    Raises:
        EventIdConflictError: an unsent row (or an earlier entry) has the event
            id of an entry but another topic, key or value.
    """
    _sql.check_batch_event_ids(entries)
    wall = time.time()
    ids: list[int] = []
    parked: list[int] = []
    for e in entries:
        row = (e.event_id, e.event_type, e.topic, e.key, e.value, encode_headers(e.headers))
        [(entry_id, state, *same)] = yield _plan.Fetch(_INSERT, (*row, wall))
        if not all(same):
            differing = [n for n, ok in zip(("topic", "key", "value"), same, strict=True) if not ok]
            raise EventIdConflictError(e.event_id, entry_id, differing)
        ids.append(entry_id)
        if _text(state) == "parked":
            parked.append(entry_id)
    if parked:  # a deliberate re-send of a parked event: it starts over
        yield _plan.Many(
            f"{_REQUEUE} WHERE state = 'parked' AND id = :id",
            [{"wall": wall, "id": i} for i in parked],
        )
    return ids


def _text(value: object) -> str:
    """A TEXT value read through a caller's connection, whatever its ``text_factory``.

    ``text_factory = bytes`` (or ``bytearray``) gives TEXT as UTF-8 bytes: compared
    with a ``str`` they never match (a parked event re-sent would stay parked).
    """
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).decode("utf-8", "surrogateescape")
    return str(value)


def _tuples(conn: sqlite3.Connection, sql: str, params: Any = ()) -> list[Any]:
    """Every row of ``sql`` as a tuple, whatever the connection's ``row_factory``."""
    cur = conn.cursor()
    cur.row_factory = None
    try:
        return cur.execute(sql, params).fetchall()
    finally:
        cur.close()


def _executor(conn: sqlite3.Connection) -> Callable[[_plan.Step], Any]:
    """Run a plan's steps on a sqlite3 connection (rows as tuples, whatever its row_factory)."""

    def execute(step: _plan.Step) -> Any:
        if isinstance(step, _plan.Fetch):
            return _tuples(conn, step.sql, step.params)
        conn.executemany(step.sql, step.param_sets)
        return None

    return execute


def _is_open(conn: sqlite3.Connection) -> bool:
    try:
        conn.total_changes  # noqa: B018 - raises once the connection is closed
    except sqlite3.ProgrammingError:
        return False
    return True


def _claimable(cursor: sqlite3.Cursor, limit: int) -> list[Any]:
    """The first ``limit`` sendable rows of :data:`_PENDING_IN_ORDER` (see there)."""
    rows: list[Any] = []
    blocked: set[tuple[str, bytes]] = set()
    while True:
        page = cursor.fetchmany(limit)
        if not page or _sql.pick_sendable(page, rows, blocked, limit, topic=3, key=4, held=11):
            break
    cursor.close()
    return rows


class SQLiteOutbox:
    """An outbox in a SQLite file (created if missing).

    Args:
        path: the database file. Use the same file as your domain tables to add
            events in your own transaction (``add(..., connection=conn)``).
        busy_timeout_s: how long a statement waits for another process's write
            lock before failing with ``database is locked``.
        mode: the permissions of the file if this creates it: by default 0o600,
            readable and writable by this user only (events may hold personal
            data). SQLite gives its ``-wal`` and ``-shm`` files the same
            permissions. Use e.g. 0o660 to share the file with a relay running as
            another user of the same group. An existing file's mode is not changed.

    Raises:
        ConfigurationError: the file cannot be opened, is not a database, or holds
            an outbox table of an older eventwire.
    """

    #: Whether the relay claims the next batch while the last one's acks come in
    #: (and marks the batch before sent in the same transaction): see
    #: eventwire.outbox.relay.
    _CLAIM_AHEAD = True

    def __init__(
        self, path: str | Path, *, busy_timeout_s: float = 30.0, mode: int = 0o600
    ) -> None:
        self.path = Path(path)
        self._busy_timeout_s = busy_timeout_s
        self._lock = threading.Lock()
        self._beats: dict[str, tuple[float, str | None]] = {}
        #: close() was called (a second call does nothing).
        self._closing = False
        self._create(mode)
        self._in_file = str(self.path) not in ("", ":memory:")
        try:
            self._db: sqlite3.Connection | None = self._connect()
            self.prepare_connection(self._db)
        except sqlite3.DatabaseError as exc:
            raise ConfigurationError(
                f"cannot open the SQLite outbox at {self.path}: {exc}"
            ) from exc
        self._checkpointer: Checkpointer | None = None
        self._checkpointer_finalizer: weakref.finalize[Any, Any] | None = None
        #: What _before_fork took, released after the fork in the parent.
        self._fork_release: list[Callable[[], None]] = []
        self._start_checkpoints()
        _fork.register(self)

    def _start_checkpoints(self) -> None:
        """Checkpoint the WAL on a thread of its own, not in this connection's commits."""
        if self._in_file:
            self._checkpointer = Checkpointer(self.path, busy_timeout_s=self._busy_timeout_s)
            # a store dropped without close() stops its thread too
            self._checkpointer_finalizer = weakref.finalize(self, self._checkpointer.close, 0.0)

    def _before_fork(self) -> None:
        """Keep this store's threads out of SQLite across a fork (each wait bounded).

        SQLite's process-wide mutexes (one per database file) would otherwise be
        inherited held by a thread the child does not have, and the child's first
        statement on that file would wait forever.
        """
        release = []
        if self._lock.acquire(timeout=_FORK_WAIT_S):
            release.append(self._lock.release)
        checkpointer = self._checkpointer
        if checkpointer is not None and checkpointer.hold(_FORK_WAIT_S):
            release.append(checkpointer.unhold)
        self._fork_release = release

    def _after_fork_in_parent(self) -> None:
        release, self._fork_release = self._fork_release, []
        for step in release:
            step()

    def _after_fork_in_child(self) -> None:
        """In a forked child: a lock, a connection and a checkpoint thread of its own.

        The inherited connection is abandoned: never used, and closed only by the
        child's exit, safe since :meth:`_before_fork` kept transactions out of the
        fork (see :mod:`eventwire._fork`); the next call opens one for this process. The
        parent's checkpoint thread did not survive the fork: a new one starts with
        this process's first write. A store closed before the fork stays closed.
        """
        self._lock = threading.Lock()  # the parent's may be held (by _before_fork too)
        self._fork_release = []
        db = self._db
        if not self._in_file or db is None or not _is_open(db):
            return  # an in-memory database is the child's own copy
        _fork.abandon(db)
        self._db = None
        if self._checkpointer_finalizer is not None:
            # the parent's checkpointer is not this process's to close (its locks may
            # be held by a parent thread that does not exist here)
            self._checkpointer_finalizer.detach()
        self._checkpointer = None
        self._start_checkpoints()

    @property
    def _conn(self) -> sqlite3.Connection:
        """The store's connection (opened now on first use in a forked child)."""
        db = self._db
        if db is None:
            db = self._db = self._connect()
        return db

    def _create(self, mode: int) -> None:
        """Create the database file with ``mode`` if it does not exist.

        SQLite would create it, and its -wal and -shm files, world-readable (0o644
        under the usual umask); it gives -wal and -shm the main file's mode.
        """
        if not isinstance(mode, int) or isinstance(mode, bool) or not 0 <= mode <= 0o777:
            raise ConfigurationError(
                f"SQLiteOutbox mode must be permission bits such as 0o600, got {mode!r}"
            )
        if str(self.path) in ("", ":memory:"):
            return  # an in-memory database: no file
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
        except FileExistsError:
            return
        except OSError as exc:
            raise ConfigurationError(
                f"cannot create the SQLite outbox at {self.path}: {exc.strerror}"
            ) from None
        try:
            os.fchmod(fd, mode)  # exactly ``mode``, whatever the umask
        finally:
            os.close(fd)

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(
            self.path, isolation_level=None, check_same_thread=False, timeout=self._busy_timeout_s
        )
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        # 16 MiB of pages (SQLite's default is 2 MiB): a relay round's rows, read by
        # the claim and written by the lease and the mark, are then read from the
        # file once, not once per statement (the lease takes half the time).
        conn.execute(f"PRAGMA cache_size=-{_CACHE_KIB}")
        if self._in_file:  # checkpoints run on the Checkpointer's thread (past this: here)
            conn.execute(f"PRAGMA wal_autocheckpoint={SAFETY_NET_PAGES}")
        return conn

    @staticmethod
    def prepare_connection(conn: sqlite3.Connection) -> None:
        """Create the outbox tables on the caller's connection (idempotent).

        Raises:
            ConfigurationError: the file holds an outbox table of an older eventwire.
        """
        conn.executescript(_TABLES)
        columns = {row[1] for row in conn.execute("PRAGMA table_info(eventwire_outbox)")}
        problem = _sql.outdated_table(columns)
        if problem is not None:
            raise ConfigurationError(f"{problem} (SQLite outbox {conn!r})")
        conn.executescript(_INDEXES)

    @staticmethod
    def schema_sql() -> str:
        """The SQL that creates the outbox's tables and indexes (idempotent).

        The store itself also sets ``journal_mode=WAL`` on the file when it opens it.
        """
        return f"{_TABLES.strip()}\n{_INDEXES.strip()}\n"

    @staticmethod
    def _insert(conn: sqlite3.Connection, entries: Sequence[OutboxEntry]) -> list[int]:
        return _plan.run(insert_plan(entries), _executor(conn))

    def check_same_file(self, database_list: Sequence[Sequence[Any]], caller: str) -> None:
        """Refuse a connection (its ``PRAGMA database_list`` rows) on another file.

        Its inserts would be committed where the relay never looks.

        Raises:
            ConfigurationError: the connection's main database is not this file.
        """
        main = next((_text(r[2]) for r in database_list if _text(r[1]) == "main"), "")
        try:
            if main and os.path.samefile(main, self.path):
                return
        except OSError:
            pass
        raise ConfigurationError(
            f"{caller} got a connection on another database ({main or 'in memory'}) than "
            f"the outbox ({self.path}): the event would be committed where the relay never "
            "looks. Connect to the outbox's own file"
        )

    def add(self, entries: Sequence[OutboxEntry], *, connection: Any = None) -> list[int]:
        """Insert entries; return their row ids. See :meth:`OutboxStore.add`.

        Without ``connection``, the entries are committed (fsynced) before this
        returns, in one transaction.

        Raises:
            EventIdConflictError: an entry's ``event_id`` has an unsent row (or an
                earlier entry of this call) with a different topic, key or value.
                Without ``connection``, the transaction is rolled back: nothing is
                stored. With ``connection``, the entries inserted before the
                conflicting one are in the caller's transaction: roll it back.
            ConfigurationError: ``connection`` is not a sqlite3 connection, or is
                on another file than the outbox (nothing written).
            OutboxWriteError: (without ``connection``) the write failed, e.g. the
                file stayed locked by another process for ``busy_timeout_s``.
                ``possibly_written`` is True only if COMMIT itself failed and the
                transaction could not be rolled back, unless SQLite rolled it back
                itself (the disk full, out of memory: ``possibly_written`` False).
        """
        if connection is not None:
            connection = unwrap_connection(connection)
            if not isinstance(connection, sqlite3.Connection):
                raise ConfigurationError(
                    f"SQLiteOutbox.add(connection=...) needs a sqlite3.Connection, got "
                    f"{type(connection).__name__}"
                )
            rows = _tuples(connection, "PRAGMA database_list")
            self.check_same_file(rows, "Publisher.stage(connection=...)")
            return self._insert(connection, entries)  # the caller commits or rolls back
        started = time.monotonic()
        # (at least a second: with busy_timeout_s=0 a relay's claim in progress is no lock)
        if not self._lock.acquire(timeout=max(self._busy_timeout_s, 1.0)):
            raise OutboxWriteError(
                len(entries),
                f"SQLite: this store's connection stayed busy for {self._busy_timeout_s:g} s "
                f"(busy_timeout_s), its relay waiting for the file's write lock; {_LOCKED_HINT}",
                possibly_written=False,
            )
        with contextlib.ExitStack() as held:
            held.callback(self._lock.release)
            self._begin_within(self._busy_timeout_s - (time.monotonic() - started), entries)
            try:
                ids = self._insert(self._conn, entries)
            except BaseException as exc:
                self._rolled_back()
                if isinstance(exc, sqlite3.Error):
                    raise OutboxWriteError(
                        len(entries), f"SQLite: {exc}", possibly_written=False
                    ) from exc
                raise
            try:
                self._conn.execute("COMMIT")
            except sqlite3.Error as exc:
                written = not self._commit_undone(exc) and not self._rolled_back()
                raise OutboxWriteError(
                    len(entries), f"SQLite COMMIT failed: {exc}", possibly_written=written
                ) from exc
        self._written()
        return ids

    def _begin_within(self, seconds: float, entries: Sequence[OutboxEntry]) -> None:
        """``BEGIN IMMEDIATE``, waiting at most ``seconds`` for the file's write lock.

        add() may first have waited for this store's connection (its relay's round
        waiting for the same lock): together the waits stay within ``busy_timeout_s``.
        """
        conn = self._conn
        shortened = seconds < self._busy_timeout_s - 0.05
        try:
            if shortened:
                conn.execute(f"PRAGMA busy_timeout = {int(max(0.0, seconds) * 1000)}")
            try:
                conn.execute("BEGIN IMMEDIATE")
            finally:
                if shortened:
                    conn.execute(f"PRAGMA busy_timeout = {int(self._busy_timeout_s * 1000)}")
        except sqlite3.Error as exc:
            code = getattr(exc, "sqlite_errorcode", None)
            hint = f"; {_LOCKED_HINT}" if code is not None and code & 0xFF in _LOCK_CODES else ""
            raise OutboxWriteError(
                len(entries), f"SQLite: {exc}{hint}", possibly_written=False
            ) from exc

    def _written(self) -> None:
        """A write committed: the WAL is checkpointed soon, off this thread."""
        if self._checkpointer is not None:
            self._checkpointer.written()

    def _commit_undone(self, exc: sqlite3.Error) -> bool:
        """Whether SQLite itself rolled back the transaction whose COMMIT raised ``exc``.

        SQLite rolls a transaction back on its own after some errors (the disk full,
        out of memory, a lock it could not get): none of its writes reached the file.
        Other errors without an open transaction after them (an I/O error, say, maybe
        after the commit record was written) leave the outcome unknown.
        """
        code = getattr(exc, "sqlite_errorcode", None)
        return (
            code is not None
            and code & 0xFF in _UNDONE_ON_FAILED_COMMIT
            and not self._conn.in_transaction
        )

    def _rolled_back(self) -> bool:
        """Roll back the open transaction; True if one was open and is now undone."""
        if not self._conn.in_transaction:
            return False
        try:
            self._conn.execute("ROLLBACK")
        except sqlite3.Error:
            return False
        return True

    def claim_batch(self, limit: int, *, owner: str, lease_s: float) -> list[ClaimedEntry]:
        """Lease up to ``limit`` sendable entries, oldest first, keeping per-key order.

        One transaction: the rows are read in id order until ``limit`` are
        sendable, then leased with one statement. The lease is written without an
        fsync (``synchronous=NORMAL`` for this transaction): a lease lost to a power
        failure only frees entries whose relay died with the machine; it is still
        atomic, and the next fsynced commit makes it durable too.
        """
        return self._claim_passing(limit, owner=owner, lease_s=lease_s, in_flight=())

    def _claim_passing(
        self,
        limit: int,
        *,
        owner: str,
        lease_s: float,
        in_flight: Collection[int],
        sent: Sequence[int] = (),
    ) -> list[ClaimedEntry]:
        """:meth:`claim_batch`, except that the rows ``in_flight`` hold no key back.

        The relay claims its next batch with the ids of the batch it is still
        delivering (leased to it, sent in order before anything claimed now); see
        :func:`eventwire.outbox._sql.pick_sendable`. ``sent``: rows Kafka
        acknowledged, marked sent (as :meth:`mark_sent`) in the same transaction,
        before the claim; like the lease, without an fsync: a mark lost to a power
        failure only sends those entries again (same ``ce_id``).
        """
        if limit <= 0 and not sent:
            return []
        passing = json.dumps(list(in_flight))
        with self._lock:
            conn = self._conn
            conn.execute("PRAGMA synchronous=NORMAL")
            try:
                conn.execute("BEGIN IMMEDIATE")
                try:
                    if sent:
                        conn.execute(_MARK_SENT, (time.time(), None, json.dumps(list(sent))))
                    now = time.monotonic()
                    rows = (
                        _claimable(
                            conn.execute(
                                _PENDING_IN_ORDER,
                                {"now": now, "wall": time.time(), "passing": passing},
                            ),
                            limit,
                        )
                        if limit > 0
                        else []
                    )
                    if rows:
                        conn.execute(
                            _LEASE,
                            {
                                "owner": owner,
                                "now": now,
                                "until": now + lease_s,
                                "ids": json.dumps([row[0] for row in rows]),
                            },
                        )
                except BaseException:
                    conn.execute("ROLLBACK")
                    raise
                conn.execute("COMMIT")
            finally:
                conn.execute("PRAGMA synchronous=FULL")
        self._written()
        return [_sql.claimed(row) for row in rows]

    def _write(self, sql: str, params: Sequence[Sequence[Any] | dict[str, Any]]) -> int:
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                count = self._conn.executemany(sql, params).rowcount
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")
        self._written()
        return count

    def mark_sent(self, ids: Sequence[int], *, dead_lettered: str | None = None) -> None:
        """Mark entries done: acknowledged by Kafka, or dead-lettered (``"CODE: reason"``).

        See :meth:`OutboxStore.mark_sent`.
        """
        if not ids:
            return
        now = time.time()
        error = _sql.dead_lettered_error(dead_lettered)
        self._write(_MARK_SENT, [(now, error, json.dumps(list(ids)))])

    def mark_retry(
        self,
        entry_id: int,
        error: str,
        delay_s: float,
        *,
        counted: bool = True,
        owner: str | None = None,
    ) -> None:
        """Release the lease; the entry is sendable again ``delay_s`` s from now (monotonic).

        See :meth:`OutboxStore.mark_retry` (``counted``, ``owner``).
        """
        self.mark_retry_many([(entry_id, error, delay_s, counted)], owner=owner)

    def mark_retry_many(
        self,
        retries: Sequence[tuple[int, str, float, bool]],
        *,
        owner: str | None = None,
    ) -> None:
        """:meth:`mark_retry` for each ``(entry_id, error, delay_s, counted)``, in one transaction.

        The relay releases a round's failed and held-back entries with one call.
        """
        if not retries:
            return
        now = time.monotonic()
        wall = time.time()
        self._write(
            "UPDATE eventwire_outbox SET lease_until = 0, leased_at = 0, lease_owner = NULL,"
            " next_attempt_at = :next, retry_scheduled_at = :now, last_error = :error,"
            " attempts = CASE WHEN :counted THEN attempts ELSE MAX(attempts - 1, 0) END,"
            " first_failed_at = CASE WHEN :counted"
            " THEN COALESCE(first_failed_at, :wall) ELSE first_failed_at END"
            f" WHERE id = :id{_OWNED if owner is not None else ''}",
            [
                {
                    "next": now + max(0.0, delay_s),
                    "now": now,
                    "error": error,
                    "wall": wall,
                    "id": entry_id,
                    "owner": owner,
                    "counted": counted,
                }
                for entry_id, error, delay_s, counted in retries
            ],
        )

    def park(self, entry_id: int, error: str, *, owner: str | None = None) -> bool:
        """Set an entry aside after a permanent failure; True if it was parked.

        See :meth:`OutboxStore.park` (``owner``).
        """
        return (
            self._write(
                "UPDATE eventwire_outbox SET state = 'parked', lease_until = 0, leased_at = 0,"
                " lease_owner = NULL, last_error = :error,"
                " first_failed_at = COALESCE(first_failed_at, :wall)"
                f" WHERE id = :id{_OWNED if owner is not None else ''}",
                [{"error": error, "wall": time.time(), "id": entry_id, "owner": owner}],
            )
            > 0
        )

    def row_states(self, ids: Sequence[int]) -> dict[int, RowState]:
        """Each row's state; ids with no row (sent, cleaned up) are absent.

        See :meth:`OutboxStore.row_states`.
        """
        found: dict[int, RowState] = {}
        with self._lock:
            for chunk in _sql.chunks(ids):
                rows = self._conn.execute(
                    "SELECT id, state, last_error FROM eventwire_outbox"
                    f" WHERE id IN ({', '.join('?' * len(chunk))})",
                    chunk,
                ).fetchall()
                found.update((i, _sql.row_state(state, err)) for i, state, err in rows)
        return found

    def requeue_parked(self, ids: Sequence[int] | None = None) -> int:
        """Make parked entries pending again (all, or ``ids``) with a fresh start; how many.

        See :meth:`OutboxStore.requeue_parked`.
        """
        wall = time.time()
        if ids is None:
            return self._write(f"{_REQUEUE} WHERE state = 'parked'", [{"wall": wall}])
        return self._write(
            f"{_REQUEUE} WHERE state = 'parked' AND id = :id",
            [{"wall": wall, "id": i} for i in ids],
        )

    def list_parked(self, limit: int = 100) -> list[tuple[ClaimedEntry, str]]:
        """Parked entries and their last error, oldest first."""
        with self._lock:
            rows = self._conn.execute(
                f"SELECT {_sql.ENTRY_COLUMNS}, ? - created_at, last_error FROM eventwire_outbox"
                " WHERE state = 'parked' ORDER BY id LIMIT ?",
                (time.time(), limit),
            ).fetchall()
        return [(_sql.claimed(row), row[11] or "") for row in rows]

    def cleanup(self, sent_older_than_s: float) -> int:
        """Delete entries acknowledged more than ``sent_older_than_s`` s ago; return how many.

        Also deletes heartbeats older than a day.
        """
        now = time.time()
        with self._lock:
            self._conn.execute(
                "DELETE FROM eventwire_outbox_relays WHERE last_round_at < ?",
                (now - _BEATS_KEPT_S,),
            )
            deleted = self._conn.execute(
                "DELETE FROM eventwire_outbox WHERE state = 'sent' AND sent_at < ?",
                (now - sent_older_than_s,),
            ).rowcount
        self._written()
        return deleted

    def heartbeat(self, owner: str, error: str | None = None) -> None:
        """Record a relay round of ``owner``; see :meth:`OutboxStore.heartbeat`."""
        mono = time.monotonic()
        with self._lock:
            last = self._beats.get(owner)
            if last is not None and last[1] == error and mono - last[0] < _BEAT_INTERVAL_S:
                return
            self._conn.execute(
                "INSERT INTO eventwire_outbox_relays (owner, last_round_at, last_error)"
                " VALUES (?, ?, ?) ON CONFLICT (owner) DO UPDATE"
                " SET last_round_at = excluded.last_round_at, last_error = excluded.last_error",
                (owner, time.time(), error),
            )
            self._beats[owner] = (mono, error)

    def forget_relay(self, owner: str, *, timeout_s: float | None = None) -> bool:
        """Delete relay ``owner``'s heartbeat: it stopped on purpose (not shown as stale).

        ``timeout_s``: wait at most that long, for this store's connection (another
        thread may be waiting in SQLite for a lock) and for the file's write lock,
        instead of ``busy_timeout_s``. False: the time ran out before the delete could
        start, and the heartbeat is kept.

        Raises:
            sqlite3.OperationalError: ``database is locked`` (the file's write lock
                stayed taken for the time given).
        """
        wait = -1.0 if timeout_s is None else max(0.0, timeout_s)
        if not self._lock.acquire(timeout=wait):
            return False
        try:
            conn = self._conn
            if timeout_s is not None:
                conn.execute(f"PRAGMA busy_timeout = {int(wait * 1000)}")
            try:
                conn.execute("DELETE FROM eventwire_outbox_relays WHERE owner = ?", (owner,))
            finally:
                if timeout_s is not None:
                    conn.execute(f"PRAGMA busy_timeout = {int(self._busy_timeout_s * 1000)}")
            self._beats.pop(owner, None)
        finally:
            self._lock.release()
        return True

    def status(self) -> OutboxStatus:
        """Pending, parked and retained-sent counts, the oldest pending age, heartbeats."""
        now = time.time()
        with self._lock:
            counts = dict(
                self._conn.execute(
                    "SELECT state, COUNT(*) FROM eventwire_outbox GROUP BY state"
                ).fetchall()
            )
            oldest = self._conn.execute(
                "SELECT MIN(created_at) FROM eventwire_outbox WHERE state = 'pending'"
            ).fetchone()[0]
            beats = self._conn.execute(
                "SELECT owner, ? - last_round_at, last_error FROM eventwire_outbox_relays"
                " WHERE last_round_at >= ? ORDER BY last_round_at DESC, owner",
                (now, now - _BEATS_KEPT_S),
            ).fetchall()
        return OutboxStatus(
            pending=counts.get("pending", 0),
            parked=counts.get("parked", 0),
            sent_retained=counts.get("sent", 0),
            oldest_pending_age_s=None if oldest is None else max(0.0, now - oldest),
            relays=tuple(RelayHeartbeat(o, max(0.0, age), err) for o, age, err in beats),
        )

    def close(self, timeout: float | None = None) -> None:
        """Close the store's connection (and stop its checkpoint thread).

        ``timeout``: wait at most that long for a thread still using the connection
        (e.g. a relay's round waiting for another process's write lock, up to
        ``busy_timeout_s``); if it does not let go in time, the connection is left
        open, to that thread and then to the process's exit, and a warning
        ``outbox_store_not_closed`` is logged. A second call does nothing.
        """
        if self._closing:
            return
        self._closing = True
        deadline = None if timeout is None else time.monotonic() + max(0.0, timeout)
        if self._checkpointer is not None:
            self._checkpointer.close(5.0 if timeout is None else min(5.0, max(0.0, timeout)))
        wait = -1.0 if deadline is None else max(0.0, deadline - time.monotonic())
        if not self._lock.acquire(timeout=wait):
            _log.warning("outbox_store_not_closed", path=str(self.path), waited_s=timeout)
            return
        try:
            if self._db is not None:
                self._db.close()
        finally:
            self._lock.release()

    def __reduce__(self) -> NoReturn:
        _fork.refuse_pickling(
            self,
            "an SQLite connection and a checkpoint thread",
            "Create the store in each process from its path: SQLiteOutbox(path).",
        )

    def __repr__(self) -> str:
        return f"SQLiteOutbox({str(self.path)!r})"
