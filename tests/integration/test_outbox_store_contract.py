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

from eventwire.outbox import EventIdConflictError, OutboxEntry, RowState

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


class TestClaimAhead:
    """The claim a relay makes while its previous batch is still being delivered."""

    def test_entries_in_flight_hold_no_key_back_and_are_not_claimed_again(self, store: Any) -> None:
        """Passing over the relay's own in-flight entries, the claim takes the later
        entries of their keys, in order, and never the in-flight ones."""
        store.add([entry(1, key=b"a"), entry(2, key=b"b"), entry(3, key=b"a"), entry(4)])
        first = store.claim_batch(2, owner="r", lease_s=30)
        assert ids(first) == ["id-1", "id-2"]
        # a plain claim: the leased entries hold their keys back
        assert ids(store.claim_batch(10, owner="x", lease_s=30)) == ["id-4"]
        nxt = store._claim_passing(10, owner="r", lease_s=30, in_flight=[c.id for c in first])
        assert ids(nxt) == ["id-3"]

    def test_a_held_entry_not_in_flight_still_holds_its_key_back(
        self, backend: Backend, store: Any
    ) -> None:
        """Only the entries named in flight pass: an entry waiting for its retry still
        holds the later entries of its key back."""
        store.add([entry(1, key=b"a"), entry(2, key=b"b"), entry(3, key=b"a"), entry(4, key=b"b")])
        first = store.claim_batch(2, owner="r", lease_s=30)
        store.mark_retry(first[0].id, "_MSG_TIMED_OUT: x", 60, owner="r")
        nxt = store._claim_passing(10, owner="r", lease_s=30, in_flight=[first[1].id])
        assert ids(nxt) == ["id-4"]


class TestRetries:
    def test_a_held_back_entry_blocks_later_entries_of_its_key(self, store: Any) -> None:
        """While entry 1 of key k waits for its retry, entry 2 of k is not claimable; other keys are."""
        store.add([entry(1, key=b"k"), entry(2, key=b"k"), entry(3, key=b"other")])
        first = store.claim_batch(1, owner="o", lease_s=30)
        assert ids(first) == ["id-1"]
        store.mark_retry(first[0].id, "_MSG_TIMED_OUT: x", 60)
        assert ids(store.claim_batch(10, owner="o", lease_s=30)) == ["id-3"]

    def test_a_claim_looks_past_more_held_back_entries_than_a_batch(self, store: Any) -> None:
        """250 leased entries of key k ahead (more than a batch and a page of the claim's
        walk): claim_batch(5) still finds the 5 entries of other keys behind them, and
        the unleased entries of k after them stay back (per-key order)."""
        store.add([entry(n, key=b"k") for n in range(250)])
        assert len(store.claim_batch(250, owner="a", lease_s=60)) == 250
        store.add([entry(n, key=b"k") for n in range(250, 260)])
        store.add([entry(n, key=f"o{n}".encode()) for n in range(260, 270)])
        claimed = store.claim_batch(5, owner="b", lease_s=60)
        assert ids(claimed) == [f"id-{n}" for n in range(260, 265)]
        assert ids(store.claim_batch(100, owner="b", lease_s=60)) == [
            f"id-{n}" for n in range(265, 270)
        ]

    def test_mark_retry_many_releases_each_entry_as_mark_retry_does(self, store: Any) -> None:
        """mark_retry_many (one transaction for a relay round): a counted retry waits for its
        delay with its error kept; an uncounted one is claimable at once with its attempt
        taken back; with owner= a row leased to another relay is left alone."""
        store.add([entry(1, key=b"a"), entry(2, key=b"b"), entry(3, key=b"c")])
        one, two, three = store.claim_batch(10, owner="A", lease_s=60)
        store.mark_retry_many(
            [(one.id, "_MSG_TIMED_OUT: x", 60, True), (two.id, "_HELD_BACK: y", 0, False)],
            owner="A",
        )
        assert store.row_states([one.id])[one.id] == RowState("pending", "_MSG_TIMED_OUT: x")
        [again] = store.claim_batch(10, owner="B", lease_s=60)
        assert (again.entry.event_id, again.attempts) == ("id-2", 0)
        store.mark_retry_many([(three.id, "_MSG_TIMED_OUT: late", 0, True)], owner="B")
        assert store.claim_batch(10, owner="B", lease_s=60) == []  # id-3: still A's lease
        assert store.row_states([three.id])[three.id] == RowState("pending", None)

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


class TestUncountedRelease:
    def test_a_release_with_counted_false_does_not_use_up_attempts(self, store: Any) -> None:
        """Claimed and released 4 times with counted=False (never tried): attempts stays 0,
        no first failure time; counted releases make attempts grow."""
        store.add([entry(1)])
        for _ in range(4):
            [item] = store.claim_batch(10, owner="o", lease_s=30)
            store.mark_retry(
                item.id, "_HELD_BACK: an earlier event of its key failed", 0, counted=False
            )
        [item] = store.claim_batch(10, owner="o", lease_s=30)
        assert (item.attempts, item.first_failed_at) == (0, None)
        for n in range(1, 4):
            store.mark_retry(item.id, "_MSG_TIMED_OUT: x", 0, counted=True)
            [item] = store.claim_batch(10, owner="o", lease_s=30)
            assert item.attempts == n
        assert item.first_failed_at is not None

    def test_an_uncounted_release_never_takes_attempts_below_zero(self, store: Any) -> None:
        """counted=False on an entry with no claim counted leaves attempts at 0."""
        [row] = store.add([entry(1)])
        store.mark_retry(row, "_HELD_BACK: x", 0, counted=False)
        store.mark_retry(row, "_HELD_BACK: x", 0, counted=False)
        [item] = store.claim_batch(10, owner="o", lease_s=30)
        assert item.attempts == 0

    def test_an_uncounted_release_keeps_an_earlier_first_failure(self, store: Any) -> None:
        """A counted failure's first_failed_at survives a later uncounted release."""
        store.add([entry(1)])
        [item] = store.claim_batch(10, owner="o", lease_s=30)
        store.mark_retry(item.id, "_MSG_TIMED_OUT: x", 0)
        [item] = store.claim_batch(10, owner="o", lease_s=30)
        first_failed_at = item.first_failed_at
        store.mark_retry(item.id, "_HELD_BACK: x", 0, counted=False)
        [item] = store.claim_batch(10, owner="o", lease_s=30)
        assert (item.attempts, item.first_failed_at) == (1, first_failed_at)


def lease_owner(backend: Backend, row_id: int) -> Any:
    """The ``lease_owner`` column of a row."""
    [(owner,)] = backend.sql("SELECT lease_owner FROM eventwire_outbox WHERE id = ?", row_id)
    return owner


class TestLeaseOwnership:
    def test_a_relay_that_lost_its_lease_cannot_retry_or_park_the_entry(
        self, backend: Backend
    ) -> None:
        """Relay A's lease expired and relay B claimed the entry: A's mark_retry/park(owner=A)
        change nothing (B's lease intact, pending, not parked; park returns False)."""
        relay_a, relay_b = backend.open(), backend.open()
        [row] = relay_a.add([entry(1)])
        relay_a.claim_batch(10, owner="A", lease_s=30)
        backend.shift(row, -31)
        [taken] = relay_b.claim_batch(10, owner="B", lease_s=30)
        assert taken.id == row
        relay_a.mark_retry(row, "_MSG_TIMED_OUT: late", 0, owner="A")
        relay_a.mark_retry(row, "_HELD_BACK: late", 0, counted=False, owner="A")
        assert relay_a.park(row, "MSG_SIZE_TOO_LARGE: late", owner="A") is False
        assert lease_owner(backend, row) == "B"
        assert relay_a.row_states([row]) == {row: RowState("pending", None)}
        assert relay_a.claim_batch(10, owner="C", lease_s=30) == []  # B's lease holds
        assert relay_a.status().parked == 0
        [(attempts,)] = backend.sql("SELECT attempts FROM eventwire_outbox WHERE id = ?", row)
        assert attempts == 2  # A's claim and B's, neither undone by A

    def test_a_late_park_does_not_turn_a_sent_row_into_a_parked_one(self, backend: Backend) -> None:
        """After B's mark_sent, A's park(owner=A) returns False and the row stays sent."""
        relay_a, relay_b = backend.open(), backend.open()
        [row] = relay_a.add([entry(1)])
        relay_a.claim_batch(10, owner="A", lease_s=30)
        backend.shift(row, -31)
        relay_b.claim_batch(10, owner="B", lease_s=30)
        relay_b.mark_sent([row])
        assert relay_a.park(row, "MSG_SIZE_TOO_LARGE: late", owner="A") is False
        relay_a.mark_retry(row, "_MSG_TIMED_OUT: late", 0, owner="A")
        assert relay_a.row_states([row]) == {row: RowState("sent", None)}
        assert relay_a.status().sent_retained == 1

    def test_the_lease_holder_retries_and_parks(self, backend: Backend, store: Any) -> None:
        """mark_retry/park with the owner holding the lease apply; park returns True."""
        [row] = store.add([entry(1)])
        store.claim_batch(10, owner="A", lease_s=30)
        store.mark_retry(row, "_MSG_TIMED_OUT: x", 60, owner="A")
        assert lease_owner(backend, row) is None
        assert store.claim_batch(10, owner="A", lease_s=30) == []  # waiting for its retry
        backend.shift(row, -61)
        store.claim_batch(10, owner="A", lease_s=30)
        assert store.park(row, "MSG_SIZE_TOO_LARGE: x", owner="A") is True
        assert store.row_states([row]) == {row: RowState("parked", "MSG_SIZE_TOO_LARGE: x")}

    def test_an_expired_lease_nobody_took_over_is_still_the_owners(
        self, backend: Backend, store: Any
    ) -> None:
        """A relay whose lease expired, with no one claiming since, may still park the entry."""
        [row] = store.add([entry(1)])
        store.claim_batch(10, owner="A", lease_s=30)
        backend.shift(row, -31)
        assert store.park(row, "MSG_SIZE_TOO_LARGE: x", owner="A") is True

    def test_without_owner_park_and_retry_are_unconditional(
        self, backend: Backend, store: Any
    ) -> None:
        """owner=None (the CLI, older relays): park applies whoever holds the lease."""
        [one, two] = store.add([entry(1, key=b"a"), entry(2, key=b"b")])
        store.claim_batch(10, owner="B", lease_s=30)
        store.mark_retry(one, "_MSG_TIMED_OUT: x", 0)
        assert lease_owner(backend, one) is None
        assert store.park(two, "MSG_SIZE_TOO_LARGE: x") is True
        assert store.status().parked == 1


class TestRowStates:
    def test_a_delivered_row_has_no_last_error(self, store: Any) -> None:
        """mark_sent clears the error of an earlier failed attempt."""
        [row] = store.add([entry(1)])
        store.claim_batch(10, owner="o", lease_s=30)
        store.mark_retry(row, "_MSG_TIMED_OUT: x", 0)
        assert store.row_states([row]) == {row: RowState("pending", "_MSG_TIMED_OUT: x")}
        store.claim_batch(10, owner="o", lease_s=30)
        store.mark_sent([row])
        assert store.row_states([row]) == {row: RowState("sent", None)}

    def test_a_dead_lettered_row_is_done_and_reported_as_dead_lettered(
        self, backend: Backend, store: Any
    ) -> None:
        """mark_sent(dead_lettered="CODE: reason"): the row is done (counted as sent, never
        claimed again), last_error is "dead-lettered: CODE: reason", and row_states says
        dead_lettered with the reason."""
        [row, other] = store.add([entry(1, key=b"a"), entry(2, key=b"b")])
        store.claim_batch(10, owner="o", lease_s=30)
        store.mark_sent([row], dead_lettered="TOPIC_AUTHORIZATION_FAILED: denied")
        store.mark_sent([other])
        assert store.row_states([row, other]) == {
            row: RowState("dead_lettered", "TOPIC_AUTHORIZATION_FAILED: denied"),
            other: RowState("sent", None),
        }
        [(error,)] = backend.sql("SELECT last_error FROM eventwire_outbox WHERE id = ?", row)
        assert error == "dead-lettered: TOPIC_AUTHORIZATION_FAILED: denied"
        assert store.status().sent_retained == 2
        assert store.claim_batch(10, owner="o", lease_s=30) == []

    def test_row_states_reports_each_row_another_process_wrote(
        self, backend: Backend, store: Any
    ) -> None:
        """Pending, parked, sent and dead-lettered rows as their states; a cleaned-up id
        (and an unknown one) is absent; another store sees the same."""
        rows = store.add([entry(n, key=f"k{n}".encode()) for n in range(5)])
        store.claim_batch(10, owner="o", lease_s=30)
        store.mark_retry(rows[0], "_MSG_TIMED_OUT: x", 60)
        store.park(rows[1], "MSG_SIZE_TOO_LARGE: x")
        store.mark_sent([rows[2]])
        store.mark_sent([rows[3]], dead_lettered="UNKNOWN_TOPIC_OR_PART: gone")
        store.mark_sent([rows[4]])
        backend.sql("UPDATE eventwire_outbox SET sent_at = sent_at - 7200 WHERE id = ?", rows[4])
        assert store.cleanup(3600) == 1
        expected = {
            rows[0]: RowState("pending", "_MSG_TIMED_OUT: x"),
            rows[1]: RowState("parked", "MSG_SIZE_TOO_LARGE: x"),
            rows[2]: RowState("sent", None),
            rows[3]: RowState("dead_lettered", "UNKNOWN_TOPIC_OR_PART: gone"),
        }
        assert store.row_states([*rows, 10_000]) == expected
        assert backend.open().row_states(rows) == expected

    def test_row_states_of_thousands_of_ids(self, store: Any) -> None:
        """Thousands of ids (more than one query's chunk, with repeats) in one call."""
        rows = store.add([entry(n, key=f"k{n % 50}".encode()) for n in range(1200)])
        store.mark_sent(rows[:700])
        states = store.row_states([*rows, *rows[:10], *range(100_000, 100_600)])
        assert set(states) == set(rows)
        assert [states[r].state for r in rows] == ["sent"] * 700 + ["pending"] * 500

    def test_row_states_of_no_ids_is_empty(self, store: Any) -> None:
        """No ids: an empty dict."""
        assert store.row_states([]) == {}

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


def other_event(n: int, differs: str) -> OutboxEntry:
    """Entry ``n`` with its topic, key or value changed (``differs``); the same event id."""
    same = entry(n)
    return OutboxEntry(
        same.event_id,
        same.event_type,
        "payments" if differs == "topic" else same.topic,
        {"key": b"secret-key", "null key": None}.get(differs, same.key),
        b"secret-value" if differs == "value" else same.value,
        same.headers,
    )


class TestEventIdConflicts:
    @pytest.mark.parametrize(
        ("differs", "field"),
        [("topic", "topic"), ("key", "key"), ("null key", "key"), ("value", "value")],
    )
    def test_another_event_under_an_unsent_event_id_is_refused(
        self, store: Any, differs: str, field: str
    ) -> None:
        """An entry whose event id has a pending row with another topic, key or value raises
        EventIdConflictError (naming the event id and the field, not the values), and
        nothing of that add() is stored."""
        [first] = store.add([entry(1)])
        with pytest.raises(EventIdConflictError) as raised:
            store.add([entry(2), other_event(1, differs), entry(3)])
        err = raised.value
        assert (err.event_id, err.row_id, err.differing) == ("id-1", first, (field,))
        assert isinstance(err, ValueError)
        message = str(err)
        assert "'id-1'" in message and field in message
        assert "secret" not in message and "payments" not in message
        assert "new event_id" in message
        assert store.status().pending == 1
        assert ids(store.claim_batch(10, owner="o", lease_s=30)) == ["id-1"]

    def test_every_differing_field_is_named(self, store: Any) -> None:
        """A re-add differing in topic, key and value names all three."""
        store.add([entry(1)])
        changed = OutboxEntry("id-1", "T", "payments", b"other", b"other", ())
        with pytest.raises(EventIdConflictError) as raised:
            store.add([changed])
        assert raised.value.differing == ("topic", "key", "value")

    def test_a_resend_with_other_headers_is_the_same_event(self, store: Any) -> None:
        """Headers are not compared (ce_time differs between re-sends): same row id."""
        [first] = store.add([entry(1)])
        resent = OutboxEntry("id-1", "T", "orders", b"k", b"v1", (("ce_time", b"later"),))
        assert store.add([resent]) == [first]
        assert store.status().pending == 1

    def test_a_resend_of_an_event_with_a_null_key_is_the_same_event(self, store: Any) -> None:
        """NULL keys compare equal: re-adding an unkeyed event returns its row."""
        [first] = store.add([entry(1, key=None)])
        assert store.add([entry(1, key=None)]) == [first]
        with pytest.raises(EventIdConflictError):
            store.add([entry(1, key=b"")])  # an empty key is not a null key

    def test_a_conflict_with_a_parked_row_leaves_it_parked(self, store: Any) -> None:
        """A different event under a parked row's event id is refused; the row is not requeued."""
        [first] = store.add([entry(1)])
        store.claim_batch(10, owner="o", lease_s=30)
        store.park(first, "MSG_SIZE_TOO_LARGE: x")
        with pytest.raises(EventIdConflictError) as raised:
            store.add([other_event(1, "value")])
        assert raised.value.row_id == first
        assert store.row_states([first]) == {first: RowState("parked", "MSG_SIZE_TOO_LARGE: x")}

    def test_two_events_with_one_event_id_in_one_add_are_refused(self, store: Any) -> None:
        """Two entries of one add() sharing an event id but differing: refused, none stored."""
        with pytest.raises(EventIdConflictError) as raised:
            store.add([entry(2), entry(1), other_event(1, "key")])
        assert (raised.value.event_id, raised.value.row_id) == ("id-1", None)
        assert raised.value.differing == ("key",)
        assert store.status().pending == 0

    def test_a_conflict_in_the_callers_transaction_is_raised_for_them_to_roll_back(
        self, backend: Backend, store: Any
    ) -> None:
        """With connection=, the error is raised; after the caller's rollback nothing is stored."""
        [first] = store.add([entry(1)])
        conn = backend.connect()
        try:
            with pytest.raises(EventIdConflictError):
                store.add([entry(2), other_event(1, "value")], connection=conn)
            conn.rollback()
        finally:
            conn.close()
        assert store.row_states([first]) == {first: RowState("pending", None)}
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

    def test_forget_relay_removes_only_that_relays_heartbeat(
        self, backend: Backend, store: Any
    ) -> None:
        """forget_relay() (a relay stopped on purpose) deletes its heartbeat, and a later
        heartbeat of the same owner is written again (not skipped as a repeat)."""
        store.heartbeat("relay-a")
        store.heartbeat("relay-b")
        store.forget_relay("relay-a")
        assert [r.owner for r in backend.open().status().relays] == ["relay-b"]
        store.heartbeat("relay-a")
        assert {r.owner for r in backend.open().status().relays} == {"relay-a", "relay-b"}

    def test_a_new_error_is_written_at_once(self, store: Any) -> None:
        """A heartbeat with a different error than the last one is never skipped."""
        store.heartbeat("relay-a")
        store.heartbeat("relay-a", "database is locked")
        [relay] = store.status().relays
        assert relay.last_error == "database is locked"
        store.heartbeat("relay-a")
        [relay] = store.status().relays
        assert relay.last_error is None
