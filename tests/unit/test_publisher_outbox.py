"""The Publisher in outbox mode, on SQLite and the memory transport."""

from __future__ import annotations

import sqlite3
import threading
import time
import types
from pathlib import Path
from typing import Any

import pytest

from eventwire import DeliveryError, Publisher, PublisherStateError
from eventwire.outbox import ClaimedEntry, OutboxRelay, SQLiteOutbox
from eventwire.transports.memory import MemoryTransport

from .conftest import order


@pytest.fixture
def store(tmp_path: Path) -> SQLiteOutbox:
    return SQLiteOutbox(tmp_path / "outbox.db")


class TestOutboxPublisher:
    def test_publish_commits_before_returning(self, store: SQLiteOutbox) -> None:
        """With relay=False nothing is sent, yet every published event is in the store."""
        transport = MemoryTransport()
        with Publisher(transport=transport, outbox=store, relay=False) as pub:
            handles = pub.publish_many([order(1), order(2)])
            assert store.status().pending == 2
        assert transport.records() == []
        assert all(h.done() and h.failure is not None for h in handles)
        assert handles[0].failure.code == "_IN_OUTBOX"  # type: ignore[union-attr]

    def test_in_process_relay_settles_handles_at_the_ack(self, store: SQLiteOutbox) -> None:
        """The relay ships committed events; their handles resolve to where they landed."""
        transport = MemoryTransport()
        with Publisher(transport=transport, outbox=store) as pub:
            handle = pub.publish(order(1))
            result = handle.result(timeout=5)
            pub.flush(5)
        [record] = transport.records("orders")
        assert (record.partition, record.offset) == (result.partition, result.offset)
        assert record.header("ce_id") == handle.event_id.encode()
        assert store.status().pending == 0

    def test_events_from_an_earlier_process_are_shipped_too(self, store: SQLiteOutbox) -> None:
        """Entries left by a publisher that never relayed are sent by the next one's relay."""
        with Publisher(transport=MemoryTransport(), outbox=store, relay=False) as pub:
            first = pub.publish(order(1)).event_id
        transport = MemoryTransport()
        with Publisher(transport=transport, outbox=store) as pub:
            pub.publish(order(2)).result(timeout=5)
            relay = pub._outbox.relay  # type: ignore[union-attr]
            assert relay is not None
            relay.drain(timeout=5)
        assert first.encode() in {r.header("ce_id") for r in transport.records()}

    def test_stage_joins_the_callers_transaction(self, store: SQLiteOutbox) -> None:
        """stage() writes in the caller's transaction: rolled back, it is never sent."""
        conn = sqlite3.connect(store.path)
        with Publisher(transport=MemoryTransport(), outbox=store, relay=False) as pub:
            pub.stage(order(1), connection=conn)
            conn.rollback()
            assert store.status().pending == 0
            kept = pub.stage(order(2), connection=conn)
            conn.commit()
        transport = MemoryTransport()
        assert OutboxRelay(store, lambda: transport).drain(timeout=5)
        assert [r.header("ce_id") for r in transport.records()] == [kept.encode()]

    def test_stage_without_an_outbox_is_a_clear_error(self) -> None:
        """stage() on a publisher without an outbox says how to get one."""
        with (
            Publisher(transport=MemoryTransport()) as pub,
            pytest.raises(PublisherStateError, match="outbox=SQLiteOutbox"),
        ):
            pub.stage(order(1), connection=None)

    def test_permanent_failure_fails_the_handle_and_flush(self, store: SQLiteOutbox) -> None:
        """A dead-lettered event fails its handle; flush raises naming it unless result()
        already did."""
        transport = MemoryTransport()
        transport.fail_topic("orders", "TOPIC_AUTHORIZATION_FAILED")
        pub = Publisher(transport=transport, outbox=store)
        handle = pub.publish(order(1))
        unseen = pub.publish(order(2))
        with pytest.raises(DeliveryError, match="TOPIC_AUTHORIZATION_FAILED"):
            handle.result(timeout=5)
        with pytest.raises(DeliveryError, match=unseen.event_id) as flushed:
            pub.flush(5)
        assert [f.event_id for f in flushed.value.failures] == [unseen.event_id]
        pub.close(5)
        assert len(transport.records("orders.dlq")) == 2

    def test_invalid_events_are_refused_before_anything_is_written(
        self, store: SQLiteOutbox
    ) -> None:
        """Routing and encoding errors raise at publish(); the outbox stays empty."""
        from .conftest import Unrouted

        with Publisher(transport=MemoryTransport(), outbox=store, relay=False) as pub:
            with pytest.raises(Exception, match="has no route"):
                pub.publish(Unrouted(order_id="x"))
        assert store.status().pending == 0


class TestOutboxMemory:
    def test_beyond_the_tracked_handles_dropped_ones_are_not_kept(
        self, store: SQLiteOutbox, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """During an outage the backlog is on disk: past the cap, a dropped handle is freed."""
        import gc
        import weakref

        monkeypatch.setattr("eventwire.outbox.sink.TRACKED_HANDLES", 50)
        transport = MemoryTransport()
        transport.pause()  # Kafka takes the records but never acknowledges them
        pub = Publisher(transport=transport, outbox=store, relay_options={"batch_size": 20})
        refs = [weakref.ref(pub.publish(order(n))) for n in range(200)]
        gc.collect()
        assert all(r() is not None for r in refs[:50])  # tracked: callbacks, spans, flush
        assert all(r() is None for r in refs[50:])
        assert pub.in_flight == 50
        assert store.status().pending == 200  # nothing lost: all on disk
        pub.close(0.1)

    def test_a_dropped_handles_done_callback_still_fires(self, store: SQLiteOutbox) -> None:
        """publish(e).add_done_callback(cb) without keeping the handle: cb runs at the ack."""
        import gc

        transport = MemoryTransport()
        seen: list[str] = []
        with Publisher(transport=transport, outbox=store) as pub:
            pub.publish(order(1)).add_done_callback(lambda h: seen.append(h.event_id))
            gc.collect()
        assert len(seen) == 1

    def test_close_ships_events_whose_handles_were_dropped(self, store: SQLiteOutbox) -> None:
        """close() waits (bounded) for the outbox to drain, not just for held handles."""
        transport = MemoryTransport()
        with Publisher(transport=transport, outbox=store) as pub:
            for n in range(300):
                pub.publish(order(n))  # fire and forget
        assert len(transport.records("orders")) == 300
        assert store.status().pending == 0

    def test_held_handles_still_settle_at_the_ack(self, store: SQLiteOutbox) -> None:
        """Weak tracking does not lose a handle the caller keeps: it resolves at the ack."""
        transport = MemoryTransport()
        with Publisher(transport=transport, outbox=store) as pub:
            handles = [pub.publish(order(n)) for n in range(50)]
            assert all(h.result(timeout=5).topic == "orders" for h in handles)


class GatedStore:
    """A SQLiteOutbox whose relay claims nothing until ``open`` is set."""

    def __init__(self, inner: SQLiteOutbox) -> None:
        self.inner = inner
        self.open = threading.Event()

    def claim_batch(self, limit: int, *, owner: str, lease_s: float) -> list[ClaimedEntry]:
        if not self.open.is_set():
            return []
        return self.inner.claim_batch(limit, owner=owner, lease_s=lease_s)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


class TestResendWithTheSameEventId:
    def test_both_handles_of_a_resent_event_id_resolve(self, store: SQLiteOutbox) -> None:
        """Publishing twice with one event_id before the relay sends it: both handles
        resolve, to the one record the outbox sent."""
        gated = GatedStore(store)
        transport = MemoryTransport()
        with Publisher(transport=transport, outbox=gated) as pub:  # type: ignore[arg-type]
            first = pub.publish(order(1), event_id="same-id")
            second = pub.publish(order(1), event_id="same-id")
            gated.open.set()
            assert second.result(timeout=20).offset == first.result(timeout=20).offset
        assert [r.header("ce_id") for r in transport.records("orders")] == [b"same-id"]

    def test_both_handles_of_a_dead_lettered_resend_fail_and_are_reported(
        self, store: SQLiteOutbox
    ) -> None:
        """When that event is dead-lettered, both handles fail and flush() reports both."""
        gated = GatedStore(store)
        transport = MemoryTransport()
        transport.fail_topic("orders", "TOPIC_AUTHORIZATION_FAILED")
        pub = Publisher(transport=transport, outbox=gated)  # type: ignore[arg-type]
        first = pub.publish(order(1), event_id="same-id")
        second = pub.publish(order(1), event_id="same-id")
        gated.open.set()
        with pytest.raises(DeliveryError) as raised:
            pub.flush(20)
        assert [f.event_id for f in raised.value.failures] == ["same-id", "same-id"]
        assert first.failed() and second.failed()
        pub.close(5)

    def test_a_report_that_overtakes_add_still_settles_the_handle(self) -> None:
        """If the relay reports a row before add() has returned its id, the handle bound
        to that row when add() returns is settled with the report."""
        from eventwire.outbox.sink import _Tracker

        tracker = _Tracker()
        handle = types.SimpleNamespace(_done=False)  # a handle not yet settled
        token = tracker.begin()
        assert tracker.report(7, (None, "MSG_SIZE_TOO_LARGE", "too big")) == []
        early = tracker.end(token, [7], [handle])  # type: ignore[list-item]
        assert early == [(handle, (None, "MSG_SIZE_TOO_LARGE", "too big"))]
        # handed over to this thread to be settled: another thread's flush() waits for it
        seen: list[int] = []
        other = threading.Thread(target=lambda: seen.append(tracker.waiting()))
        other.start()
        other.join()
        assert seen == [1] and tracker.waiting() == 0  # (not this thread's own flush)
        tracker.settled(1)
        assert tracker.waiting() == 0
        token = tracker.begin()
        assert tracker.end(token, [7], [handle]) == []  # the report was used up
        assert tracker.waiting() == 1


def outbox_write_error(possibly_written: bool) -> Exception:
    """The store's OutboxWriteError (on code older than it, a stand-in with the same flag)."""
    import eventwire._errors

    cls = getattr(eventwire._errors, "OutboxWriteError", None)
    if cls is not None:
        return cls(1, "injected", possibly_written=possibly_written)  # type: ignore[no-any-return]
    error = RuntimeError("injected")
    error.possibly_written = possibly_written  # type: ignore[attr-defined]
    return error


class FailingAdd:
    """A SQLiteOutbox whose add() raises ``error``."""

    def __init__(self, inner: SQLiteOutbox, error: Exception) -> None:
        self.inner = inner
        self.error = error

    def add(self, entries: Any, *, connection: Any = None) -> list[int]:
        raise self.error

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


class TestFailedOutboxWrites:
    @pytest.mark.parametrize(
        ("possibly_written", "code", "says"),
        [
            (True, "_OUTBOX_WRITE_UNKNOWN", "outcome of the outbox write is unknown"),
            (False, "_OUTBOX_WRITE_FAILED", "it was not stored"),
        ],
    )
    def test_the_handle_says_whether_the_event_may_be_stored(
        self, store: SQLiteOutbox, possibly_written: bool, code: str, says: str
    ) -> None:
        """A write whose outcome is unknown settles the handle _OUTBOX_WRITE_UNKNOWN,
        possibly_written, 'unknown ... re-send with the same event_id'; a write that stored
        nothing settles it _OUTBOX_WRITE_FAILED; publish() re-raises the store's error."""
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

        spans = InMemorySpanExporter()
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(spans))
        error = outbox_write_error(possibly_written)
        pub = Publisher(
            transport=MemoryTransport(),
            outbox=FailingAdd(store, error),  # type: ignore[arg-type]
            relay=False,
            tracer_provider=provider,
        )
        with pytest.raises(type(error)) as raised:
            pub.publish(order(1))
        assert raised.value is error
        [span] = spans.get_finished_spans()  # the event's span ends as the handle settles
        assert span.attributes is not None and span.attributes["error.type"] == code
        failure = types.SimpleNamespace(
            reason=span.status.description or "",
            possibly_written="may still have been written" in (span.status.description or ""),
        )
        assert failure.possibly_written == possibly_written
        assert says in failure.reason
        assert "same event_id" in failure.reason
        pub.close(1)


class _BlockingCodec:
    """JSON, except that the first encode waits until released (a publish mid-prepare)."""

    content_type = "application/json"

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()

    def encode(self, event: Any) -> bytes:
        import msgspec

        self.entered.set()
        self.release.wait(10)
        return msgspec.json.encode(event)

    def decode(self, data: bytes, type: Any) -> Any:
        import msgspec

        return msgspec.json.decode(data, type=type)


def test_a_publish_that_close_overtakes_ends_its_span_as_closed(store: SQLiteOutbox) -> None:
    """publish() prepared its event (span started), then close() shut the gate before the
    outbox write: it raises PublisherStateError, and the event's span ends (_CLOSED), as in
    direct mode, instead of never being exported."""
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    spans = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(spans))
    codec = _BlockingCodec()
    pub = Publisher(
        transport=MemoryTransport(), outbox=store, tracer_provider=provider, codec=codec
    )
    raised: list[BaseException] = []

    def publish() -> None:
        try:
            pub.publish(order(1))
        except BaseException as exc:
            raised.append(exc)

    publisher = threading.Thread(target=publish)
    publisher.start()
    assert codec.entered.wait(10)
    closer = threading.Thread(target=pub.close, args=(5,))
    closer.start()
    for _ in range(1000):  # until close() has shut the gate (it then waits for senders)
        if pub._core.ledger.closed:
            break
        time.sleep(0.01)
    codec.release.set()
    publisher.join(10)
    closer.join(10)
    assert [type(e) for e in raised] == [PublisherStateError]
    [span] = spans.get_finished_spans()
    assert span.attributes is not None and span.attributes["error.type"] == "_CLOSED"
    assert store.status().pending == 0  # nothing was written


class ReconcilingStore:
    """A SQLiteOutbox that, right after each mark_sent commits, lets the publisher's
    periodic reconcile run -- the moment a flush() on another thread can hit, between
    the relay's mark and its report to the publisher."""

    def __init__(self, inner: SQLiteOutbox) -> None:
        self.inner = inner
        self.reconcile: Any = None
        self.reconciled = 0

    def mark_sent(self, ids: list[int], *, dead_lettered: str | None = None) -> None:
        self.inner.mark_sent(ids, dead_lettered=dead_lettered)
        if self.reconcile is not None:
            self.reconciled += 1
            self.reconcile()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


class TestReconcileAgainstItsOwnRelay:
    def test_a_reconcile_between_the_relays_mark_and_its_report_keeps_the_real_offsets(
        self, store: SQLiteOutbox
    ) -> None:
        """A row this publisher's own relay has marked sent but not yet reported is left
        to that relay: its handle gets the partition and offset Kafka gave, never the
        -1/-1 of a row another process shipped (CI saw this under load)."""
        racing = ReconcilingStore(store)
        transport = MemoryTransport()
        with Publisher(transport=transport, outbox=racing) as pub:  # type: ignore[arg-type]
            racing.reconcile = pub._sink.reconcile  # type: ignore[attr-defined]
            handles = pub.publish_many([order(n) for n in range(5)])
            pub.flush(10)
            results = [h.result(timeout=1) for h in handles]
        assert racing.reconciled > 0
        records = {r.header("ce_id"): (r.partition, r.offset) for r in transport.records()}
        assert [(m.partition, m.offset) for m in results] == [
            records[h.event_id.encode()] for h in handles
        ]

    def test_a_reconcile_right_after_a_claim_ahead_marked_the_last_acks_keeps_them_too(
        self, tmp_path: Path
    ) -> None:
        """The same when the marks ride on the claim of the next batch (full batches): the
        rows that claim marked sent stay the relay's until it has reported them."""
        calls: list[Any] = []

        store = SQLiteOutbox(tmp_path / "outbox.db")
        claim_passing = store._claim_passing

        def racing(*args: Any, **kwargs: Any) -> list[ClaimedEntry]:
            batch = claim_passing(*args, **kwargs)
            if calls and kwargs.get("sent"):
                calls.append(calls[0]())
            return batch

        # on the instance: a subclass overriding it would turn the claim ahead off
        store._claim_passing = racing  # type: ignore[method-assign]
        transport = MemoryTransport()
        with Publisher(  # type: ignore[arg-type]
            transport=transport, outbox=store, relay=False
        ) as pub:
            handles = pub.publish_many([order(n) for n in range(40)])
        with Publisher(transport=transport, outbox=store, relay_options={"batch_size": 10}) as pub:
            calls.append(pub._sink.reconcile)  # type: ignore[attr-defined]
            handles = pub.publish_many([order(n) for n in range(40, 80)])
            pub.flush(10)
            results = [h.result(timeout=1) for h in handles]
        assert len(calls) > 1  # the claim ahead marked acks and the reconcile ran
        records = {r.header("ce_id"): (r.partition, r.offset) for r in transport.records()}
        assert [(m.partition, m.offset) for m in results] == [
            records[h.event_id.encode()] for h in handles
        ]


class TestCloseStaysWithinItsTimeout:
    @pytest.mark.parametrize("kind", ["sync", "async"])
    def test_close_with_an_unanswering_broker_takes_its_timeout_not_twice_it(
        self, store: SQLiteOutbox, kind: str
    ) -> None:
        """close(t) flushed for t and then gave the relay's stop up to min(t, 10) more, so
        a 30 s close took 40 s, past an orchestrator's grace period sized by the docs.
        The flush and the stop now share the one timeout."""
        import asyncio

        from eventwire import AsyncPublisher

        # No broker answers: the relay's round waits for its acks (up to ack_timeout, 30 s)
        unreachable = "127.0.0.1:1"
        timeout = 3.0
        if kind == "sync":
            publisher = Publisher(unreachable, connect_timeout=None, outbox=store)
            handles = [publisher.publish(order(n)) for n in range(3)]
            time.sleep(0.5)  # the relay has claimed and sent them
            started = time.monotonic()
            publisher.close(timeout)
            took = time.monotonic() - started
            assert {h.failure.code for h in handles if h.failure} == {"_IN_OUTBOX"}
        else:

            async def main() -> float:
                publisher = AsyncPublisher(unreachable, connect_timeout=None, outbox=store)
                for n in range(3):
                    publisher.publish_nowait(order(n))
                await asyncio.sleep(0.5)
                started = time.monotonic()
                await publisher.close(timeout)
                return time.monotonic() - started

            took = asyncio.run(main())
        # (before: 2 x timeout; the margin is for a loaded machine)
        assert timeout - 0.1 <= took < timeout * 1.5
        assert store.status().pending == 3  # durable, for the next relay


class TestSQLiteWriteLockWaits:
    """publish() on a SQLite outbox whose file another connection keeps write-locked."""

    def test_publish_inside_its_own_write_transaction_fails_with_a_hint(
        self, tmp_path: Path
    ) -> None:
        """publish() (not stage()) inside the application's own open write transaction on
        the outbox's file waits for that transaction's lock, then fails: the error says so
        and points at stage()."""
        from eventwire._errors import OutboxWriteError

        outbox = SQLiteOutbox(tmp_path / "shop.db", busy_timeout_s=0.3)
        conn = sqlite3.connect(tmp_path / "shop.db")
        conn.execute("CREATE TABLE orders (id TEXT PRIMARY KEY)")
        conn.commit()
        with Publisher(transport=MemoryTransport(), outbox=outbox, relay=False) as pub:
            with conn, pytest.raises(OutboxWriteError) as info:  # noqa: PT012 - the point
                conn.execute("INSERT INTO orders VALUES ('o-1')")
                pub.publish(order(1))
            assert info.value.possibly_written is False
            assert "stage(event, connection=conn)" in str(info.value)
            assert outbox.status().pending == 0
        conn.close()

    def test_publish_waits_one_busy_timeout_not_two(self, tmp_path: Path) -> None:
        """Its relay's claim held the store's connection while it waited one busy timeout
        for the lock; publish() then waited another (up to twice busy_timeout_s)."""
        from eventwire._errors import OutboxWriteError

        outbox = SQLiteOutbox(tmp_path / "o.db", busy_timeout_s=2)
        locker = sqlite3.connect(tmp_path / "o.db", isolation_level=None)
        locker.execute("BEGIN IMMEDIATE")
        locker.execute("UPDATE eventwire_outbox SET attempts = attempts")
        took: list[float] = []
        try:
            with Publisher(transport=MemoryTransport(), outbox=outbox) as pub:
                time.sleep(0.5)  # the relay's first claim waits for the lock
                for n in range(3):
                    started = time.monotonic()
                    with pytest.raises(OutboxWriteError):
                        pub.publish(order(n))
                    took.append(time.monotonic() - started)
                locker.execute("ROLLBACK")
        finally:
            locker.close()
        assert max(took) < 3.0, took


class TestOutboxStatusFailedCollapsed:
    """observability review 2, F01: a store outage during flush() writes a handful of lines."""

    def test_repeated_store_errors_while_reconciling_are_collapsed(
        self, store: SQLiteOutbox, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        from eventwire.observability.logging import capture_logs

        transport = MemoryTransport()
        transport.pause()  # the events wait: reconcile() asks the store about them
        pub = Publisher(transport=transport, outbox=store)
        try:
            for n in range(3):
                pub.publish(order(n))

            def down(*_args: Any, **_kwargs: Any) -> Any:
                raise sqlite3.OperationalError("connection refused")

            monkeypatch.setattr(store, "row_states", down)
            monkeypatch.setattr(store, "status", down)
            sink: Any = pub._sink  # type: ignore[attr-defined]
            with capture_logs() as logs:
                for _ in range(20):
                    assert sink.reconcile() == 0
                    assert sink._drained() is True
            lines = [log for log in logs if log["event"] == "outbox_status_failed"]
            assert len(lines) == 1
            assert "connection refused" in lines[0]["error"]
        finally:
            monkeypatch.undo()
            pub.close(0.1)
