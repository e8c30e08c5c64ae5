"""The SQLite outbox store."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import pytest

from eventwire import ConfigurationError
from eventwire.outbox import OutboxEntry, SQLiteOutbox


def entry(n: int, key: bytes | None = b"k", topic: str = "orders") -> OutboxEntry:
    return OutboxEntry(
        f"id-{n}", "T", topic, key, f"v{n}".encode(), (("ce_id", f"id-{n}".encode()),)
    )


@pytest.fixture
def store(tmp_path: Path) -> SQLiteOutbox:
    return SQLiteOutbox(tmp_path / "outbox.db")


class OutboxStoreContract:
    """Behaviour every outbox store must have (subclassed per backend)."""

    def test_claims_are_leases(self, store: SQLiteOutbox) -> None:
        """A claimed entry is not claimed again until its lease expires."""
        store.add([entry(1, key=b"a")])
        assert len(store.claim_batch(10, owner="a", lease_s=0.2)) == 1
        assert store.claim_batch(10, owner="b", lease_s=30) == []
        time.sleep(0.3)
        [again] = store.claim_batch(10, owner="b", lease_s=30)
        assert again.attempts == 1

    def test_a_held_back_entry_blocks_later_entries_of_its_key(self, store: SQLiteOutbox) -> None:
        """While entry 1 of key k waits for its retry, entry 2 of k is not claimable; other keys are."""
        store.add([entry(1, key=b"k"), entry(2, key=b"k"), entry(3, key=b"other")])
        first = store.claim_batch(1, owner="o", lease_s=30)
        assert [c.entry.event_id for c in first] == ["id-1"]
        store.mark_retry(first[0].id, "_MSG_TIMED_OUT", time.time() + 60)
        assert [c.entry.event_id for c in store.claim_batch(10, owner="o", lease_s=30)] == ["id-3"]

    def test_sent_parked_and_status(self, store: SQLiteOutbox) -> None:
        """mark_sent and park move entries out of pending; status counts them."""
        store.add([entry(n, key=f"k{n}".encode()) for n in range(3)])
        claimed = store.claim_batch(10, owner="o", lease_s=30)
        store.mark_sent([claimed[0].id])
        store.park(claimed[1].id, "MSG_SIZE_TOO_LARGE: too big")
        status = store.status()
        assert (status.pending, status.parked, status.sent_retained) == (1, 1, 1)
        assert status.oldest_pending_age_s is not None
        [(parked, error)] = store.list_parked()
        assert parked.entry.event_id == "id-1"
        assert "MSG_SIZE_TOO_LARGE" in error
        assert store.requeue_parked() == 1
        assert store.status().parked == 0

    def test_cleanup_deletes_only_old_sent_entries(self, store: SQLiteOutbox) -> None:
        """cleanup() removes sent entries older than the cut-off and nothing else."""
        store.add([entry(1, key=b"a"), entry(2, key=b"b")])
        claimed = store.claim_batch(10, owner="o", lease_s=30)
        store.mark_sent([claimed[0].id])
        assert store.cleanup(3600) == 0
        assert store.cleanup(-1) == 1
        assert store.status().pending == 1


class TestSQLiteOutbox(OutboxStoreContract):
    """The contract on SQLite, plus what is SQLite-specific."""

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
