"""The production outbox: a PostgreSQL table, written in your own transaction.

Requires the ``postgres`` extra (psycopg 3). Claims use ``FOR UPDATE SKIP
LOCKED`` under a transaction-scoped advisory lock: claiming is serialized (it is
short), which keeps per-key order exact even with several relays, while sending
and acknowledging run fully in parallel.

Commit order. A ``BIGSERIAL`` id is taken at insert, not at commit, so a row
with a lower id can become visible after one with a higher id. Each row records
its transaction (``xid``, from ``pg_current_xact_id()``), and a claim only takes
rows whose transaction is older than every transaction still running
(``pg_snapshot_xmin(pg_current_snapshot())``), in (xid, id) order: everything
that can still appear later sorts after everything claimed so far, so per-key
order holds across concurrently committing writers. The price: a transaction
that stays open (anywhere in the cluster, e.g. idle in transaction) holds back
rows committed after it started until it ends. The limit: a transaction takes
its id at its first write, so if transaction T2 writes something, then waits for
a row lock held by T1, and both add an event of one key, T2's event (lower xid)
goes out first although T1 committed first; write the event after taking the
locks that order your writers (or lock before the first write).

Clocks. Every time the store writes or compares (created_at, leases, retry
times, sent_at, first_failed_at, the cleanup cut-off, ages, heartbeats) is the
database server's (``statement_timestamp()``), never the relay host's, so relays
on hosts with skewed clocks agree. If the server's clock steps back, a lease or
retry time set before the step is treated as over (see ``_sql.HELD_BACK``):
a retry then goes out early and a live lease may be taken over (a duplicate
with the same ``ce_id``), rather than stalling a key for as long as the step. If
it steps forward by more than a lease, live leases expire early (the same
duplicate).

Connections. The store keeps one connection and replaces it when it is found
broken (database restart, failover, ``pg_terminate_backend``): reads, claims and
the idempotent updates are retried once on a new connection; ``add`` is retried
only when the failure came before COMMIT (nothing was written), and a failure
during COMMIT raises :class:`OutboxWriteError` with ``possibly_written=True``.

Storage: the table is created with ``fillfactor = 60``. A claim rewrites each row
it leases (owner, lease times, attempts: no indexed column), and with room left on
the row's page PostgreSQL makes that a HOT update, which adds no index entries;
on full pages every lease added one entry to each of the four indexes. This cut
a 2,000-row lease by about a quarter. A table created without it works as before.

Schema: a table made by an older eventwire (without ``xid``, ``leased_at``,
``retry_scheduled_at``) is refused with a :class:`ConfigurationError`; it is not
migrated.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Collection, Sequence
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

from eventwire import _fork
from eventwire._errors import ConfigurationError, OutboxWriteError
from eventwire.outbox import _plan, _sql
from eventwire.outbox._dsn import hide_quoted, scrub_dsn, unsupported_scheme
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

if TYPE_CHECKING:
    import psycopg

__all__ = ["PostgresOutbox", "insert_plan"]

_T = TypeVar("_T")

#: The server's clock, in Unix seconds: the one clock every relay agrees on.
_NOW = "(EXTRACT(EPOCH FROM statement_timestamp())::float8)"

_TABLES = """
CREATE TABLE IF NOT EXISTS eventwire_outbox (
    id                 BIGSERIAL PRIMARY KEY,
    xid                xid8 NOT NULL DEFAULT pg_current_xact_id(),
    event_id           TEXT NOT NULL,
    event_type         TEXT NOT NULL,
    topic              TEXT NOT NULL,
    key                BYTEA,
    value              BYTEA NOT NULL,
    headers            BYTEA NOT NULL,
    created_at         DOUBLE PRECISION NOT NULL,
    state              TEXT NOT NULL DEFAULT 'pending',
    attempts           INTEGER NOT NULL DEFAULT 0,
    next_attempt_at    DOUBLE PRECISION NOT NULL DEFAULT 0,
    retry_scheduled_at DOUBLE PRECISION NOT NULL DEFAULT 0,
    lease_owner        TEXT,
    leased_at          DOUBLE PRECISION NOT NULL DEFAULT 0,
    lease_until        DOUBLE PRECISION NOT NULL DEFAULT 0,
    last_error         TEXT,
    first_failed_at    DOUBLE PRECISION,
    sent_at            DOUBLE PRECISION
) WITH (fillfactor = 60);
CREATE TABLE IF NOT EXISTS eventwire_outbox_relays (
    owner         TEXT PRIMARY KEY,
    last_round_at DOUBLE PRECISION NOT NULL,
    last_error    TEXT
);
"""

_INDEXES = """
CREATE INDEX IF NOT EXISTS eventwire_outbox_claim
    ON eventwire_outbox (xid, id) WHERE state = 'pending';
-- Per-key order looks up earlier pending rows of the same key. NULL and empty keys
-- share one ordering group (COALESCE), which keeps the lookup an index search.
CREATE INDEX IF NOT EXISTS eventwire_outbox_key_order
    ON eventwire_outbox (topic, (COALESCE(key, ''::bytea)), xid, id) WHERE state = 'pending';
-- One unsent row per event id: add() of an event still waiting returns that row.
CREATE UNIQUE INDEX IF NOT EXISTS eventwire_outbox_unsent_event
    ON eventwire_outbox (event_id) WHERE state <> 'sent';
"""

#: What :meth:`PostgresOutbox.prepare_connection` makes, by name (in the search path).
_OBJECTS = (
    "eventwire_outbox",
    "eventwire_outbox_relays",
    "eventwire_outbox_claim",
    "eventwire_outbox_key_order",
    "eventwire_outbox_unsent_event",
)
#: Each of :data:`_OBJECTS` as a regclass, or NULL where missing (no privilege needed).
_FIND_OBJECTS = "SELECT " + ", ".join(f"to_regclass('{name}')::oid" for name in _OBJECTS)


def _psycopg_errors() -> Any:
    import psycopg.errors  # noqa: PLC0415 - psycopg is an extra

    return psycopg.errors


# DO NOTHING, not a no-op DO UPDATE: an update would lock a pending row, and a
# claim (SKIP LOCKED) would then skip it and could send a later row of its key.
_INSERT = (
    "INSERT INTO eventwire_outbox (event_id, event_type, topic, key, value, headers, created_at)"
    f" VALUES (%s, %s, %s, %s, %s, %s, {_NOW})"
    " ON CONFLICT (event_id) WHERE state <> 'sent' DO NOTHING RETURNING id"
)

_REQUEUE = f"UPDATE eventwire_outbox SET {_sql.REQUEUE_SET.format(wall=_NOW)}"

_KEY = "COALESCE(key, ''::bytea)"

#: The server's clock, read once per statement (an InitPlan), not once per row: the
#: claim compares it with every pending row.
_NOW_ONCE = f"(SELECT {_NOW})"

# One page of the pending rows in claim order ((xid, id): commit order, and only
# rows whose transaction ended before every running one began, so no row that
# commits later can sort before them), after the key (xid, id) of the previous page,
# with just what :func:`_sql.pick_sendable` needs: an index range scan of
# ``eventwire_outbox_claim`` that stops at the page, however long the backlog.
_PENDING_PAGE = f"""
SELECT o.id, o.xid::text AS xid_text, o.topic, o.key, {_sql.held_back(_NOW_ONCE, "o")}
FROM eventwire_outbox AS o
WHERE o.state = 'pending'
  AND o.xid < pg_snapshot_xmin(pg_current_snapshot())
  AND (o.xid, o.id) > (%(xid)s::xid8, %(id)s::bigint)
ORDER BY o.xid, o.id
LIMIT %(page)s
"""

# Serialize claims; for this transaction only: commit the lease without waiting for
# its WAL flush (see ``claim_batch``), and plan the page and the lease as the index
# scan it is (by (xid, id), stopping at the page). A table not analyzed since a burst
# of writes (its statistics say a hundred pending rows where there are 50,000)
# otherwise gets a bitmap scan of every pending row, which made a claim O(backlog).
_CLAIM_SETUP = (
    "SELECT pg_advisory_xact_lock(%s), set_config('synchronous_commit', 'off', true),"
    " set_config('enable_bitmapscan', 'off', true)"
)

# Lease the picked rows (those still pending and not held back; a row another
# transaction is changing right now is skipped, as before) and return them whole.
_LEASE = f"""
UPDATE eventwire_outbox AS t
SET lease_owner = %(owner)s, leased_at = {_NOW}, lease_until = {_NOW} + %(lease_s)s,
    attempts = t.attempts + 1
FROM unnest(%(ids)s::bigint[]) AS p(id), LATERAL (
  -- one primary-key lookup per picked id (LIMIT 1 keeps it a per-id lookup)
  SELECT o.id FROM eventwire_outbox AS o
  WHERE o.id = p.id AND o.state = 'pending' AND NOT {_sql.held_back(_NOW_ONCE, "o")}
  LIMIT 1
  FOR UPDATE SKIP LOCKED
) AS c
WHERE t.id = c.id
RETURNING t.id, t.event_id, t.event_type, t.topic, t.key, t.value, t.headers,
          t.attempts - 1, t.created_at, t.first_failed_at, {_NOW} - t.created_at,
          t.xid::text
"""

# Undo leases just taken in this transaction (see ``_keep_key_order``).
_UNLEASE = (
    "UPDATE eventwire_outbox SET lease_owner = NULL, leased_at = 0, lease_until = 0,"
    " attempts = GREATEST(attempts - 1, 0) WHERE id = ANY(%s::bigint[])"
)

#: libpq options for the store's own connections (unless the DSN sets them): notice a
#: peer that vanished without closing the connection within about a minute.
_DEAD_PEER_DEFAULTS: dict[str, Any] = {
    "keepalives": 1,
    "keepalives_idle": 30,
    "keepalives_interval": 10,
    "keepalives_count": 3,
    "tcp_user_timeout": 60_000,
}

#: The lease is still the caller's (``owner=``): the row was neither done nor taken over.
_OWNED = " AND state = 'pending' AND lease_owner = %(owner)s"

#: Mark rows done (parameters: ``last_error``, the ids); see ``mark_sent``.
_MARK_SENT = (
    f"UPDATE eventwire_outbox SET state = 'sent', sent_at = {_NOW}, lease_until = 0,"
    " leased_at = 0, lease_owner = NULL, last_error = %s WHERE id = ANY(%s)"
)

_CLAIM_LOCK = 0x657665_6E74  # "event": the advisory lock that serializes claims

_BEAT_INTERVAL_S = 1.0
_BEATS_KEPT_S = 86400.0


def insert_plan(entries: Sequence[OutboxEntry]) -> _plan.Plan:
    """Insert (or find the unsent rows of) ``entries`` in the open transaction: their ids.

    Raises:
        EventIdConflictError: an unsent row (or an earlier entry) has the event
            id of an entry but another topic, key or value.
    """
    _sql.check_batch_event_ids(entries)
    ids: list[int | None] = [None] * len(entries)
    todo = list(range(len(entries)))
    for _ in range(3):  # a conflicting row sent in between is inserted anew
        rows = [
            (e.event_id, e.event_type, e.topic, e.key, e.value, encode_headers(e.headers))
            for e in (entries[i] for i in todo)
        ]
        firsts = yield _plan.Each(_INSERT, rows)
        for i, row in zip(todo, firsts, strict=True):
            ids[i] = None if row is None else row[0]
        todo = [i for i in todo if ids[i] is None]
        if not todo:
            break
        wanted = list({entries[i].event_id for i in todo})
        # Only re-sends get here (no query when no event id has an unsent row).
        found = {
            event_id: (row_id, state, topic, key, value)
            for event_id, row_id, state, topic, key, value in (
                yield _plan.Fetch(
                    "SELECT event_id, id, state, topic, key, value FROM eventwire_outbox"
                    " WHERE event_id = ANY(%s) AND state <> 'sent'",
                    (wanted,),
                )
            )
        }
        for i in todo:
            e = entries[i]
            if e.event_id in found:
                row_id, _, topic, key, value = found[e.event_id]
                differing = _sql.differing_fields(e, topic, key, value)
                if differing:
                    raise EventIdConflictError(e.event_id, row_id, differing)
        parked = [found[e][0] for e in wanted if e in found and found[e][1] == "parked"]
        if parked:  # a deliberate re-send of a parked event: it starts over
            yield _plan.Many(f"{_REQUEUE} WHERE id = ANY(%s) AND state = 'parked'", [(parked,)])
        for i in todo:
            ids[i] = found.get(entries[i].event_id, (None, ""))[0]
        todo = [i for i in todo if ids[i] is None]
        if not todo:
            break
    if todo:  # pragma: no cover - needs a row sent between every retry
        raise RuntimeError("an outbox row kept changing under add(); try again")
    return [i for i in ids if i is not None]


#: Which outbox table a connection's statements reach: database, server (port and
#: start time) and the table's oid under the connection's search_path.
IDENTITY = _plan.Fetch(
    "SELECT current_database(), current_setting('port'), pg_postmaster_start_time()::text,"
    " to_regclass('eventwire_outbox')::oid::bigint",
    (),
)


def _executor(conn: psycopg.Connection[Any]) -> Callable[[_plan.Step], Any]:
    """Run a plan's steps on a psycopg connection (``Each``: one pipelined executemany).

    Rows are tuples whatever the connection's ``row_factory`` (the caller's may be
    ``dict_row``): the plan reads them by position.
    """
    from psycopg.rows import tuple_row  # noqa: PLC0415  (psycopg is the extra)

    def execute(step: _plan.Step) -> Any:
        if isinstance(step, _plan.Fetch):
            with conn.cursor(row_factory=tuple_row) as cur:
                return cur.execute(step.sql, step.params).fetchall()
        with conn.cursor(row_factory=tuple_row) as cur:
            if isinstance(step, _plan.Many):
                cur.executemany(step.sql, step.param_sets)
                return None
            cur.executemany(step.sql, step.param_sets, returning=True)
            firsts = []
            for _ in step.param_sets:
                firsts.append(cur.fetchone())
                cur.nextset()
            return firsts

    return execute


def _keep_key_order(
    conn: psycopg.Connection[Any], picked: list[Any], leased: list[Any]
) -> list[Any]:
    """The leased rows, less any after a picked row of its key that was not leased.

    A picked row is not leased when another transaction changed it or held its lock
    since the walk read it (e.g. a relay whose lease had expired releasing it for a
    retry). The later rows of its key must then wait too: their leases are undone in
    this same transaction, as if they had not been picked.
    """
    if len(leased) == len(picked):
        return leased
    got = {row[0] for row in leased}
    stopped: set[tuple[str, bytes]] = set()
    undo: set[int] = set()
    for row in picked:  # claim order
        group = (row[2], bytes(row[3] or b""))
        if row[0] not in got:
            stopped.add(group)
        elif group in stopped:
            undo.add(row[0])
    if undo:
        conn.execute(_UNLEASE, ([*undo],))
    return [row for row in leased if row[0] not in undo]


class PostgresOutbox:
    """An outbox table in PostgreSQL (created if missing).

    Args:
        dsn: a libpq connection string, e.g. ``"postgresql://app@db/app"``.
        connect_timeout_s: libpq's ``connect_timeout`` for the store's own
            connections, unless the DSN sets one. TCP keepalives and
            ``tcp_user_timeout`` (60 s) are on too unless the DSN sets them, so a
            server that vanished (failover) is noticed instead of hanging a call.

    Raises:
        ConfigurationError: psycopg is not installed, the DSN is malformed, the
            database refused us, or it holds an outbox table of an older eventwire.
            The message never shows the DSN's password (see
            :func:`eventwire.outbox._dsn.scrub_dsn`).

    After construction, a method raises ``psycopg.OperationalError`` only when the
    database cannot be reached even on a new connection (``add``:
    :class:`OutboxWriteError`); the next call tries to connect again.
    """

    #: Whether the relay claims the next batch while the last one's acks come in
    #: (its claim is the server's work: it overlaps the wait for acks).
    _CLAIM_AHEAD = True

    def __init__(self, dsn: str, *, connect_timeout_s: float = 10.0) -> None:
        try:
            import psycopg  # noqa: PLC0415
            from psycopg.conninfo import conninfo_to_dict  # noqa: PLC0415
        except ImportError as exc:  # pragma: no cover - depends on the extra
            raise ConfigurationError(
                "PostgresOutbox needs psycopg 3: pip install 'eventwire[postgres]'"
            ) from exc
        self._psycopg = psycopg
        self._dsn = dsn
        self._connect_kwargs: dict[str, Any] = {"autocommit": False}
        self._lock = threading.Lock()
        #: The store's :data:`IDENTITY` row, once asked (see :meth:`check_same_table`).
        self._identity: tuple[Any, ...] | None = None
        self._beats: dict[str, tuple[float, str | None]] = {}
        self._conn: psycopg.Connection[Any] | None = None
        problem = unsupported_scheme(dsn)
        if problem is not None:
            raise ConfigurationError(f"cannot open the PostgreSQL outbox: {problem}")
        try:
            given = conninfo_to_dict(dsn)
        except psycopg.Error as exc:
            # libpq quotes the piece it stopped at, which may be part of the password.
            raise ConfigurationError(
                "cannot open the PostgreSQL outbox: its DSN is not a valid libpq connection "
                f"string ({scrub_dsn(hide_quoted(str(exc).strip()), dsn)}; quoted parts "
                "hidden, as they may belong to the password). Write keyword=value pairs "
                "(single-quote a value with spaces) or a postgresql:// URL (percent-encode "
                "special characters of the user and password)"
            ) from None
        try:
            defaults = {**_DEAD_PEER_DEFAULTS, "connect_timeout": max(1, round(connect_timeout_s))}
            self._connect_kwargs.update({k: v for k, v in defaults.items() if k not in given})
            conn = self._connection()
            with conn.transaction():
                self.prepare_connection(conn)
        except psycopg.Error as exc:
            self.close()
            raise ConfigurationError(
                f"cannot open the PostgreSQL outbox: {scrub_dsn(str(exc), dsn)}"
            ) from None
        except ConfigurationError:
            self.close()
            raise
        _fork.register(self)

    def _after_fork_in_child(self) -> None:
        """In a forked child: a lock and a connection of its own.

        The inherited connection shares its socket with the parent's: it is
        abandoned, neither used nor closed (closing it would end the parent's
        session; see :mod:`eventwire._fork`), and the next call connects anew.
        """
        self._lock = threading.Lock()
        _fork.abandon(self._conn)
        self._conn = None

    @staticmethod
    def prepare_connection(conn: Any) -> None:
        """Create the outbox tables through the caller's psycopg connection (idempotent).

        When the tables and indexes are all there, nothing is created: a role with
        only ``SELECT, INSERT, UPDATE, DELETE`` on them (and ``USAGE`` on
        ``eventwire_outbox_id_seq``) may open the outbox once the owner has run
        :meth:`schema_sql` (``eventwire outbox ddl postgres``), e.g. in a migration.
        A role with ``SELECT`` alone may read it (``outbox status``, ``dlq list``).

        Raises:
            ConfigurationError: the database holds an outbox table of an older
                eventwire, or something is missing and this role may not create it.
        """
        conn = unwrap_connection(conn)
        found = conn.execute(_FIND_OBJECTS).fetchone()
        if found[0] is not None:
            columns = {
                row[0]
                for row in conn.execute(
                    "SELECT attname FROM pg_attribute WHERE attrelid = %s::regclass"
                    " AND attnum > 0 AND NOT attisdropped",
                    (found[0],),
                ).fetchall()
            }
            problem = _sql.outdated_table(columns, extra={"xid"})
            if problem is not None:
                raise ConfigurationError(f"{problem} (PostgreSQL)")
        missing = [name for name, oid in zip(_OBJECTS, found, strict=True) if oid is None]
        if not missing:
            return
        try:
            with conn.transaction():  # a savepoint inside the caller's transaction
                conn.execute(_TABLES)
                conn.execute(_INDEXES)
        except _psycopg_errors().InsufficientPrivilege as exc:
            raise ConfigurationError(
                f"the PostgreSQL outbox lacks {', '.join(missing)}, and this role may not "
                f"create {'it' if len(missing) == 1 else 'them'} ({str(exc).splitlines()[0]}). "
                "Have the database owner run the SQL that `eventwire outbox ddl postgres` "
                "prints (PostgresOutbox.schema_sql(); e.g. in a migration), then grant this "
                "role SELECT, INSERT, UPDATE, DELETE on eventwire_outbox and "
                "eventwire_outbox_relays, and USAGE on eventwire_outbox_id_seq"
            ) from None

    @staticmethod
    def schema_sql() -> str:
        """The SQL that creates the outbox's tables and indexes (idempotent).

        For a deployment whose application role may not run DDL: the owner runs
        this (a migration), and the application's role needs ``SELECT, INSERT,
        UPDATE, DELETE`` on ``eventwire_outbox`` and ``eventwire_outbox_relays`` and
        ``USAGE`` on ``eventwire_outbox_id_seq``.
        """
        return f"{_TABLES.strip()}\n{_INDEXES.strip()}\n"

    # -- connections ------------------------------------------------------------------------
    def _connection(self) -> psycopg.Connection[Any]:
        """The store's connection, a new one if there is none or it is broken."""
        conn = self._conn
        if conn is None or conn.closed or conn.broken:
            if conn is not None:
                with contextlib.suppress(Exception):
                    conn.close()
            self._conn = None
            conn = self._psycopg.connect(self._dsn, **self._connect_kwargs)
            self._conn = conn
        return conn

    def _lost(self, conn: psycopg.Connection[Any]) -> bool:
        """True (and forget it) if ``conn`` is broken: the next call reconnects."""
        if conn.closed or conn.broken:
            if self._conn is conn:
                self._conn = None
            with contextlib.suppress(Exception):
                conn.close()
            return True
        return False

    def _run(self, work: Callable[[psycopg.Connection[Any]], _T]) -> _T:
        """Run ``work`` in a transaction; once more on a new connection if it broke.

        Only for work that may safely run twice (reads, claims, idempotent updates).
        """
        with self._lock:
            for attempt in (0, 1):
                conn = self._connection()
                try:
                    with conn.transaction():
                        return work(conn)
                except self._psycopg.OperationalError:
                    if not self._lost(conn) or attempt:
                        raise
            raise AssertionError("unreachable")  # pragma: no cover

    # -- writing ------------------------------------------------------------------------------
    def _insert(self, conn: psycopg.Connection[Any], entries: Sequence[OutboxEntry]) -> list[int]:
        """Insert (or find the unsent rows of) ``entries`` in ``conn``'s open transaction."""
        return _plan.run(insert_plan(entries), _executor(conn))

    def check_same_table(self, theirs: tuple[Any, ...], caller: str) -> None:
        """Refuse a connection (its :data:`IDENTITY` row) reaching another outbox table.

        Its inserts would be committed where the relay never looks. Blocking: the
        store's own row is asked for once (again after a mismatch: a restarted
        server has another start time).

        Raises:
            ConfigurationError: another database, server or schema.
        """
        for fresh in (False, True):
            if fresh or self._identity is None:
                row = self._run(lambda c: c.execute(IDENTITY.sql).fetchone())
                self._identity = tuple(row or ())
            if theirs == self._identity:
                return
        ours = self._identity or ("?", "?")
        raise ConfigurationError(
            f"{caller}(connection=...) got a connection to another database (or schema) "
            f"than the outbox: database {theirs[0]!r} on port {theirs[1]}, the outbox's is "
            f"{ours[0]!r} on port {ours[1]}. The event would be committed where the relay "
            "never looks. Connect to the outbox's own database"
        )

    def add(self, entries: Sequence[OutboxEntry], *, connection: Any = None) -> list[int]:
        """Insert entries; return their row ids. See :meth:`OutboxStore.add`.

        ``connection`` may be a psycopg connection or an SQLAlchemy Session or
        Connection bound to psycopg; the caller commits or rolls back, and
        database errors propagate unchanged.

        Raises:
            EventIdConflictError: an entry's ``event_id`` has an unsent row (or an
                earlier entry of this call) with a different topic, key or value.
                Without ``connection``, the transaction is rolled back: nothing is
                stored. With ``connection``, the entries inserted before the
                conflict are in the caller's transaction: roll it back.
            ConfigurationError: ``connection`` is not a psycopg connection, or
                reaches another database, server or schema (nothing written).
            OutboxWriteError: (without ``connection``) ``possibly_written=False``:
                the write failed before COMMIT, or the server rejected the COMMIT
                (rolled back); ``possibly_written=True``: the connection failed
                during COMMIT, so the outcome is unknown.
        """
        if not entries:
            return []
        if connection is not None:
            conn = unwrap_connection(connection)
            if not isinstance(conn, self._psycopg.Connection):
                raise ConfigurationError(
                    "PostgresOutbox.add(connection=...) needs a psycopg Connection or an "
                    f"SQLAlchemy Session/Connection on psycopg, got {type(connection).__name__}"
                )
            self.check_same_table(tuple(_executor(conn)(IDENTITY)[0]), "Publisher.stage")
            return self._insert(conn, entries)
        n = len(entries)
        with self._lock:
            for attempt in (0, 1):
                try:
                    conn = self._connection()
                except self._psycopg.Error as exc:
                    raise OutboxWriteError(
                        n,
                        f"cannot connect to PostgreSQL: {scrub_dsn(str(exc), self._dsn)}",
                        possibly_written=False,
                    ) from exc
                ids = self._insert_uncommitted(conn, entries, may_retry=attempt == 0)
                if ids is not None:
                    self._commit(conn, n)
                    return ids
            raise AssertionError("unreachable")  # pragma: no cover

    def _insert_uncommitted(
        self, conn: psycopg.Connection[Any], entries: Sequence[OutboxEntry], *, may_retry: bool
    ) -> list[int] | None:
        """Insert in a new transaction, not committed; None: the connection broke, retry."""
        try:
            return self._insert(conn, entries)
        except self._psycopg.Error as exc:
            if self._lost(conn):
                if may_retry:
                    return None  # nothing was committed: once more, on a new connection
            else:
                with contextlib.suppress(Exception):
                    conn.rollback()
            raise OutboxWriteError(
                len(entries), f"PostgreSQL: {exc}", possibly_written=False
            ) from exc
        except BaseException:
            if not self._lost(conn):
                with contextlib.suppress(Exception):
                    conn.rollback()
            raise

    def _commit(self, conn: psycopg.Connection[Any], count: int) -> None:
        """COMMIT; OutboxWriteError saying whether the rows may be stored if it fails."""
        try:
            conn.commit()
        except self._psycopg.Error as exc:
            # The server answered with an error: it rolled the transaction back.
            # Any other failure (the connection was lost): it may have committed.
            answered = not self._lost(conn) and exc.sqlstate is not None
            if answered:
                with contextlib.suppress(Exception):
                    conn.rollback()
            raise OutboxWriteError(
                count, f"PostgreSQL COMMIT failed: {exc}", possibly_written=not answered
            ) from exc

    def claim_batch(self, limit: int, *, owner: str, lease_s: float) -> list[ClaimedEntry]:
        """Lease up to ``limit`` sendable entries in commit order, keeping per-key order.

        A claim whose COMMIT is lost with the connection leaves its entries leased
        until ``lease_s`` passes; the retried claim takes others. The lease commits
        without waiting for its WAL flush (``synchronous_commit = off`` for this
        transaction only): a lease lost to a crash of the database server frees its
        entries early, which at worst sends them again (same ``ce_id``), as a lease
        taken over after it expired does.
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
        before the claim; like the lease, it commits without waiting for its WAL
        flush: a mark lost to a crash of the server only sends those entries
        again (same ``ce_id``).
        """
        if limit <= 0 and not sent:
            return []
        page = max(limit, 100)
        # in flight: left out in Python (``id <> ALL(array)`` in the page query compares
        # each row with every id: a claim ahead took 60 % longer)
        passing = frozenset(in_flight)
        sent_ids = list(sent)

        def work(conn: psycopg.Connection[Any]) -> list[Any]:
            conn.execute(_CLAIM_SETUP, (_CLAIM_LOCK,))
            if sent_ids:
                conn.execute(_MARK_SENT, (None, sent_ids))
            if limit <= 0:
                return []
            picked: list[Any] = []
            blocked: set[tuple[str, bytes]] = set()
            after = {"xid": "0", "id": 0, "page": page}
            while True:
                rows = conn.execute(_PENDING_PAGE, after).fetchall()
                full = _sql.pick_sendable(
                    rows, picked, blocked, limit, topic=2, key=3, held=4, in_flight=passing
                )
                if full or len(rows) < page:
                    break
                after = {"xid": rows[-1][1], "id": rows[-1][0], "page": page}
            if not picked:
                return []
            ids = [row[0] for row in picked]
            params = {"owner": owner, "lease_s": lease_s, "ids": ids}
            # binary: values and headers come as they are stored, not hex-encoded
            leased = conn.execute(_LEASE, params, binary=True).fetchall()
            return _keep_key_order(conn, picked, leased)

        rows = self._run(work)
        rows.sort(key=lambda r: (int(r[11]), r[0]))
        return [_sql.claimed(r) for r in rows]

    def _write(self, sql: str, params: Sequence[Any] | dict[str, Any]) -> int:
        def work(conn: psycopg.Connection[Any]) -> int:
            return conn.execute(sql, params).rowcount

        return self._run(work)

    def mark_sent(self, ids: Sequence[int], *, dead_lettered: str | None = None) -> None:
        """Mark entries done: acknowledged by Kafka, or dead-lettered (``"CODE: reason"``).

        See :meth:`OutboxStore.mark_sent`.
        """
        if ids:
            self._write(_MARK_SENT, (_sql.dead_lettered_error(dead_lettered), list(ids)))

    def mark_retry(
        self,
        entry_id: int,
        error: str,
        delay_s: float,
        *,
        counted: bool = True,
        owner: str | None = None,
    ) -> None:
        """Release the lease; the entry is sendable again ``delay_s`` s from now (server clock).

        See :meth:`OutboxStore.mark_retry` (``counted``, ``owner``).
        """
        self.mark_retry_many([(entry_id, error, delay_s, counted)], owner=owner)

    def mark_retry_many(
        self,
        retries: Sequence[tuple[int, str, float, bool]],
        *,
        owner: str | None = None,
    ) -> None:
        """:meth:`mark_retry` for each ``(entry_id, error, delay_s, counted)``, in one statement.

        The relay releases a round's failed and held-back entries with one call.
        """
        if not retries:
            return
        self._write(
            "UPDATE eventwire_outbox AS t SET lease_until = 0, leased_at = 0, lease_owner = NULL,"
            f" next_attempt_at = {_NOW} + r.delay, retry_scheduled_at = {_NOW},"
            " last_error = r.error,"
            " attempts = CASE WHEN r.counted THEN t.attempts ELSE GREATEST(t.attempts - 1, 0) END,"
            " first_failed_at = CASE WHEN r.counted"
            f" THEN COALESCE(t.first_failed_at, {_NOW}) ELSE t.first_failed_at END"
            " FROM unnest(%(ids)s::bigint[], %(errors)s::text[], %(delays)s::float8[],"
            " %(counted)s::bool[]) AS r(id, error, delay, counted)"
            f" WHERE t.id = r.id{_OWNED if owner is not None else ''}",
            {
                "ids": [r[0] for r in retries],
                "errors": [r[1] for r in retries],
                "delays": [max(0.0, float(r[2])) for r in retries],
                "counted": [bool(r[3]) for r in retries],
                "owner": owner,
            },
        )

    def park(self, entry_id: int, error: str, *, owner: str | None = None) -> bool:
        """Set an entry aside after a permanent failure; True if it was parked.

        See :meth:`OutboxStore.park` (``owner``).
        """
        return (
            self._write(
                "UPDATE eventwire_outbox SET state = 'parked', lease_until = 0, leased_at = 0,"
                " lease_owner = NULL, last_error = %(error)s,"
                f" first_failed_at = COALESCE(first_failed_at, {_NOW})"
                f" WHERE id = %(id)s{_OWNED if owner is not None else ''}",
                {"error": error, "id": entry_id, "owner": owner},
            )
            > 0
        )

    def row_states(self, ids: Sequence[int]) -> dict[int, RowState]:
        """Each row's state; ids with no row (sent, cleaned up) are absent.

        See :meth:`OutboxStore.row_states`.
        """
        batches = list(_sql.chunks(ids))
        if not batches:
            return {}

        def work(conn: psycopg.Connection[Any]) -> list[Any]:
            rows: list[Any] = []
            for chunk in batches:
                rows += conn.execute(
                    "SELECT id, state, last_error FROM eventwire_outbox WHERE id = ANY(%s)",
                    (chunk,),
                ).fetchall()
            return rows

        return {i: _sql.row_state(state, err) for i, state, err in self._run(work)}

    def requeue_parked(self, ids: Sequence[int] | None = None) -> int:
        """Make parked entries pending again (all, or ``ids``) with a fresh start; how many.

        See :meth:`OutboxStore.requeue_parked`.
        """
        if ids is None:
            return self._write(f"{_REQUEUE} WHERE state = 'parked'", ())
        return self._write(f"{_REQUEUE} WHERE state = 'parked' AND id = ANY(%s)", (list(ids),))

    def list_parked(self, limit: int = 100) -> list[tuple[ClaimedEntry, str]]:
        """Parked entries and their last error, oldest first."""

        def work(conn: psycopg.Connection[Any]) -> list[Any]:
            return conn.execute(
                f"SELECT {_sql.ENTRY_COLUMNS}, {_NOW} - created_at, last_error"
                " FROM eventwire_outbox WHERE state = 'parked' ORDER BY xid, id LIMIT %s",
                (limit,),
            ).fetchall()

        return [(_sql.claimed(r), r[11] or "") for r in self._run(work)]

    def cleanup(self, sent_older_than_s: float) -> int:
        """Delete entries acknowledged more than ``sent_older_than_s`` s ago; return how many.

        Also deletes heartbeats older than a day.
        """

        def work(conn: psycopg.Connection[Any]) -> int:
            conn.execute(
                f"DELETE FROM eventwire_outbox_relays WHERE last_round_at < {_NOW} - %s",
                (_BEATS_KEPT_S,),
            )
            return conn.execute(
                f"DELETE FROM eventwire_outbox WHERE state = 'sent' AND sent_at < {_NOW} - %s",
                (sent_older_than_s,),
            ).rowcount

        return self._run(work)

    def heartbeat(self, owner: str, error: str | None = None) -> None:
        """Record a relay round of ``owner``; see :meth:`OutboxStore.heartbeat`."""
        mono = time.monotonic()
        last = self._beats.get(owner)
        if last is not None and last[1] == error and mono - last[0] < _BEAT_INTERVAL_S:
            return
        self._write(
            "INSERT INTO eventwire_outbox_relays (owner, last_round_at, last_error)"
            f" VALUES (%s, {_NOW}, %s) ON CONFLICT (owner) DO UPDATE"
            " SET last_round_at = excluded.last_round_at, last_error = excluded.last_error",
            (owner, error),
        )
        self._beats[owner] = (mono, error)

    def forget_relay(self, owner: str) -> None:
        """Delete relay ``owner``'s heartbeat: it stopped on purpose (not shown as stale)."""
        self._write("DELETE FROM eventwire_outbox_relays WHERE owner = %s", (owner,))
        self._beats.pop(owner, None)

    def status(self) -> OutboxStatus:
        """Pending, parked and retained-sent counts, the oldest pending age, heartbeats."""

        def work(conn: psycopg.Connection[Any]) -> tuple[dict[str, int], Any, list[Any]]:
            counts: dict[str, int] = dict(
                conn.execute("SELECT state, COUNT(*) FROM eventwire_outbox GROUP BY state")
            )
            row = conn.execute(
                f"SELECT {_NOW} - MIN(created_at) FROM eventwire_outbox WHERE state = 'pending'"
            ).fetchone()
            beats = conn.execute(
                f"SELECT owner, {_NOW} - last_round_at, last_error FROM eventwire_outbox_relays"
                f" WHERE last_round_at >= {_NOW} - %s ORDER BY last_round_at DESC, owner",
                (_BEATS_KEPT_S,),
            ).fetchall()
            return counts, None if row is None else row[0], beats

        counts, oldest_age, beats = self._run(work)
        return OutboxStatus(
            pending=counts.get("pending", 0),
            parked=counts.get("parked", 0),
            sent_retained=counts.get("sent", 0),
            oldest_pending_age_s=None if oldest_age is None else max(0.0, oldest_age),
            relays=tuple(RelayHeartbeat(o, max(0.0, age), err) for o, age, err in beats),
        )

    def __reduce__(self) -> NoReturn:
        _fork.refuse_pickling(
            self,
            "a PostgreSQL connection",
            "Create the store in each process from its DSN: PostgresOutbox(dsn).",
        )

    def close(self) -> None:
        """Close the store's connection."""
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
