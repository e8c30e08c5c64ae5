"""The outbox relay on the memory transport."""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

import pytest

from eventwire.outbox import OutboxEntry, OutboxRelay, SQLiteOutbox
from eventwire.transports.base import TransportQueueFull
from eventwire.transports.memory import MemoryTransport


def entry(n: int, key: str = "k") -> OutboxEntry:
    return OutboxEntry(
        f"id-{n}", "T", "orders", key.encode(), f"v{n}".encode(), (("ce_id", f"id-{n}".encode()),)
    )


@pytest.fixture
def store(tmp_path: Path) -> SQLiteOutbox:
    return SQLiteOutbox(tmp_path / "outbox.db")


class TestABatchRefusedAsTooLarge:
    """The broker's MSG_SIZE_TOO_LARGE refuses a whole record batch (Kafka's
    max.message.bytes applies to a batch): an entry batched with an oversized one gets
    it too. The relay sends such an entry again alone before it gives it up."""

    def test_an_entry_refused_with_its_batch_goes_again_alone_and_is_delivered(
        self, store: SQLiteOutbox
    ) -> None:
        """Not given up, not counted as an attempt, not delayed: delivered next round."""
        store.add([entry(1)])
        transport = MemoryTransport()
        transport.fail_next(1, "MSG_SIZE_TOO_LARGE")
        relay = OutboxRelay(store, lambda: transport, dead_letter=None, max_attempts=1)
        assert relay.drain(timeout=5)
        assert [r.header("ce_id") for r in transport.records("orders")] == [b"id-1"]
        assert store.list_parked() == []
        assert (relay.stats.sent, relay.stats.retried, relay.stats.parked) == (1, 1, 0)

    def test_an_entry_refused_again_alone_is_given_up(self, store: SQLiteOutbox) -> None:
        store.add([entry(1)])
        transport = MemoryTransport()
        transport.fail_next(2, "MSG_SIZE_TOO_LARGE")
        relay = OutboxRelay(store, lambda: transport, dead_letter=None)
        assert relay.drain(timeout=5)
        [(parked, error)] = store.list_parked()
        assert parked.entry.event_id == "id-1"
        assert "MSG_SIZE_TOO_LARGE" in error
        assert relay._alone == set()  # nothing left behind

    def test_a_record_refused_as_too_large_when_sent_is_given_up_at_once(
        self, store: SQLiteOutbox
    ) -> None:
        """A refusal at send time (librdkafka's message.max.bytes) judged the record alone."""
        store.add([entry(1), entry(2, key="other")])
        # 36 (librdkafka's overhead) + b"k" + b"v1" + its ce_id header (11) fit; "other" does not
        transport = MemoryTransport(max_message_bytes=50)
        relay = OutboxRelay(store, lambda: transport, dead_letter=None)
        assert relay.drain(timeout=5)
        [(parked, _error)] = store.list_parked()
        assert parked.entry.event_id == "id-2"
        assert (relay.stats.retried, relay.stats.parked) == (0, 1)

    def test_later_entries_of_its_key_wait_for_it(self, store: SQLiteOutbox) -> None:
        """Per-key order holds: the last copy of each entry of the key is in claim order."""
        store.add([entry(1), entry(2), entry(3, key="other")])
        transport = MemoryTransport()
        transport.fail_next(1, "MSG_SIZE_TOO_LARGE")  # id-1's batch
        relay = OutboxRelay(store, lambda: transport, dead_letter=None)
        assert relay.drain(timeout=5)
        ids = [r.header("ce_id") for r in transport.records("orders") if r.key == b"k"]
        last = {eid: i for i, eid in enumerate(ids)}
        assert last[b"id-1"] < last[b"id-2"]
        assert store.status().pending == 0 and store.list_parked() == []


class TestRelay:
    def test_drains_in_per_key_order_with_stored_bytes(self, store: SQLiteOutbox) -> None:
        """Every entry reaches the log once, with its stored headers, in order per key."""
        store.add([entry(n, key=f"k{n % 3}") for n in range(30)])
        transport = MemoryTransport()
        relay = OutboxRelay(store, lambda: transport, batch_size=7)
        assert relay.drain(timeout=5)
        records = transport.records("orders")
        assert sorted(r.header("ce_id") for r in records) == sorted(
            f"id-{n}".encode() for n in range(30)
        )
        for key in (b"k0", b"k1", b"k2"):
            values = [int(r.value[1:]) for r in records if r.key == key]
            assert values == sorted(values)
        assert store.status().pending == 0

    def test_retriable_failures_are_retried_with_the_same_id(self, store: SQLiteOutbox) -> None:
        """A timed-out send is rescheduled and sent again with the same ce_id."""
        store.add([entry(1)])
        transport = MemoryTransport()
        transport.fail_next(1, "_MSG_TIMED_OUT")
        relay = OutboxRelay(store, lambda: transport, base_backoff_s=0.01, max_backoff_s=0.02)
        assert relay.drain(timeout=5)
        assert [r.header("ce_id") for r in transport.records()] == [b"id-1"]
        assert relay.stats.retried == 1

    def test_permanent_failures_go_to_the_dead_letter_topic(self, store: SQLiteOutbox) -> None:
        """A permanent error sends the record to <topic>.dlq with its bytes, its headers
        and eventwire_dlq_* reason headers; later keys go on; nothing is retried."""
        store.add([entry(1, key="a"), entry(2, key="b")])
        transport = MemoryTransport()
        transport.fail_next(1, "TOPIC_AUTHORIZATION_FAILED")
        relay = OutboxRelay(store, lambda: transport)
        assert relay.drain(timeout=5)
        [dead] = transport.records("orders.dlq")
        assert (dead.key, dead.value, dead.header("ce_id")) == (b"a", b"v1", b"id-1")
        assert dead.header("eventwire_dlq_code") == b"TOPIC_AUTHORIZATION_FAILED"
        assert dead.header("eventwire_dlq_original_topic") == b"orders"
        assert dead.header("eventwire_dlq_attempts") == b"1"
        assert b"may not write" in (dead.header("eventwire_dlq_reason") or b"")
        assert dead.header("eventwire_dlq_first_failure") is not None
        assert dead.header("eventwire_dlq_last_failure") is not None
        assert [r.header("ce_id") for r in transport.records("orders")] == [b"id-2"]
        assert (relay.stats.dead_lettered, relay.stats.retried, relay.stats.parked) == (1, 0, 0)

    def test_without_a_dead_letter_topic_failures_are_parked(self, store: SQLiteOutbox) -> None:
        """dead_letter=None keeps permanent failures in the outbox, parked with their reason."""
        store.add([entry(1)])
        transport = MemoryTransport()
        transport.fail_next(1, "INVALID_RECORD")
        relay = OutboxRelay(store, lambda: transport, dead_letter=None)
        assert relay.drain(timeout=5)
        [(parked, error)] = store.list_parked()
        assert parked.entry.event_id == "id-1"
        assert "INVALID_RECORD" in error

    def test_unreachable_dead_letter_topic_parks_the_entry(self, store: SQLiteOutbox) -> None:
        """If the dead-letter send fails too, the entry is parked in the outbox, not lost."""
        store.add([entry(1)])
        transport = MemoryTransport()
        transport.fail_next(1, "TOPIC_AUTHORIZATION_FAILED")
        transport.fail_topic("orders.dlq", "_MSG_TIMED_OUT")
        relay = OutboxRelay(store, lambda: transport)
        assert relay.drain(timeout=5)
        assert store.status().parked == 1
        assert relay.stats.parked == 1

    def test_exhausted_retries_are_dead_lettered_with_first_failure_time(
        self, store: SQLiteOutbox
    ) -> None:
        """After max_attempts retriable failures the entry goes to the DLQ, attempts counted."""
        store.add([entry(1)])
        transport = MemoryTransport()
        transport.fail_next(3, "_MSG_TIMED_OUT")
        relay = OutboxRelay(
            store, lambda: transport, max_attempts=3, base_backoff_s=0.01, max_backoff_s=0.02
        )
        assert relay.drain(timeout=5)
        [dead] = transport.records("orders.dlq")
        assert dead.header("eventwire_dlq_attempts") == b"3"
        assert dead.header("eventwire_dlq_code") == b"_MSG_TIMED_OUT"
        assert dead.header("eventwire_dlq_first_failure") != dead.header(
            "eventwire_dlq_last_failure"
        )

    def test_fatal_producer_error_recreates_the_transport(self, store: SQLiteOutbox) -> None:
        """After a fatal error the relay builds a new transport and the entry still lands."""
        store.add([entry(1)])
        transports: list[MemoryTransport] = []

        def factory() -> MemoryTransport:
            t = MemoryTransport()
            if not transports:
                t.set_fatal("OUT_OF_ORDER_SEQUENCE_NUMBER")
            transports.append(t)
            return t

        relay = OutboxRelay(store, factory, base_backoff_s=0.01, max_backoff_s=0.02)
        assert relay.drain(timeout=5)
        assert relay.stats.transport_restarts == 1
        assert [r.header("ce_id") for r in transports[-1].records()] == [b"id-1"]

    def test_backoff_grows_and_is_capped(self, store: SQLiteOutbox) -> None:
        """Backoff doubles per attempt, with jitter in [cap/2, cap], never above the cap."""
        relay = OutboxRelay(store, MemoryTransport, base_backoff_s=1, max_backoff_s=8)
        assert 0.5 <= relay.backoff(1) <= 1
        assert 2 <= relay.backoff(3) <= 4
        assert 4 <= relay.backoff(30) <= 8

    @pytest.mark.parametrize(
        ("setting", "value"),
        [
            ("batch_size", 0),
            ("batch_size", -5),
            ("batch_size", 2.5),
            ("max_attempts", 0),
            ("ack_timeout", 0),
            ("lease_s", float("nan")),
            ("max_backoff_s", float("inf")),
            ("base_backoff_s", -1),
            ("max_age_s", 0),
            ("idle_interval_s", -0.1),
            ("cleanup_after_s", "3600"),
        ],
    )
    def test_a_setting_that_would_stall_or_break_the_relay_is_refused_by_name(
        self, store: SQLiteOutbox, setting: str, value: object
    ) -> None:
        """batch_size=0 claimed nothing forever and ack_timeout=0 re-sent every event each
        round, silently; now each is a ConfigurationError naming the setting."""
        from eventwire import ConfigurationError

        with pytest.raises(ConfigurationError, match=f"OutboxRelay {setting} must be"):
            OutboxRelay(store, MemoryTransport, **{setting: value})  # type: ignore[arg-type]

    @pytest.mark.parametrize("value", [1_000_001, 2**31, 3_000_000_000, 10**20])
    def test_a_batch_size_past_a_million_is_refused_naming_the_range(
        self, store: SQLiteOutbox, value: int
    ) -> None:
        """A batch_size above the C int range was accepted, then every round failed with
        OverflowError (SQLite's fetch size) and nothing was relayed."""
        from eventwire import ConfigurationError

        with pytest.raises(ConfigurationError, match=r"batch_size must be in 1\.\.1_000_000"):
            OutboxRelay(store, MemoryTransport, batch_size=value)
        OutboxRelay(store, MemoryTransport, batch_size=1_000_000)

    def test_publisher_relay_options_are_checked_at_construction(self, tmp_path: Path) -> None:
        from eventwire import ConfigurationError, Publisher

        with pytest.raises(ConfigurationError, match="batch_size must be a whole number >= 1"):
            Publisher(
                transport=MemoryTransport(),
                outbox=SQLiteOutbox(tmp_path / "o.db"),
                relay_options={"batch_size": 0},
            )

    def test_backoff_stays_capped_past_a_thousand_attempts(self, store: SQLiteOutbox) -> None:
        """2.0 ** 1024 overflows a float: attempt 1025 (max_attempts above 1024, or the
        1025th failing loop of a long outage) must still get the cap, not OverflowError."""
        relay = OutboxRelay(store, MemoryTransport, base_backoff_s=0.5, max_backoff_s=10)
        for attempts in (1024, 1025, 5000, 10**9):
            assert 5 <= relay.backoff(attempts) <= 10

    def test_open_circuit_keeps_the_backlog_on_disk_until_a_probe_succeeds(
        self, store: SQLiteOutbox
    ) -> None:
        """After sustained connectivity failures the relay stops sending (entries stay
        pending on disk) until the half-open probe finds Kafka again."""
        from eventwire._breaker import BreakerState, CircuitBreaker

        store.add([entry(n) for n in range(5)])
        transport = MemoryTransport()
        transport.fail_next(5, "_MSG_TIMED_OUT")
        kafka_up = [False]
        breaker = CircuitBreaker(open_after_s=0, reset_timeout_s=0.05, probe=lambda: kafka_up[0])
        relay = OutboxRelay(
            store, lambda: transport, breaker=breaker, base_backoff_s=0.001, max_backoff_s=0.002
        )
        relay.run_once()
        assert breaker.state is BreakerState.OPEN
        time.sleep(0.06)
        assert relay.run_once() == 0  # probe fails: nothing claimed
        assert store.status().pending == 5
        kafka_up[0] = True
        time.sleep(0.06)
        assert relay.drain(timeout=5)
        assert len(transport.records("orders")) == 5
        assert breaker.state is BreakerState.CLOSED

    def test_retries_stop_at_the_deadline(self, store: SQLiteOutbox) -> None:
        """An entry still failing max_age_s after its commit is given up on (dead-lettered)."""
        store.add([entry(1)])
        transport = MemoryTransport()
        transport.fail_topic("orders", "_MSG_TIMED_OUT")
        relay = OutboxRelay(
            store, lambda: transport, max_age_s=0.05, base_backoff_s=0.01, max_backoff_s=0.02
        )
        assert relay.drain(timeout=5)
        assert relay.stats.dead_lettered == 1
        assert relay.stats.retried >= 1
        [dead] = transport.records("orders.dlq")
        assert dead.header("eventwire_dlq_code") == b"_MSG_TIMED_OUT"


class FullFor(MemoryTransport):
    """A memory transport whose local queue is full for one record value until healed."""

    def __init__(self, value: bytes) -> None:
        super().__init__()
        self.full_for: bytes | None = value

    def send(self, topic, key, value, headers, on_delivery):  # type: ignore[no-untyped-def]
        if value == self.full_for:
            raise TransportQueueFull()
        super().send(topic, key, value, headers, on_delivery)


class TestPerKeyOrderUnderBackpressure:
    def test_an_entry_left_out_by_a_full_queue_holds_back_its_key(
        self, store: SQLiteOutbox
    ) -> None:
        """When an entry of a key stays out of a full queue, the later entries of that key
        wait for it (other keys go on), so the log keeps each key's commit order."""
        store.add([entry(1, key="a"), entry(2, key="a"), entry(3, key="b"), entry(4, key="a")])
        transport = FullFor(b"v1")
        relay = OutboxRelay(
            store, lambda: transport, ack_timeout=0.05, base_backoff_s=0.01, max_backoff_s=0.02
        )
        relay.run_once()
        assert [r.value for r in transport.records("orders") if r.key == b"a"] == []
        assert [r.value for r in transport.records("orders")] == [b"v3"]
        transport.full_for = None
        assert relay.drain(timeout=5)
        in_order = sorted(transport.records("orders"), key=lambda r: r.sequence)
        assert [r.value for r in in_order if r.key == b"a"] == [b"v1", b"v2", b"v4"]
        assert (relay.stats.held_back, relay.stats.retried) == (2, 1)

    def test_a_refused_entry_holds_back_its_key_until_it_is_given_up(
        self, store: SQLiteOutbox
    ) -> None:
        """An entry refused at enqueue (too large) is given up on (parked: the DLQ refuses
        it too); the next entry of its key is not sent before that, and then follows."""
        store.add([entry(1), OutboxEntry("big", "T", "orders", b"k", b"x" * 100, ()), entry(3)])
        transport = MemoryTransport(max_message_bytes=50)
        relay = OutboxRelay(store, lambda: transport)
        relay.run_once()
        assert [r.value for r in transport.records("orders")] == [b"v1"]
        assert relay.drain(timeout=5)
        assert [r.value for r in transport.records("orders")] == [b"v1", b"v3"]
        assert store.status().parked == 1


class RetryCountingOutbox(SQLiteOutbox):
    """An SQLite outbox that records the size of each batched retry release."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.retry_batches: list[int] = []

    def mark_retry_many(
        self, retries: Sequence[tuple[int, str, float, bool]], *, owner: str | None = None
    ) -> None:
        self.retry_batches.append(len(retries))
        super().mark_retry_many(retries, owner=owner)


class TestBatchedMarks:
    def test_a_rounds_failures_are_released_in_one_store_call(self, tmp_path: Path) -> None:
        """A round of 50 entries of one key whose first times out (the 49 after it are held
        back behind it) releases all 50 leases with one mark_retry_many call, not 50
        transactions; the last copy of each event in the log is still in commit order."""
        store = RetryCountingOutbox(tmp_path / "outbox.db")
        store.add([entry(n) for n in range(50)])
        transport = MemoryTransport()
        transport.fail_next(1, "_MSG_TIMED_OUT")
        relay = OutboxRelay(store, lambda: transport, base_backoff_s=0.01, max_backoff_s=0.02)
        relay.run_once()
        assert store.retry_batches == [50]
        assert (relay.stats.retried, relay.stats.held_back, relay.stats.sent) == (1, 49, 0)
        assert relay.drain(timeout=5)
        last: dict[bytes, int] = {}
        for record in sorted(transport.records("orders"), key=lambda r: r.sequence):
            last[record.value] = record.sequence
        assert sorted(last, key=last.__getitem__) == [f"v{n}".encode() for n in range(50)]
