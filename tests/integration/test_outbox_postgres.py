"""The PostgreSQL outbox passes the same store tests as SQLite, plus transactions."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from eventwire.outbox.postgres import PostgresOutbox

from ..unit import test_outbox_sqlite as sqlite_tests

entry = sqlite_tests.entry


@pytest.fixture
def pg_store(postgres_dsn: str) -> Iterator[PostgresOutbox]:
    with psycopg.connect(postgres_dsn, autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS eventwire_outbox")
        conn.execute("DROP TABLE IF EXISTS orders")
    store = PostgresOutbox(postgres_dsn)
    yield store
    store.close()


class TestPostgresOutbox(sqlite_tests.OutboxStoreContract):
    """Every SQLite store behaviour, on PostgreSQL."""

    @pytest.fixture
    def store(self, pg_store: PostgresOutbox) -> Any:
        return pg_store

    def test_added_entries_survive_reopening(self, store: Any, postgres_dsn: str) -> None:
        """An entry is durable once add() returns: a new connection claims it byte-for-byte."""
        store.add([entry(1)])
        store.close()
        again = PostgresOutbox(postgres_dsn)
        [claimed] = again.claim_batch(10, owner="o", lease_s=30)
        assert claimed.entry == entry(1)
        again.close()

    def test_wrong_connection_type_is_a_clear_error(self, store: Any) -> None:
        """Passing something that is not a psycopg connection names what is needed."""
        from eventwire import ConfigurationError

        with pytest.raises(ConfigurationError, match="psycopg Connection"):
            store.add([entry(1)], connection=object())

    def test_add_joins_the_callers_transaction(self, store: Any, postgres_dsn: str) -> None:
        """With connection=, the entry commits or rolls back with the caller's domain write."""
        with psycopg.connect(postgres_dsn) as conn:
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

    def test_two_relays_never_claim_the_same_entry(self, store: Any, postgres_dsn: str) -> None:
        """Concurrent claimers (separate connections) split the entries without overlap."""
        import threading

        store.add([entry(n, key=f"k{n}".encode()) for n in range(200)])
        other = PostgresOutbox(postgres_dsn)
        got: list[list[int]] = [[], []]

        def claim(i: int, s: PostgresOutbox) -> None:
            while batch := s.claim_batch(7, owner=f"r{i}", lease_s=60):
                got[i].extend(c.id for c in batch)

        threads = [
            threading.Thread(target=claim, args=(i, s)) for i, s in enumerate((store, other))
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        other.close()
        assert not set(got[0]) & set(got[1])
        assert len(got[0]) + len(got[1]) == 200
