"""The SQLite outbox store: what only SQLite does (the contract runs on both stores)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from eventwire import ConfigurationError
from eventwire._errors import OutboxWriteError
from eventwire.outbox import OutboxEntry, SQLiteOutbox


def entry(n: int, key: bytes | None = b"k", topic: str = "orders") -> OutboxEntry:
    return OutboxEntry(
        f"id-{n}", "T", topic, key, f"v{n}".encode(), (("ce_id", f"id-{n}".encode()),)
    )


@pytest.fixture
def store(tmp_path: Path) -> SQLiteOutbox:
    return SQLiteOutbox(tmp_path / "outbox.db")


class TestSQLiteOutbox:
    """What is SQLite-specific (the shared contract: tests/integration/test_outbox_store_contract.py)."""

    def test_uses_wal_and_full_sync(self, store: SQLiteOutbox) -> None:
        """The database runs in WAL mode with synchronous=FULL (2)."""
        conn = sqlite3.connect(store.path)
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert store._conn.execute("PRAGMA synchronous").fetchone()[0] == 2

    def test_added_entries_survive_reopening(self, store: SQLiteOutbox, tmp_path: Path) -> None:
        """An entry is durable once add() returns: another connection claims it byte-for-byte."""
        store.add([entry(1)])
        store.close()
        again = SQLiteOutbox(tmp_path / "outbox.db")
        [claimed] = again.claim_batch(10, owner="o", lease_s=30)
        assert claimed.entry == entry(1)
        assert claimed.attempts == 0

    def test_add_joins_the_callers_transaction(self, store: SQLiteOutbox) -> None:
        """With connection=, the entry commits or rolls back with the caller's domain write."""
        conn = sqlite3.connect(store.path)
        conn.execute("CREATE TABLE orders (id TEXT)")
        conn.commit()
        conn.execute("INSERT INTO orders VALUES ('o-1')")
        store.add([entry(1)], connection=conn)
        conn.rollback()
        assert store.status().pending == 0
        conn.execute("INSERT INTO orders VALUES ('o-2')")
        store.add([entry(2)], connection=conn)
        conn.commit()
        assert store.status().pending == 1

    def test_wrong_connection_type_is_a_clear_error(self, store: SQLiteOutbox) -> None:
        """Passing something that is not a sqlite3 connection names what is needed."""
        with pytest.raises(ConfigurationError, match="sqlite3.Connection"):
            store.add([entry(1)], connection=object())

    def test_not_a_database_is_a_configuration_error(self, tmp_path: Path) -> None:
        """A file that is not SQLite raises ConfigurationError naming the path."""
        bad = tmp_path / "bad.db"
        bad.write_bytes(b"not a database at all" * 100)
        with pytest.raises(ConfigurationError, match="bad.db"):
            SQLiteOutbox(bad)

    def test_add_joins_an_sqlalchemy_session_transaction(self, store: SQLiteOutbox) -> None:
        """An SQLAlchemy Session works as connection=: the event rolls back with it."""
        import sqlalchemy
        from sqlalchemy.orm import Session

        engine = sqlalchemy.create_engine(f"sqlite:///{store.path}")
        with Session(engine) as session:
            session.execute(sqlalchemy.text("CREATE TABLE IF NOT EXISTS orders (id TEXT)"))
            session.execute(sqlalchemy.text("INSERT INTO orders VALUES ('o-1')"))
            store.add([entry(1)], connection=session)
            session.rollback()
        assert store.status().pending == 0
        with Session(engine) as session:
            session.execute(sqlalchemy.text("CREATE TABLE IF NOT EXISTS orders (id TEXT)"))
            session.execute(sqlalchemy.text("INSERT INTO orders VALUES ('o-2')"))
            store.add([entry(2)], connection=session)
            session.commit()
        assert store.status().pending == 1

    def test_add_first_on_a_fresh_sqlalchemy_connection_commits_with_it(
        self, store: SQLiteOutbox
    ) -> None:
        """An SQLAlchemy Connection whose transaction has not begun yet: the event written
        first is committed by conn.commit() and rolled back by conn.rollback() (before, its
        commit() was a no-op there and the staged event was silently rolled back)."""
        import sqlalchemy

        engine = sqlalchemy.create_engine(f"sqlite:///{store.path}")
        with engine.connect() as conn:
            store.add([entry(1)], connection=conn)
            conn.rollback()
        assert store.status().pending == 0
        with engine.connect() as conn:
            store.add([entry(2)], connection=conn)
            conn.commit()
        assert store.status().pending == 1

    def test_a_file_of_an_older_eventwire_is_refused_clearly(self, tmp_path: Path) -> None:
        """An outbox table without the clock columns is a ConfigurationError saying what to do."""
        path = tmp_path / "old.db"
        with sqlite3.connect(path) as conn:
            conn.execute(
                "CREATE TABLE eventwire_outbox (id INTEGER PRIMARY KEY, event_id TEXT,"
                " event_type TEXT, topic TEXT, key BLOB, value BLOB, headers BLOB,"
                " created_at REAL, state TEXT, attempts INTEGER, next_attempt_at REAL,"
                " lease_owner TEXT, lease_until REAL, last_error TEXT, first_failed_at REAL,"
                " sent_at REAL)"
            )
        with pytest.raises(ConfigurationError, match="older eventwire.*leased_at"):
            SQLiteOutbox(path)

    def test_a_locked_file_fails_add_with_nothing_written(self, tmp_path: Path) -> None:
        """While another process holds the write lock, add() raises OutboxWriteError(False)."""
        store = SQLiteOutbox(tmp_path / "outbox.db", busy_timeout_s=0.1)
        blocker = sqlite3.connect(store.path, isolation_level=None)
        blocker.execute("BEGIN IMMEDIATE")
        with pytest.raises(OutboxWriteError) as info:
            store.add([entry(1)])
        blocker.execute("ROLLBACK")
        assert info.value.possibly_written is False
        assert isinstance(info.value.__cause__, sqlite3.OperationalError)
        assert "same event_id" in str(info.value)
        store.add([entry(1)])
        assert store.status().pending == 1

    @pytest.mark.parametrize(
        ("code", "name", "undone", "written"),
        [
            # SQLite rolled the transaction back itself: nothing was stored
            (13, "SQLITE_FULL", True, False),
            (7, "SQLITE_NOMEM", True, False),
            # an I/O error with no transaction left: maybe after the commit record
            (778, "SQLITE_IOERR_WRITE", True, True),
            # a failed COMMIT that left the transaction open: rolled back here
            (13, "SQLITE_FULL", False, False),
        ],
    )
    def test_a_failed_commit_says_written_only_when_unknown(
        self, tmp_path: Path, code: int, name: str, undone: bool, written: bool
    ) -> None:
        """The disk full at COMMIT (SQLite then rolls back on its own, as seen on a full
        tmpfs): ``possibly_written`` False, "nothing was stored"; unknown only where it is."""
        store = SQLiteOutbox(tmp_path / "outbox.db")
        real = store._conn

        class FailingCommit:
            def __getattr__(self, attr: str) -> object:
                return getattr(real, attr)

            def execute(self, sql: str, *args: object) -> object:
                if sql == "COMMIT":
                    if undone:
                        real.execute("ROLLBACK")
                    exc = sqlite3.OperationalError("database or disk is full")
                    exc.sqlite_errorcode = code  # type: ignore[attr-defined]
                    exc.sqlite_errorname = name  # type: ignore[attr-defined]
                    raise exc
                return real.execute(sql, *args)

        store._db = FailingCommit()  # type: ignore[assignment]
        with pytest.raises(OutboxWriteError) as info:
            store.add([entry(1)])
        store._db = real
        assert info.value.possibly_written is written
        assert not real.in_transaction
        assert store.status().pending == 0
        store.close()

    @pytest.mark.parametrize("factory", [bytes, bytearray])
    def test_a_callers_connection_reading_text_as_bytes_works(
        self, tmp_path: Path, factory: type
    ) -> None:
        """add(connection=...) through a connection with text_factory=bytes was refused as
        "another database (in memory)" (PRAGMA database_list gave b'main'); and a parked
        event re-sent through it would have stayed parked (its state b'parked')."""
        store = SQLiteOutbox(tmp_path / "o.db")
        [parked] = store.add([entry(1)])
        store.park(parked, "E: broken")
        conn = sqlite3.connect(tmp_path / "o.db")
        conn.text_factory = factory
        with conn:
            ids = store.add([entry(1), entry(2)], connection=conn)
        conn.close()
        assert ids[0] == parked
        states = store.row_states(ids)
        assert [states[i].state for i in ids] == ["pending", "pending"]
        assert store.status().parked == 0
        store.close()

    def test_a_conflict_free_add_runs_one_insert_per_entry_and_nothing_else(
        self, store: SQLiteOutbox
    ) -> None:
        """The event-id collision check costs no query: BEGIN, one INSERT per entry, COMMIT."""
        statements: list[str] = []
        store._conn.set_trace_callback(statements.append)
        try:
            store.add([entry(n) for n in range(20)])
        finally:
            store._conn.set_trace_callback(None)
        verbs = [s.split(None, 1)[0].upper() for s in statements]
        assert verbs == ["BEGIN", *["INSERT"] * 20, "COMMIT"]
