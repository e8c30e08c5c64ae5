"""The outbox stores' writes, awaited: for ``AsyncPublisher(outbox=...)`` and its ``stage()``.

One implementation, not two: the rows and SQL are the stores' own insert plans
(:func:`eventwire.outbox.sqlite.insert_plan`, :func:`eventwire.outbox.postgres.insert_plan`)
driven by an async connection, the table is the same, and the same sync relay
(a thread) ships what these writes commit.

* :func:`writer_for` -- the publisher's own commits. A :class:`PostgresOutbox` is
  written through a psycopg ``AsyncConnection`` of its own (same DSN and
  connection options, same retry and ``possibly_written`` rules as
  :meth:`PostgresOutbox.add`); any other store (SQLite) through its own
  ``add()`` in a worker thread, so the loop never waits on a file lock or an fsync.
* :func:`stage` -- a write in the caller's open transaction on an asyncio
  connection: psycopg ``AsyncConnection`` or asyncpg ``Connection``
  (PostgreSQL), aiosqlite ``Connection`` (SQLite), or an SQLAlchemy
  ``AsyncSession``/``AsyncConnection`` on one of them. A connection that would
  commit the event at once (autocommit, no open transaction) is refused: the
  event must be sent if and only if the caller commits.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import re
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from eventwire._errors import ConfigurationError, OutboxWriteError
from eventwire.outbox import _plan, postgres, sqlite
from eventwire.outbox._dsn import scrub_dsn
from eventwire.outbox.base import OutboxEntry, OutboxStore

if TYPE_CHECKING:
    import psycopg

__all__ = ["ACCEPTED_CONNECTIONS", "AsyncWriter", "stage", "writer_for"]

#: What ``await AsyncPublisher.stage(connection=...)`` accepts, for error messages.
ACCEPTED_CONNECTIONS = (
    "a psycopg AsyncConnection or an asyncpg Connection (PostgresOutbox), an aiosqlite "
    "Connection (SQLiteOutbox), or an SQLAlchemy AsyncSession/AsyncConnection on one of them"
)

_Execute = Callable[[_plan.Step], Awaitable[Any]]


class AsyncWriter(Protocol):
    """Commits entries durably without blocking the loop (see :meth:`OutboxStore.add`)."""

    async def add(self, entries: Sequence[OutboxEntry]) -> list[int]:
        """Store and commit ``entries``; their row ids. Raises as :meth:`OutboxStore.add`."""
        ...

    async def aclose(self) -> None:
        """Release the writer's own connection (the store is closed by its owner)."""
        ...


def writer_for(store: OutboxStore) -> AsyncWriter:
    """The writer of ``store``'s own commits (see the module docs)."""
    if isinstance(store, postgres.PostgresOutbox):
        return _PsycopgWriter(store)
    return _ThreadWriter(store)


class _ThreadWriter:
    """The store's own ``add()``, in a worker thread."""

    def __init__(self, store: OutboxStore) -> None:
        self._store = store

    async def add(self, entries: Sequence[OutboxEntry]) -> list[int]:
        return await asyncio.to_thread(self._store.add, entries)

    async def aclose(self) -> None:
        return None


class _PsycopgWriter:
    """A psycopg AsyncConnection writing :func:`postgres.insert_plan`, replaced when broken.

    An ``add`` whose connection broke before COMMIT is retried once on a new
    connection (nothing was written); a failure during COMMIT raises
    :class:`OutboxWriteError` with ``possibly_written=True``, as the sync store.
    """

    def __init__(self, store: postgres.PostgresOutbox) -> None:
        import psycopg  # noqa: PLC0415  (the store imported it: the extra is installed)

        self._psycopg = psycopg
        self._dsn = store._dsn
        self._connect_kwargs = dict(store._connect_kwargs)
        self._conn: psycopg.AsyncConnection[Any] | None = None
        self._lock: asyncio.Lock | None = None

    async def _connection(self, count: int) -> psycopg.AsyncConnection[Any]:
        conn = self._conn
        if conn is None or conn.closed or conn.broken:
            await self._drop()
            try:
                conn = await self._psycopg.AsyncConnection.connect(
                    self._dsn, **self._connect_kwargs
                )
            except self._psycopg.Error as exc:
                raise OutboxWriteError(
                    count,
                    f"cannot connect to PostgreSQL: {scrub_dsn(str(exc), self._dsn)}",
                    possibly_written=False,
                ) from exc
            self._conn = conn
        return conn

    async def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                await conn.close()

    async def add(self, entries: Sequence[OutboxEntry]) -> list[int]:
        if not entries:
            return []
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            try:
                for attempt in (0, 1):
                    conn = await self._connection(len(entries))
                    ids = await self._insert(conn, entries, may_retry=attempt == 0)
                    if ids is not None:
                        await self._commit(conn, len(entries))
                        return ids
            except asyncio.CancelledError:
                await self._drop()  # mid-statement: the connection's state is unknown
                raise
        raise AssertionError("unreachable")  # pragma: no cover

    async def _insert(
        self, conn: psycopg.AsyncConnection[Any], entries: Sequence[OutboxEntry], *, may_retry: bool
    ) -> list[int] | None:
        """Insert in a new transaction, not committed; None: the connection broke, retry."""
        try:
            return await _plan.arun(postgres.insert_plan(entries), _psycopg_executor(conn))
        except self._psycopg.Error as exc:
            if conn.broken or conn.closed:
                await self._drop()
                if may_retry:
                    return None  # nothing was committed: once more, on a new connection
            else:
                with contextlib.suppress(Exception):
                    await conn.rollback()
            raise OutboxWriteError(
                len(entries), f"PostgreSQL: {exc}", possibly_written=False
            ) from exc
        except BaseException:
            with contextlib.suppress(Exception):
                await conn.rollback()
            raise

    async def _commit(self, conn: psycopg.AsyncConnection[Any], count: int) -> None:
        try:
            await conn.commit()
        except self._psycopg.Error as exc:
            # The server answered with an error: it rolled back. Else the outcome is unknown.
            answered = not (conn.broken or conn.closed) and exc.sqlstate is not None
            if answered:
                with contextlib.suppress(Exception):
                    await conn.rollback()
            else:
                await self._drop()
            raise OutboxWriteError(
                count, f"PostgreSQL COMMIT failed: {exc}", possibly_written=not answered
            ) from exc

    async def aclose(self) -> None:
        await self._drop()


async def stage(store: OutboxStore, entries: Sequence[OutboxEntry], connection: Any) -> list[int]:
    """Add ``entries`` in ``connection``'s open transaction (the caller commits); their ids.

    Raises:
        ConfigurationError: ``connection`` is not one of :data:`ACCEPTED_CONNECTIONS`,
            or not of the store's database (nothing written).
        EventIdConflictError: as :meth:`OutboxStore.add` with ``connection=``.
        Exception: the driver's own errors, unchanged (the transaction is the caller's).
    """
    conn = await _driver_connection(connection)
    module = _driver(conn)
    plan: _plan.Plan | None = None
    if isinstance(store, postgres.PostgresOutbox) and module in ("psycopg", "asyncpg"):
        plan = postgres.insert_plan(entries)
    elif isinstance(store, sqlite.SQLiteOutbox) and module == "aiosqlite":
        plan = sqlite.insert_plan(entries)
    execute = _EXECUTORS[module](conn) if plan is not None and module in _EXECUTORS else None
    if plan is None or execute is None:
        raise ConfigurationError(
            f"AsyncPublisher.stage(connection=...) with {type(store).__name__} cannot write "
            f"through {type(connection).__module__}.{type(connection).__name__}; it takes "
            f"{ACCEPTED_CONNECTIONS}, of the outbox's own database. For a blocking "
            "connection (sqlite3, psycopg Connection, SQLAlchemy Session) use Publisher.stage()"
        )
    if not _in_transaction(module, conn):
        raise ConfigurationError(
            f"AsyncPublisher.stage(connection=...) got a {module} connection that is not in a "
            "transaction (autocommit): the event would be committed at once, whatever your "
            "transaction does. Open the transaction first (psycopg: autocommit=False or "
            "`async with conn.transaction()`; asyncpg: `async with conn.transaction()`)"
        )
    if module == "aiosqlite":
        await _check_same_file(store, conn)
    else:
        await _check_same_table(store, execute)
    return await _plan.arun(plan, execute)


async def _check_same_file(store: OutboxStore, conn: Any) -> None:
    """Refuse an aiosqlite connection on another file: the relay would never see the row."""
    assert isinstance(store, sqlite.SQLiteOutbox)
    rows = await _aiosqlite_tuples(conn, "PRAGMA database_list", ())
    store.check_same_file(rows, "AsyncPublisher.stage(connection=...)")


async def _check_same_table(store: OutboxStore, execute: _Execute) -> None:
    """Refuse a PostgreSQL connection whose inserts would reach another outbox table."""
    assert isinstance(store, postgres.PostgresOutbox)
    theirs = tuple((await execute(postgres.IDENTITY))[0])
    if theirs != store._identity:  # unknown yet, or another table: ask the store (a thread)
        await asyncio.to_thread(store.check_same_table, theirs, "AsyncPublisher.stage")


def _driver(conn: Any) -> str:
    """``"psycopg"``, ``"asyncpg"`` or ``"aiosqlite"`` for their async connections, else ``""``."""
    module = type(conn).__module__.partition(".")[0]
    if module == "psycopg":
        import psycopg  # noqa: PLC0415

        return module if isinstance(conn, psycopg.AsyncConnection) else ""
    if module == "asyncpg":
        import asyncpg  # type: ignore[import-untyped]  # noqa: PLC0415

        return module if isinstance(conn, asyncpg.Connection) else ""
    if module == "aiosqlite":
        import aiosqlite  # noqa: PLC0415

        return module if isinstance(conn, aiosqlite.Connection) else ""
    return ""


def _in_transaction(module: str, conn: Any) -> bool:
    """False if a statement on ``conn`` would commit at once (autocommit, no transaction)."""
    if module == "asyncpg":
        return bool(conn.is_in_transaction())
    if module == "psycopg":
        return not conn.autocommit or conn.info.transaction_status != 0  # 0: IDLE
    return conn.isolation_level is not None or bool(conn.in_transaction)  # aiosqlite


async def _driver_connection(connection: Any) -> Any:
    """The driver's connection inside an SQLAlchemy AsyncSession/AsyncConnection, or itself.

    Its statements then run in the same open transaction as the caller's.
    """
    if type(connection).__module__.startswith("sqlalchemy.ext.asyncio"):
        if hasattr(connection, "run_sync") and hasattr(connection, "get_bind"):  # AsyncSession
            connection = await connection.connection()
        get_raw = getattr(connection, "get_raw_connection", None)
        if get_raw is not None:
            if not connection.in_transaction():
                # Else SQLAlchemy knows of no transaction: its commit() would do nothing
                # and the pool would roll the driver's (holding the event) back.
                await connection.begin()
            driver = (await get_raw()).driver_connection
            if type(driver).__module__.startswith("asyncpg") and not driver.is_in_transaction():
                # SQLAlchemy opens asyncpg's transaction at its first statement.
                await connection.exec_driver_sql("SELECT 1")
            return driver
    return connection


def _psycopg_executor(conn: psycopg.AsyncConnection[Any]) -> _Execute:
    """Run a plan's steps on a psycopg AsyncConnection (``Each``: one executemany).

    Rows are tuples whatever the connection's ``row_factory`` (e.g. ``dict_row``).
    """
    from psycopg.rows import tuple_row  # noqa: PLC0415  (psycopg is the extra)

    async def execute(step: _plan.Step) -> Any:
        if isinstance(step, _plan.Fetch):
            async with conn.cursor(row_factory=tuple_row) as cur:
                return await (await cur.execute(step.sql, step.params)).fetchall()
        async with conn.cursor(row_factory=tuple_row) as cur:
            if isinstance(step, _plan.Many):
                await cur.executemany(step.sql, step.param_sets)
                return None
            await cur.executemany(step.sql, step.param_sets, returning=True)
            firsts = []
            for _ in step.param_sets:
                firsts.append(await cur.fetchone())
                cur.nextset()
            return firsts

    return execute


async def _aiosqlite_tuples(conn: Any, sql: str, params: Any) -> list[Any]:
    """Every row of ``sql`` as a tuple, whatever the connection's ``row_factory``."""
    async with conn.cursor() as cur:
        cur.row_factory = None
        await cur.execute(sql, params)
        return list(await cur.fetchall())


def _aiosqlite_executor(conn: Any) -> _Execute:
    """Run a plan's steps on an aiosqlite Connection (in its own thread)."""

    async def execute(step: _plan.Step) -> Any:
        if isinstance(step, _plan.Fetch):
            return await _aiosqlite_tuples(conn, step.sql, step.params)
        await conn.executemany(step.sql, step.param_sets)
        return None

    return execute


_PLACEHOLDER = re.compile(r"%s")


def _numbered(sql: str) -> str:
    """The stores' psycopg SQL (``%s``) with asyncpg's placeholders (``$1``, ``$2`` ...)."""
    count = itertools.count(1)
    return _PLACEHOLDER.sub(lambda _: f"${next(count)}", sql)


def _asyncpg_executor(conn: Any) -> _Execute:
    """Run a plan's steps on an asyncpg Connection (``Each``: one statement per row)."""

    async def execute(step: _plan.Step) -> Any:
        sql = _numbered(step.sql)
        if isinstance(step, _plan.Fetch):
            return [tuple(r) for r in await conn.fetch(sql, *step.params)]
        if isinstance(step, _plan.Many):
            await conn.executemany(sql, step.param_sets)
            return None
        return [await conn.fetchrow(sql, *params) for params in step.param_sets]

    return execute


_EXECUTORS: dict[str, Callable[[Any], _Execute]] = {
    "psycopg": _psycopg_executor,
    "asyncpg": _asyncpg_executor,
    "aiosqlite": _aiosqlite_executor,
}
