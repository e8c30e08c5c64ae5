"""The outbox store contract: every case runs on SQLite and on PostgreSQL.

Stored times are moved with :meth:`Backend.shift` instead of sleeping, and a
relay host's wall clock is skewed by replacing ``time`` in the store's module
(:func:`skew_host_clock`): a store must not depend on it for leases or retries.
"""

from __future__ import annotations

import inspect
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from eventwire.outbox import OutboxEntry

_real_time = time.time


def entry(n: int, key: bytes | None = b"k", topic: str = "orders") -> OutboxEntry:
    """Entry ``n``: event id ``id-<n>``, value ``v<n>``."""
    return OutboxEntry(
        f"id-{n}", "T", topic, key, f"v{n}".encode(), (("ce_id", f"id-{n}".encode()),)
    )


@dataclass
class Backend:
    """One store technology: how to open stores on one database and poke at its rows."""

    name: str
    module: ModuleType
    opener: Callable[[], Any]
    executor: Callable[[str, tuple[Any, ...]], list[Any]]
    connector: Callable[[], Any]
    opened: list[Any] = field(default_factory=list)

    def open(self) -> Any:
        """A new store (as another relay or process would open it) on the same database."""
        store = self.opener()
        self.opened.append(store)
        return store

    def sql(self, query: str, *params: Any) -> list[Any]:
        """Run ``query`` (``?`` placeholders) in its own committed transaction."""
        return self.executor(query, params)

    def connect(self) -> Any:
        """A DB-API connection of the caller's own, for ``add(connection=...)``."""
        return self.connector()

    def shift(self, entry_id: int, seconds: float) -> None:
        """Move the entry's lease and retry times by ``seconds`` (as if set then)."""
        moved = ", ".join(
            f"{c} = CASE WHEN {c} <> 0 THEN {c} + ? ELSE {c} END"
            for c in ("leased_at", "lease_until", "next_attempt_at", "retry_scheduled_at")
        )
        self.sql(f"UPDATE eventwire_outbox SET {moved} WHERE id = ?", *[seconds] * 4, entry_id)

    def age(self, entry_id: int, seconds: float) -> None:
        """Make the entry ``seconds`` older (its ``created_at``)."""
        self.sql(
            "UPDATE eventwire_outbox SET created_at = created_at - ? WHERE id = ?",
            seconds,
            entry_id,
        )


def _sqlite_backend(tmp_path: Path) -> Backend:
    from eventwire.outbox import sqlite as module

    path = tmp_path / "outbox.db"

    def execute(query: str, params: tuple[Any, ...]) -> list[Any]:
        with sqlite3.connect(path, isolation_level=None) as conn:
            return conn.execute(query, params).fetchall()

    return Backend(
        "sqlite", module, lambda: module.SQLiteOutbox(path), execute, lambda: sqlite3.connect(path)
    )


def _postgres_backend(dsn: str) -> Backend:
    import psycopg

    from eventwire.outbox import postgres as module

    def execute(query: str, params: tuple[Any, ...]) -> list[Any]:
        with psycopg.connect(dsn, autocommit=True) as conn:
            cur = conn.execute(query.replace("?", "%s"), params)
            return cur.fetchall() if cur.description else []

    for table in ("eventwire_outbox", "eventwire_outbox_relays", "orders"):
        execute(f"DROP TABLE IF EXISTS {table}", ())
    return Backend(
        "postgres",
        module,
        lambda: module.PostgresOutbox(dsn),
        execute,
        lambda: psycopg.connect(dsn),
    )


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    """The same case on SQLite and on a private PostgreSQL server."""
    if request.param == "sqlite":
        b = _sqlite_backend(tmp_path)
    else:
        b = _postgres_backend(request.getfixturevalue("postgres_dsn"))
    yield b
    for store in b.opened:
        store.close()


@pytest.fixture
def store(backend: Backend) -> Any:
    """A store on a fresh database."""
    return backend.open()


class _SkewedTime:
    """The ``time`` module, except that ``time()`` is ``offset`` seconds off."""

    def __init__(self, offset: float) -> None:
        self.offset = offset

    def time(self) -> float:
        return _real_time() + self.offset

    def __getattr__(self, name: str) -> Any:
        return getattr(time, name)


def skew_host_clock(monkeypatch: pytest.MonkeyPatch, backend: Backend, offset: float) -> None:
    """From now on, the store module's wall clock (``time.time()``) is ``offset`` s off."""
    monkeypatch.setattr(backend.module, "time", _SkewedTime(offset), raising=False)


def schedule_retry(store: Any, entry_id: int, delay_s: float) -> None:
    """Schedule a retry ``delay_s`` from now, as the relay does.

    Before the fix, the relay passed an absolute time from its own wall clock
    (``mark_retry(id, error, time.time() + delay)``); this does the same with that API.
    """
    if "next_attempt_at" in inspect.signature(store.mark_retry).parameters:
        store.mark_retry(entry_id, "_MSG_TIMED_OUT: test", _real_time() + delay_s)
    else:
        store.mark_retry(entry_id, "_MSG_TIMED_OUT: test", delay_s)


def claim_within(store: Any, timeout: float, **kwargs: Any) -> list[Any]:
    """Claim until something comes back or ``timeout`` passes; what was claimed."""
    deadline = time.monotonic() + timeout
    while True:
        claimed = store.claim_batch(10, owner=kwargs.get("owner", "o"), lease_s=30)
        if claimed or time.monotonic() > deadline:
            return list(claimed)
        time.sleep(0.02)


def ids(claimed: list[Any]) -> list[str]:
    """Event ids of claimed entries, in order."""
    return [c.entry.event_id for c in claimed]


class TestLeases:
    def test_a_claim_is_a_lease_until_it_expires(self, backend: Backend, store: Any) -> None:
        """A claimed entry is not claimed again until its lease is over, then with attempts=1."""
        store.add([entry(1, key=b"a")])
        [first] = store.claim_batch(10, owner="a", lease_s=30)
        assert store.claim_batch(10, owner="b", lease_s=30) == []
        backend.shift(first.id, -31)
        [again] = store.claim_batch(10, owner="b", lease_s=30)
        assert (again.id, again.attempts) == (first.id, 1)

    def test_a_relay_whose_clock_runs_ahead_does_not_take_a_live_lease(
        self, backend: Backend, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A relay host 90 s ahead does not claim an entry whose 60 s lease is 1 s old."""
        one, other = backend.open(), backend.open()
        one.add([entry(1)])
        assert len(one.claim_batch(10, owner="on-time", lease_s=60)) == 1
        skew_host_clock(monkeypatch, backend, 90)
        assert other.claim_batch(10, owner="ahead", lease_s=60) == []

    def test_a_lease_set_before_the_store_clock_stepped_back_is_over(
        self, backend: Backend, store: Any
    ) -> None:
        """A lease whose start lies in the store clock's future (it stepped back) is taken over."""
        store.add([entry(1)])
        [first] = store.claim_batch(10, owner="a", lease_s=60)
        backend.shift(first.id, 3600)
        assert ids(store.claim_batch(10, owner="b", lease_s=60)) == ["id-1"]

    def test_two_relays_never_claim_the_same_entry(self, backend: Backend) -> None:
        """Concurrent claimers (separate stores) split the entries without overlap, in key order."""
        stores = [backend.open(), backend.open()]
        stores[0].add([entry(n, key=f"k{n % 20}".encode()) for n in range(200)])
        got: list[list[Any]] = [[], []]
        claim_order: list[Any] = []
        recording = threading.Lock()  # held across claim + record: the record is claim order

        def claim(i: int) -> None:
            while True:
                with recording:
                    batch = stores[i].claim_batch(7, owner=f"r{i}", lease_s=60)
                    claim_order.extend(batch)
                if not batch:
                    return
                got[i].extend(batch)
                stores[i].mark_sent([c.id for c in batch])

        threads = [threading.Thread(target=claim, args=(i,)) for i in (0, 1)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        mine, theirs = ({c.id for c in g} for g in got)
        assert not mine & theirs
        assert len(mine) + len(theirs) == 200
        assert stores[0].status().sent_retained == 200
        per_key: dict[bytes, list[int]] = {}
        for c in claim_order:
            per_key.setdefault(c.entry.key, []).append(int(c.entry.event_id.removeprefix("id-")))
        assert all(seq == sorted(seq) for seq in per_key.values())


class TestRetries:
    def test_a_held_back_entry_blocks_later_entries_of_its_key(self, store: Any) -> None:
        """While entry 1 of key k waits for its retry, entry 2 of k is not claimable; other keys are."""
        store.add([entry(1, key=b"k"), entry(2, key=b"k"), entry(3, key=b"other")])
        first = store.claim_batch(1, owner="o", lease_s=30)
        assert ids(first) == ["id-1"]
        store.mark_retry(first[0].id, "_MSG_TIMED_OUT: x", 60)
        assert ids(store.claim_batch(10, owner="o", lease_s=30)) == ["id-3"]

    def test_the_retry_schedule_is_stored(self, backend: Backend, store: Any) -> None:
        """A retry delay holds for every store on the database, and ends when its time comes."""
        store.add([entry(1)])
        [first] = store.claim_batch(10, owner="o", lease_s=30)
        store.mark_retry(first.id, "_MSG_TIMED_OUT: slow", 60)
        other = backend.open()
        assert other.claim_batch(10, owner="other", lease_s=30) == []
        backend.shift(first.id, -61)
        [again] = other.claim_batch(10, owner="other", lease_s=30)
        assert again.attempts == 1
        assert again.first_failed_at is not None

    def test_a_retry_goes_out_after_its_delay(self, store: Any) -> None:
        """mark_retry(delay_s=0.3) holds the entry back now and releases it ~0.3 s later."""
        store.add([entry(1)])
        [first] = store.claim_batch(10, owner="o", lease_s=30)
        store.mark_retry(first.id, "_MSG_TIMED_OUT: slow", 0.3)
        assert store.claim_batch(10, owner="o", lease_s=30) == []
        assert ids(claim_within(store, 10)) == ["id-1"]

    def test_a_clock_stepping_back_does_not_stall_retries(
        self, backend: Backend, store: Any, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A retry due in 0.1 s still goes out when the host's wall clock then steps back 1 h."""
        store.add([entry(1)])
        [first] = store.claim_batch(10, owner="o", lease_s=30)
        schedule_retry(store, first.id, 0.1)
        skew_host_clock(monkeypatch, backend, -3600)
        assert ids(claim_within(store, 5)) == ["id-1"]

    def test_a_retry_scheduled_before_the_store_clock_stepped_back_is_due(
        self, backend: Backend, store: Any
    ) -> None:
        """A retry time set while the store clock was 1 h ahead does not wait for that hour."""
        store.add([entry(1)])
        [first] = store.claim_batch(10, owner="o", lease_s=30)
        store.mark_retry(first.id, "_MSG_TIMED_OUT: x", 60)
        backend.shift(first.id, 3600)
        assert ids(store.claim_batch(10, owner="o", lease_s=30)) == ["id-1"]


class TestParked:
    def test_sent_parked_and_status(self, store: Any) -> None:
        """mark_sent and park move entries out of pending; status counts them; requeue undoes park."""
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

    def test_a_requeued_entry_gets_the_full_attempt_budget_again(
        self, backend: Backend, store: Any
    ) -> None:
        """requeue_parked resets attempts, the first failure, and the age max_age_s counts from."""
        store.add([entry(1)])
        for _ in range(3):
            [item] = store.claim_batch(10, owner="o", lease_s=30)
            schedule_retry(store, item.id, 0)
        [item] = store.claim_batch(10, owner="o", lease_s=30)
        assert item.attempts == 3
        store.park(item.id, "_MSG_TIMED_OUT: gave up")
        backend.age(item.id, 7200)
        assert store.requeue_parked([item.id]) == 1
        [again] = store.claim_batch(10, owner="o", lease_s=30)
        assert again.attempts == 0
        assert again.first_failed_at is None
        assert again.age_s < 60

    def test_a_requeued_entry_keeps_its_place_in_its_key(self, store: Any) -> None:
        """A requeued entry goes out before the entries of its key added after it."""
        store.add([entry(1)])
        [item] = store.claim_batch(10, owner="o", lease_s=30)
        store.park(item.id, "MSG_SIZE_TOO_LARGE: x")
        store.add([entry(2)])
        assert store.requeue_parked() == 1
        assert ids(store.claim_batch(10, owner="o", lease_s=30)) == ["id-1", "id-2"]


class TestCleanup:
    def test_cleanup_deletes_only_old_sent_entries(self, store: Any) -> None:
        """cleanup() removes sent entries older than the cut-off; pending and parked stay."""
        store.add([entry(1, key=b"a"), entry(2, key=b"b"), entry(3, key=b"c")])
        claimed = store.claim_batch(10, owner="o", lease_s=30)
        store.mark_sent([claimed[0].id])
        store.park(claimed[1].id, "MSG_SIZE_TOO_LARGE: x")
        assert store.cleanup(3600) == 0
        assert store.cleanup(-1) == 1
        status = store.status()
        assert (status.pending, status.parked, status.sent_retained) == (1, 1, 0)


class TestIdempotentAdd:
    def test_add_returns_the_row_id_of_each_entry(self, store: Any) -> None:
        """add() returns one row id per entry, in order; claims carry the same ids."""
        row_ids = store.add([entry(1, key=b"a"), entry(2, key=b"b")])
        claimed = store.claim_batch(10, owner="o", lease_s=30)
        assert row_ids == [c.id for c in claimed]

    def test_readding_an_unsent_event_stores_it_once(self, store: Any) -> None:
        """Re-adding an event id whose row is still pending returns that row and stores nothing."""
        first = store.add([entry(1)])
        again = store.add([entry(1), entry(2)])
        assert store.status().pending == 2
        assert again[0] == first[0]
        assert ids(store.claim_batch(10, owner="o", lease_s=30)) == ["id-1", "id-2"]

    def test_the_same_event_twice_in_one_batch_is_one_row(self, store: Any) -> None:
        """Duplicates within one add() get the same row id."""
        row_ids = store.add([entry(1), entry(1)])
        assert row_ids[0] == row_ids[1]
        assert store.status().pending == 1

    def test_readding_a_sent_event_is_a_new_row(self, store: Any) -> None:
        """After delivery, a re-send of the same event id is stored (and sent) again."""
        [first] = store.add([entry(1)])
        store.claim_batch(10, owner="o", lease_s=30)
        store.mark_sent([first])
        [again] = store.add([entry(1)])
        assert again != first
        assert store.status().pending == 1

    def test_readding_a_parked_event_requeues_it(self, store: Any) -> None:
        """Re-adding a parked event makes its row pending again, with no attempts."""
        [first] = store.add([entry(1)])
        store.claim_batch(10, owner="o", lease_s=30)
        store.park(first, "MSG_SIZE_TOO_LARGE: x")
        assert store.add([entry(1)]) == [first]
        [again] = store.claim_batch(10, owner="o", lease_s=30)
        assert (again.id, again.attempts) == (first, 0)
        assert store.status().parked == 0

    def test_readding_in_the_callers_transaction(self, backend: Backend, store: Any) -> None:
        """With connection=, a re-add finds the committed row; a rolled-back add leaves none."""
        conn = backend.connect()
        try:
            store.add([entry(1)], connection=conn)
            conn.rollback()
            [first] = store.add([entry(1)])
            assert store.add([entry(1)], connection=conn) == [first]
            conn.commit()
        finally:
            conn.close()
        assert store.status().pending == 1


class TestHeartbeats:
    def test_status_shows_each_relays_heartbeat(self, backend: Backend, store: Any) -> None:
        """heartbeat() is visible to another store's status(): owner, age, last error."""
        store.heartbeat("relay-a")
        store.heartbeat("relay-b", "_TRANSPORT: all brokers down")
        relays = {r.owner: r for r in backend.open().status().relays}
        assert set(relays) == {"relay-a", "relay-b"}
        assert relays["relay-a"].last_error is None
        assert relays["relay-b"].last_error == "_TRANSPORT: all brokers down"
        assert all(0 <= r.age_s < 60 for r in relays.values())

    def test_a_new_error_is_written_at_once(self, store: Any) -> None:
        """A heartbeat with a different error than the last one is never skipped."""
        store.heartbeat("relay-a")
        store.heartbeat("relay-a", "database is locked")
        [relay] = store.status().relays
        assert relay.last_error == "database is locked"
        store.heartbeat("relay-a")
        [relay] = store.status().relays
        assert relay.last_error is None
