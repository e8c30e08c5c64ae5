"""What only the PostgreSQL outbox does: transactions, commit order, reconnects.

The behaviour both stores share is in test_outbox_store_contract.py.
"""

from __future__ import annotations

import os
import pickle
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import psycopg
import pytest

from eventwire import ConfigurationError
from eventwire.outbox.postgres import PostgresOutbox
from tests.forked import in_forked_child

from .test_outbox_store_contract import entry, ids


@pytest.fixture
def admin(postgres_dsn: str) -> Iterator[psycopg.Connection[Any]]:
    """An autocommit connection on a database without outbox tables."""
    with psycopg.connect(postgres_dsn, autocommit=True) as conn:
        for table in ("eventwire_outbox", "eventwire_outbox_relays", "orders"):
            conn.execute(f"DROP TABLE IF EXISTS {table}")
        yield conn


@pytest.fixture
def store(admin: psycopg.Connection[Any], postgres_dsn: str) -> Iterator[PostgresOutbox]:
    """A store on a fresh outbox table."""
    store = PostgresOutbox(postgres_dsn)
    yield store
    store.close()


def backend_pid(store: PostgresOutbox) -> int:
    """The server process of the store's connection (connecting if it has none)."""
    run = getattr(store, "_run", None)
    if run is None:  # the store before the fix: one connection for its life
        old_pid: int = store._conn.info.backend_pid  # type: ignore[union-attr]
        return old_pid
    pid = run(lambda conn: conn.info.backend_pid)
    assert isinstance(pid, int)
    return pid


def wait_for(admin: psycopg.Connection[Any], query: str, *params: Any) -> Any:
    """Poll ``query`` until it returns a row (10 s at most); its first column."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        row = admin.execute(query, params).fetchone()
        if row is not None:
            return row[0]
        time.sleep(0.02)
    raise AssertionError(f"nothing from {query!r} within 10 s")


def test_a_store_cannot_be_pickled_and_says_to_open_it_by_dsn(
    store: PostgresOutbox, postgres_dsn: str
) -> None:
    """Sending it to another process (multiprocessing spawn) explains itself; no DSN shown."""
    with pytest.raises(TypeError, match=r"^PostgresOutbox cannot be pickled") as caught:
        pickle.dumps(store)
    assert "PostgresOutbox(dsn)" in str(caught.value)
    assert postgres_dsn not in str(caught.value)


def test_added_entries_survive_reopening(store: PostgresOutbox, postgres_dsn: str) -> None:
    """An entry is durable once add() returns: a new connection claims it byte-for-byte."""
    store.add([entry(1)])
    store.close()
    again = PostgresOutbox(postgres_dsn)
    [claimed] = again.claim_batch(10, owner="o", lease_s=30)
    assert claimed.entry == entry(1)
    again.close()


def test_wrong_connection_type_is_a_clear_error(store: PostgresOutbox) -> None:
    """Passing something that is not a psycopg connection names what is needed."""
    with pytest.raises(ConfigurationError, match="psycopg Connection"):
        store.add([entry(1)], connection=object())


def test_add_joins_the_callers_transaction(store: PostgresOutbox, postgres_dsn: str) -> None:
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


def test_a_table_of_an_older_eventwire_is_refused_clearly(
    admin: psycopg.Connection[Any], postgres_dsn: str
) -> None:
    """An outbox table without the xid and clock columns is a ConfigurationError saying what to do."""
    admin.execute(
        "CREATE TABLE eventwire_outbox (id BIGSERIAL PRIMARY KEY, event_id TEXT,"
        " event_type TEXT, topic TEXT, key BYTEA, value BYTEA, headers BYTEA,"
        " created_at DOUBLE PRECISION, state TEXT, attempts INTEGER,"
        " next_attempt_at DOUBLE PRECISION, lease_owner TEXT, lease_until DOUBLE PRECISION,"
        " last_error TEXT, first_failed_at DOUBLE PRECISION, sent_at DOUBLE PRECISION)"
    )
    with pytest.raises(ConfigurationError, match="older eventwire.*xid"):
        PostgresOutbox(postgres_dsn)


class TestCommitOrder:
    def test_a_row_that_commits_later_is_not_overtaken_on_its_key(
        self, store: PostgresOutbox, postgres_dsn: str
    ) -> None:
        """T1 adds A, T2 adds B (same key) and commits first: B waits for T1; then A, B."""
        with psycopg.connect(postgres_dsn) as t1, psycopg.connect(postgres_dsn) as t2:
            store.add([entry(1, key=b"k")], connection=t1)  # A: the lower id
            store.add([entry(2, key=b"k")], connection=t2)  # B
            t2.commit()
            assert store.claim_batch(10, owner="o", lease_s=30) == []
            t1.commit()
        assert ids(store.claim_batch(10, owner="o", lease_s=30)) == ["id-1", "id-2"]

    def test_claims_follow_transaction_order_not_id_order(
        self, store: PostgresOutbox, postgres_dsn: str
    ) -> None:
        """A row whose transaction began first goes out first, although its id is higher."""
        with psycopg.connect(postgres_dsn) as t1, psycopg.connect(postgres_dsn) as t2:
            t1.execute("SELECT pg_current_xact_id()")  # T1 takes its transaction id first
            store.add([entry(2, key=b"k")], connection=t2)  # lower id, later transaction
            store.add([entry(1, key=b"k")], connection=t1)
            t1.commit()
            t2.commit()
        assert ids(store.claim_batch(10, owner="o", lease_s=30)) == ["id-1", "id-2"]


class TestClaimKeepsKeyOrderAroundLockedRows:
    def test_a_row_locked_elsewhere_holds_back_the_later_rows_of_its_key(
        self, store: PostgresOutbox, postgres_dsn: str
    ) -> None:
        """While another transaction holds the lock of pending entry 1 of key k (e.g. a
        relay whose lease expired, releasing it for a retry), a claim skips entry 1 and
        must not take entry 2 of k either; entry 3 of another key goes out. Once the
        lock is gone, 1 and then 2 are claimed, with no attempt counted for 2."""
        row1, _, _ = store.add([entry(1, key=b"k"), entry(2, key=b"k"), entry(3, key=b"other")])
        with psycopg.connect(postgres_dsn) as locker:
            locker.execute("SELECT 1 FROM eventwire_outbox WHERE id = %s FOR UPDATE", (row1,))
            assert ids(store.claim_batch(10, owner="a", lease_s=60)) == ["id-3"]
            locker.rollback()
        again = store.claim_batch(10, owner="a", lease_s=60)
        assert ids(again) == ["id-1", "id-2"]
        assert [c.attempts for c in again] == [0, 0]


class TestWriteErrors:
    def test_a_connection_lost_during_commit_is_possibly_written(
        self, store: PostgresOutbox, admin: psycopg.Connection[Any]
    ) -> None:
        """The backend killed while COMMIT runs: OutboxWriteError(possibly_written=True), cause kept."""
        admin.execute(
            "CREATE OR REPLACE FUNCTION eventwire_test_slow_commit() RETURNS trigger"
            " LANGUAGE plpgsql AS $$ BEGIN PERFORM pg_sleep(60); RETURN NULL; END $$"
        )
        admin.execute(
            "CREATE CONSTRAINT TRIGGER slow_commit AFTER INSERT ON eventwire_outbox"
            " DEFERRABLE INITIALLY DEFERRED FOR EACH ROW"
            " EXECUTE FUNCTION eventwire_test_slow_commit()"
        )
        pid = backend_pid(store)
        raised: list[BaseException] = []

        def write() -> None:
            try:
                store.add([entry(1)])
            except Exception as exc:
                raised.append(exc)

        writer = threading.Thread(target=write)
        writer.start()
        wait_for(
            admin,
            "SELECT pid FROM pg_stat_activity WHERE pid = %s AND query = 'COMMIT'"
            " AND wait_event = 'PgSleep'",
            pid,
        )
        admin.execute("SELECT pg_terminate_backend(%s, 10000)", (pid,))
        writer.join(30)
        [exc] = raised
        assert type(exc).__name__ == "OutboxWriteError"
        assert exc.possibly_written is True  # type: ignore[attr-defined]
        assert isinstance(exc.__cause__, psycopg.OperationalError)
        assert "re-send with the same event_id" in str(exc)
        admin.execute("DROP TRIGGER slow_commit ON eventwire_outbox")
        store.add([entry(1)])  # the re-send the message asks for
        store.add([entry(1)])  # and once more: still one row
        assert store.status().pending == 1

    def test_a_commit_the_server_rejects_is_not_written(
        self, store: PostgresOutbox, admin: psycopg.Connection[Any]
    ) -> None:
        """A COMMIT the server answers with an error (deferred check): possibly_written=False."""
        admin.execute(
            "CREATE OR REPLACE FUNCTION eventwire_test_reject() RETURNS trigger"
            " LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'rejected at commit'; END $$"
        )
        admin.execute(
            "CREATE CONSTRAINT TRIGGER reject AFTER INSERT ON eventwire_outbox"
            " DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION eventwire_test_reject()"
        )
        with pytest.raises(Exception, match="rejected at commit") as info:
            store.add([entry(1)])
        assert type(info.value).__name__ == "OutboxWriteError"
        assert info.value.possibly_written is False  # type: ignore[attr-defined]
        admin.execute("DROP TRIGGER reject ON eventwire_outbox")
        assert store.status().pending == 0

    def test_concurrent_adds_of_one_event_store_one_row(
        self, store: PostgresOutbox, admin: psycopg.Connection[Any], postgres_dsn: str
    ) -> None:
        """A second add of an event waits for the first's transaction, then returns its row."""
        other = PostgresOutbox(postgres_dsn)
        other_pid = backend_pid(other)
        got: list[list[int]] = []
        with psycopg.connect(postgres_dsn) as caller:
            first = store.add([entry(1)], connection=caller)
            adder = threading.Thread(target=lambda: got.append(other.add([entry(1)])))
            adder.start()
            wait_for(
                admin,
                "SELECT pid FROM pg_stat_activity WHERE pid = %s AND wait_event_type = 'Lock'",
                other_pid,
            )
            caller.commit()
        adder.join(10)
        other.close()
        assert got == [first]
        assert store.status().pending == 1


#: One call of every store method, each needing the connection.
CALLS: dict[str, Callable[[PostgresOutbox], object]] = {
    "add": lambda s: s.add([entry(9, key=b"other")]),
    "claim_batch": lambda s: s.claim_batch(10, owner="o", lease_s=30),
    "mark_sent": lambda s: s.mark_sent([1]),
    "mark_retry": lambda s: s.mark_retry(1, "_MSG_TIMED_OUT: x", 0),
    "park": lambda s: s.park(1, "MSG_SIZE_TOO_LARGE: x"),
    "requeue_parked": lambda s: s.requeue_parked(),
    "list_parked": lambda s: s.list_parked(),
    "cleanup": lambda s: s.cleanup(3600),
    "heartbeat": lambda s: s.heartbeat("relay", "boom"),
    "status": lambda s: s.status(),
}


class TestReconnects:
    @pytest.mark.parametrize("method", sorted(CALLS))
    def test_every_call_survives_a_terminated_backend(
        self, store: PostgresOutbox, admin: psycopg.Connection[Any], method: str
    ) -> None:
        """After pg_terminate_backend on the store's connection, the next call just works."""
        store.add([entry(1)])
        admin.execute("SELECT pg_terminate_backend(%s, 10000)", (backend_pid(store),))
        CALLS[method](store)
        assert store.status().pending >= 0

    def test_dead_peer_timeouts_are_on_unless_the_dsn_sets_them(self, postgres_dsn: str) -> None:
        """The store's connections get keepalives and tcp_user_timeout; the DSN's own values win."""
        plain = PostgresOutbox(postgres_dsn)
        tuned = PostgresOutbox(f"{postgres_dsn}?tcp_user_timeout=5000&connect_timeout=3")
        try:
            plain_dsn = plain._run(lambda conn: conn.info.dsn)
            tuned_dsn = tuned._run(lambda conn: conn.info.dsn)
        finally:
            plain.close()
            tuned.close()
        assert "tcp_user_timeout=60000" in plain_dsn
        assert "keepalives_idle=30" in plain_dsn
        assert "tcp_user_timeout=5000" in tuned_dsn
        assert "connect_timeout=3" in tuned_dsn

    def test_the_store_survives_a_database_restart(self) -> None:
        """After a restart calls just work; while down they raise (add: OutboxWriteError(False))."""
        from eventwire import _errors
        from eventwire_devkit.postgres import LocalPostgres

        with LocalPostgres() as server:
            store = PostgresOutbox(f"{server.dsn}?connect_timeout=2")
            try:
                store.add([entry(1)])
                server.restart()
                assert store.status().pending == 1
                server.stop()
                with pytest.raises(psycopg.OperationalError):
                    store.status()
                with pytest.raises(Exception, match="nothing was stored") as info:
                    store.add([entry(2)])
                assert isinstance(info.value, getattr(_errors, "OutboxWriteError", ()))
                assert info.value.possibly_written is False  # type: ignore[attr-defined]
                server.resume()
                store.add([entry(2)])
                assert ids(store.claim_batch(10, owner="o", lease_s=30)) == ["id-1", "id-2"]
            finally:
                store.close()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
class TestInAForkedChild:
    """A store inherited through ``os.fork()`` (e.g. created before a server pre-forks)."""

    def test_parent_and_child_work_at_once_each_on_its_own_session(
        self, store: PostgresOutbox
    ) -> None:
        """They would otherwise share one socket and read each other's answers."""
        parents_session = backend_pid(store)

        def child() -> dict[str, Any]:
            for n in range(50):
                store.add([entry(1000 + n)])
                store.status()
            return {"session": backend_pid(store)}

        with ThreadPoolExecutor(1) as pool:  # forks while the parent's loop runs
            forked = pool.submit(in_forked_child, child)
            for n in range(50):
                store.add([entry(n)])
                store.status()
            answer = forked.result(60)
        assert answer["session"] != parents_session
        # the parent's session survived the child's exit (nothing closed it from there)
        assert backend_pid(store) == parents_session
        assert store.status().pending == 100
