"""The relay claims its next batch while the acks of the last one come in.

On SQLite (both stores claim ahead) and the memory transport. In its loops
(``run``, ``drain``) the relay also leaves a full round's acked entries for the
next claim ahead to mark sent, in the same transaction.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import pytest

from eventwire.outbox import OutboxEntry, OutboxRelay, SQLiteOutbox
from eventwire.outbox.base import ClaimedEntry
from eventwire.transports.base import TransportQueueFull
from eventwire.transports.memory import MemoryTransport


def entry(n: int, key: str) -> OutboxEntry:
    return OutboxEntry(
        f"id-{n}", "T", "orders", key.encode(), f"v{n}".encode(), (("ce_id", f"id-{n}".encode()),)
    )


@pytest.fixture
def store(tmp_path: Path) -> SQLiteOutbox:
    return SQLiteOutbox(tmp_path / "outbox.db")


def states(store: SQLiteOutbox) -> dict[str, str]:
    rows = store._conn.execute("SELECT event_id, state FROM eventwire_outbox").fetchall()
    return dict(rows)


def assert_first_batch_sent_second_pending(store: SQLiteOutbox, relay: OutboxRelay) -> None:
    """id-1 and id-2 are marked sent (and counted); id-3 and id-4 still wait."""
    assert states(store) == {"id-1": "sent", "id-2": "sent", "id-3": "pending", "id-4": "pending"}
    assert relay.stats.sent == 2


def leased_to(store: SQLiteOutbox, owner: str) -> list[str]:
    rows = store._conn.execute(
        "SELECT event_id FROM eventwire_outbox WHERE state = 'pending' AND lease_owner = ?"
        " ORDER BY id",
        (owner,),
    ).fetchall()
    return [r[0] for r in rows]


def last_copies(transport: MemoryTransport, key: bytes) -> list[bytes]:
    """The values of ``key`` in the order of their last copy in the log."""
    last: dict[bytes, int] = {}
    for r in transport.records("orders"):
        if r.key == key:
            last[r.value] = max(last.get(r.value, -1), r.sequence)
    return sorted(last, key=last.__getitem__)


class FullFor(MemoryTransport):
    """A memory transport whose local queue is full for one record value until healed."""

    def __init__(self, value: bytes | None) -> None:
        super().__init__()
        self.full_for = value

    def send(self, topic, key, value, headers, on_delivery):  # type: ignore[no-untyped-def]
        if value == self.full_for:
            raise TransportQueueFull()
        super().send(topic, key, value, headers, on_delivery)


def quick_relay(
    store: SQLiteOutbox, transport: MemoryTransport, *, backoff_s: float
) -> OutboxRelay:
    """Batches of 2, a 50 ms ack timeout, and retries after ``backoff_s`` to twice that."""
    return OutboxRelay(
        store,
        lambda: transport,
        batch_size=2,
        ack_timeout=0.05,
        base_backoff_s=backoff_s,
        max_backoff_s=2 * backoff_s,
    )


class TestClaimAhead:
    def test_the_next_batch_is_claimed_before_the_round_ends_and_sent_in_the_next(
        self, store: SQLiteOutbox
    ) -> None:
        """After a full batch, the round leases the next one (the later entries of the same
        keys included) and the next round sends it; every key stays in order."""
        store.add([entry(n, key=f"k{n % 2}") for n in range(1, 7)])
        transport = MemoryTransport()
        relay = OutboxRelay(store, lambda: transport, batch_size=2)
        assert relay.run_once() == 2
        assert [r.value for r in transport.records("orders")] == [b"v1", b"v2"]
        assert leased_to(store, relay.owner) == ["id-3", "id-4"]
        assert relay.drain(timeout=5)
        for key in (b"k0", b"k1"):
            values = [int(r.value[1:]) for r in transport.records("orders") if r.key == key]
            assert values == sorted(values)
        assert len(transport.records("orders")) == 6
        assert relay.stats.held_back == 0

    def test_a_failure_in_the_batch_in_flight_holds_back_its_key_in_the_next(
        self, store: SQLiteOutbox
    ) -> None:
        """An entry whose delivery fails while the next batch is already claimed: that
        batch's entries of its key are held back (unsent, unattempted), other keys go
        out, and the key's events reach the log in order after the retry."""
        store.add([entry(1, "a"), entry(2, "a"), entry(3, "a"), entry(4, "b")])
        transport = MemoryTransport()
        transport.fail_next(1, "_MSG_TIMED_OUT")  # a's first event
        relay = OutboxRelay(
            store, lambda: transport, batch_size=2, base_backoff_s=0.01, max_backoff_s=0.02
        )
        assert relay.run_once() == 2
        assert leased_to(store, relay.owner) == ["id-3", "id-4"]  # claimed ahead
        assert relay.run_once() == 2  # the batch claimed ahead
        sent = [r.value for r in transport.records("orders")]
        assert b"v3" not in sent and b"v4" in sent
        assert store.list_parked() == []
        row = store._conn.execute(
            "SELECT attempts, last_error FROM eventwire_outbox WHERE event_id = 'id-3'"
        ).fetchone()
        assert row[0] == 0 and row[1].startswith("_HELD_BACK")
        assert relay.drain(timeout=5)
        assert last_copies(transport, b"a") == [b"v1", b"v2", b"v3"]
        assert relay.stats.retried == 1

    def test_a_round_that_left_an_entry_out_claims_nothing_ahead(self, store: SQLiteOutbox) -> None:
        """A round whose full local queue left an entry out claims no batch ahead (its
        entries of that key would only be held back too); the next round claims after
        the settle, and every key keeps its order."""
        store.add([entry(1, "a"), entry(2, "b"), entry(3, "a"), entry(4, "b")])
        transport = FullFor(b"v1")  # a's first event stays out
        # A backoff the second round surely starts within: were entry 1 claimable
        # again, that round's batch of 2 would be entries 1 and 3 (a loaded machine
        # took more than 10 ms between the rounds, and entry 4 was not sent).
        relay = quick_relay(store, transport, backoff_s=0.5)
        relay.run_once()
        assert leased_to(store, relay.owner) == []  # nothing claimed ahead
        relay.run_once()
        assert [r.value for r in transport.records("orders")] == [b"v2", b"v4"]
        transport.full_for = None
        assert relay.drain(timeout=5)
        assert last_copies(transport, b"a") == [b"v1", b"v3"]
        assert last_copies(transport, b"b") == [b"v2", b"v4"]

    def test_a_key_held_back_round_after_round_still_drains(self, store: SQLiteOutbox) -> None:
        """Regression: a round that held a key back used to claim ahead anyway; the batch
        it claimed was then held back whole (same key), and so was each batch after it,
        forever, even once the queue had room. Now the key drains, in order."""

        store.add([entry(n, "a") for n in range(1, 7)])
        transport = FullFor(b"v1")
        relay = quick_relay(store, transport, backoff_s=0.001)
        relay.run_once()
        transport.full_for = None  # the queue has room from now on
        assert relay.drain(timeout=3)
        assert last_copies(transport, b"a") == [f"v{n}".encode() for n in range(1, 7)]

    def test_stop_puts_back_a_batch_claimed_ahead_unattempted(self, store: SQLiteOutbox) -> None:
        """A relay stopped between rounds releases the batch it claimed ahead: claimable at
        once by another relay, its attempt taken back."""
        store.add([entry(n, key=f"k{n % 2}") for n in range(1, 5)])
        transport = MemoryTransport()
        relay = OutboxRelay(store, lambda: transport, batch_size=2)
        relay.run_once()
        assert leased_to(store, relay.owner) == ["id-3", "id-4"]
        relay.stop()
        assert leased_to(store, relay.owner) == []
        claimed = store.claim_batch(10, owner="next", lease_s=30)
        assert [(c.entry.event_id, c.attempts) for c in claimed] == [("id-3", 0), ("id-4", 0)]

    def test_an_open_breaker_puts_back_a_batch_claimed_ahead(self, store: SQLiteOutbox) -> None:
        """While the breaker keeps the relay from sending, nothing stays leased to it."""

        class Closed:
            open = False
            name = "relay"

            def allow(self) -> bool:
                return not self.open

            def record_success(self) -> None: ...

            def record_failure(self, code: str, reason: str) -> None: ...

        breaker: Any = Closed()
        store.add([entry(n, key=f"k{n % 2}") for n in range(1, 5)])
        transport = MemoryTransport()
        relay = OutboxRelay(store, lambda: transport, batch_size=2, breaker=breaker)
        relay.run_once()
        assert leased_to(store, relay.owner) == ["id-3", "id-4"]
        breaker.open = True
        assert relay.run_once() == 0
        assert leased_to(store, relay.owner) == []

    def test_a_store_that_overrides_claim_batch_is_claimed_once_per_round(
        self, tmp_path: Path
    ) -> None:
        """A subclass gating or counting claims keeps one claim_batch call per round."""

        class Counting(SQLiteOutbox):
            claims = 0

            def claim_batch(self, limit: int, *, owner: str, lease_s: float) -> list[ClaimedEntry]:
                self.claims += 1
                return super().claim_batch(limit, owner=owner, lease_s=lease_s)

        store = Counting(tmp_path / "o.db")
        store.add([entry(n, key=f"k{n % 2}") for n in range(1, 5)])
        relay = OutboxRelay(store, MemoryTransport, batch_size=2)
        relay.run_once()
        assert store.claims == 1 and leased_to(store, relay.owner) == []
        relay.run_once()
        assert store.claims == 2

    def test_run_once_marks_its_acks_before_it_returns(self, store: SQLiteOutbox) -> None:
        """A public round leaves nothing unmarked: its acked entries are sent when it
        returns, though the next batch is already claimed."""
        store.add([entry(n, key=f"k{n % 2}") for n in range(1, 5)])
        relay = OutboxRelay(store, MemoryTransport, batch_size=2)
        assert relay.run_once() == 2
        assert leased_to(store, relay.owner) == ["id-3", "id-4"]
        assert_first_batch_sent_second_pending(store, relay)


class TestMarksInTheNextClaim:
    def test_the_loop_marks_a_full_rounds_acks_with_the_next_claim(
        self, store: SQLiteOutbox
    ) -> None:
        """In the loop, a full round's acks stay leased until the next round's claim
        ahead marks them, in its own transaction; counts and the listener follow."""
        store.add([entry(n, key=f"k{n % 2}") for n in range(1, 7)])
        told: list[str] = []
        listener: Any = type(
            "L",
            (),
            {
                "delivered": lambda self, row_id, event_id, msg: told.append(event_id),
                "given_up": lambda self, *a: None,
            },
        )()
        relay = OutboxRelay(store, MemoryTransport, batch_size=2, listener=listener)
        assert relay._round(defer_marks=True) == 2
        assert states(store)["id-1"] == "pending" and relay.stats.sent == 0 and told == []
        assert relay._round(defer_marks=True) == 2  # its claim ahead marked id-1 and id-2
        assert states(store)["id-1"] == "sent" and states(store)["id-3"] == "pending"
        assert told == ["id-1", "id-2"] and relay.stats.sent == 2
        assert relay.drain(timeout=5)
        assert set(states(store).values()) == {"sent"}
        assert told == [f"id-{n}" for n in range(1, 7)] and relay.stats.sent == 6

    def test_stop_marks_the_acks_left_for_the_next_claim(self, store: SQLiteOutbox) -> None:
        """A relay stopped between rounds marks the acked entries it left unmarked, and
        puts back the batch it claimed ahead: nothing stays leased to it."""
        store.add([entry(n, key=f"k{n % 2}") for n in range(1, 5)])
        relay = OutboxRelay(store, MemoryTransport, batch_size=2)
        relay._round(defer_marks=True)
        assert leased_to(store, relay.owner) == ["id-1", "id-2", "id-3", "id-4"]
        relay.stop()
        assert leased_to(store, relay.owner) == []
        assert_first_batch_sent_second_pending(store, relay)

    def test_a_failing_claim_ahead_leaves_the_acks_to_be_marked_on_their_own(
        self, tmp_path: Path
    ) -> None:
        """When the claim that would mark them fails, the acks are marked by themselves in
        the same round: none is sent twice, none stays pending."""

        store = SQLiteOutbox(tmp_path / "o.db")
        claim = store._claim_passing
        failed: list[bool] = []

        def fails_once(limit: int, **kw: Any) -> list[ClaimedEntry]:
            if kw.get("sent") and not failed:
                failed.append(True)
                raise OSError("disk I/O error")
            return claim(limit, **kw)

        store._claim_passing = fails_once  # type: ignore[method-assign]
        store.add([entry(n, key=f"k{n % 2}") for n in range(1, 7)])
        transport = MemoryTransport()
        relay = OutboxRelay(store, lambda: transport, batch_size=2)
        assert relay.drain(timeout=5)
        assert failed
        assert set(states(store).values()) == {"sent"}
        assert sorted(r.value for r in transport.records("orders")) == [
            f"v{n}".encode() for n in range(1, 7)
        ]
        assert relay.stats.sent == 6

    def test_a_store_that_overrides_mark_sent_marks_each_round_through_it(
        self, tmp_path: Path
    ) -> None:
        """A subclass gating or counting marks gets every ack through its mark_sent, in
        the round that got it: no claim ahead bypasses it."""

        class Counting(SQLiteOutbox):
            marked: ClassVar[list[int]] = []

            def mark_sent(self, ids: Any, *, dead_lettered: str | None = None) -> None:
                self.marked.extend(ids)
                super().mark_sent(ids, dead_lettered=dead_lettered)

        store = Counting(tmp_path / "o.db")
        store.add([entry(n, key=f"k{n % 2}") for n in range(1, 5)])
        relay = OutboxRelay(store, MemoryTransport, batch_size=2)
        relay._round(defer_marks=True)
        assert len(store.marked) == 2 and leased_to(store, relay.owner) == []
        assert relay.drain(timeout=5)
        assert len(store.marked) == 4
