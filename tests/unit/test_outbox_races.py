"""Cross-thread interleavings of an outbox publisher: its relay thread, a flush() on
another thread (with its periodic reconcile against the store), a re-publish of one
event_id, and a close() that times out under a stuck round.

Each test forces one interleaving with gates in a store wrapper (MemoryTransport and a
real SQLite outbox), and states the promise it keeps.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest

from eventwire import DeliveryError, DeliveryHandle, Publisher
from eventwire.outbox import ClaimedEntry, SQLiteOutbox
from eventwire.transports.memory import MemoryTransport

from .conftest import PaymentTaken, order

WAIT_S = 10.0


def must(gate: threading.Event, what: str) -> None:
    assert gate.wait(WAIT_S), f"the interleaving did not happen: {what}"


class Wrapped:
    """A SQLiteOutbox whose relay claims nothing until ``claims`` is set."""

    def __init__(self, tmp_path: Path) -> None:
        self.inner = SQLiteOutbox(tmp_path / "outbox.db")
        self.claims = threading.Event()

    def claim_batch(self, limit: int, *, owner: str, lease_s: float) -> list[ClaimedEntry]:
        if not self.claims.is_set():
            return []
        return self.inner.claim_batch(limit, owner=owner, lease_s=lease_s)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def publisher(store: Any, transport: MemoryTransport) -> Publisher:
    return Publisher(
        transport=transport,
        outbox=store,
        relay_options={"dead_letter": None, "idle_interval_s": 0.01},
    )


def refusing_publisher(store: Wrapped) -> tuple[Publisher, MemoryTransport]:
    """A publisher on ``store`` whose relay claims at once and whose Kafka refuses
    ``orders`` for good (its events are parked) until ``heal()``."""
    store.claims.set()
    transport = MemoryTransport()
    transport.fail_topic("orders", "TOPIC_AUTHORIZATION_FAILED")
    return publisher(store, transport), transport


def in_thread(name: str, target: Any) -> threading.Thread:
    thread = threading.Thread(target=target, name=name, daemon=True)
    thread.start()
    return thread


def test_a_reconcile_that_read_the_store_before_the_relay_reported_leaves_a_resends_handle_alone(
    tmp_path: Path,
) -> None:
    """A flush()'s reconcile that read the row as sent, resumed after the relay reported
    it, must not replace the report kept for a re-publish of the same event_id still in
    add(): that handle gets Kafka's partition and offset, not -1/-1."""
    added, resume_add, in_states, resume_states = (threading.Event() for _ in range(4))

    class Store(Wrapped):
        def add(self, entries: Any, *, connection: Any = None) -> list[int]:
            ids: list[int] = self.inner.add(entries, connection=connection)
            if threading.current_thread().name == "resend":
                added.set()
                resume_add.wait(WAIT_S)
            return ids

        def row_states(self, ids: Any) -> Any:
            if threading.current_thread().name == "flusher":
                in_states.set()
                resume_states.wait(WAIT_S)
            return self.inner.row_states(ids)

    store = Store(tmp_path)
    transport = MemoryTransport()
    pub = publisher(store, transport)
    relay = pub._sink.relay  # type: ignore[attr-defined]
    first = pub.publish(order(1), event_id="X")
    box: dict[str, DeliveryHandle] = {}
    resend = in_thread("resend", lambda: box.update(h=pub.publish(order(1), event_id="X")))
    must(added, "the re-publish's add() returned the row")
    flusher = in_thread("flusher", lambda: pub.flush(WAIT_S))
    must(in_states, "the reconcile reads the store")
    store.claims.set()
    first.result(timeout=WAIT_S)
    while relay.in_hand():
        time.sleep(0.005)
    resume_states.set()
    flusher.join(WAIT_S)
    resume_add.set()
    resend.join(WAIT_S)
    [record] = transport.records("orders")
    second = box["h"].result(timeout=WAIT_S)
    assert (second.partition, second.offset) == (record.partition, record.offset) == (0, 0)
    pub.close(5)


def test_flush_waits_for_handles_the_relay_is_still_settling(tmp_path: Path) -> None:
    """While the relay thread settles a row's handles (a done-callback of the first is
    still running), flush() keeps waiting: when it returns, every held handle is
    settled and the row's failure is raised by this flush, not the next."""
    in_callback, resume = threading.Event(), threading.Event()
    store = Wrapped(tmp_path)
    transport = MemoryTransport()
    transport.fail_topic("orders", "TOPIC_AUTHORIZATION_FAILED")
    pub = publisher(store, transport)
    first = pub.publish(order(1), event_id="X")
    second = pub.publish(order(1), event_id="X")  # the same unsent row

    def slow(_: DeliveryHandle) -> None:
        in_callback.set()
        resume.wait(1.0)

    first.add_done_callback(slow)
    store.claims.set()
    must(in_callback, "the first handle's done-callback runs")
    with pytest.raises(DeliveryError) as raised:
        pub.flush(WAIT_S)
    assert second.done()
    # the first's failure was told to its done-callback: only the second's is raised
    assert [f.event_id for f in raised.value.failures] == ["X"]
    pub.flush(1)  # nothing left to raise
    pub.close(5)


def test_a_resend_of_a_parked_event_is_not_failed_by_the_park_reported_after_it_began(
    tmp_path: Path,
) -> None:
    """The relay parks a row and reports it only after a re-publish of that event began
    and requeued the row: the re-publish's handle is not failed by the old park; it
    resolves when the requeued row is delivered."""
    parked, added, reported = threading.Event(), threading.Event(), threading.Event()

    class Store(Wrapped):
        def park(self, entry_id: int, error: str, *, owner: str | None = None) -> bool:
            done: bool = self.inner.park(entry_id, error, owner=owner)
            parked.set()
            added.wait(WAIT_S)  # the relay is preempted right after the park's commit
            return done

        def add(self, entries: Any, *, connection: Any = None) -> list[int]:
            ids: list[int] = self.inner.add(entries, connection=connection)
            if parked.is_set():
                added.set()
                reported.wait(WAIT_S)  # the caller is preempted before add() returns
            return ids

    store = Store(tmp_path)
    pub, transport = refusing_publisher(store)
    told = pub._sink.given_up  # type: ignore[attr-defined]

    def given_up(*args: Any) -> None:
        told(*args)
        reported.set()

    pub._sink.given_up = given_up  # type: ignore[attr-defined]
    pub._sink.relay.listener = pub._sink  # type: ignore[attr-defined]
    first = pub.publish(order(1), event_id="X")
    must(parked, "the relay parks the row")
    transport.heal()
    second = pub.publish(order(1), event_id="X")  # a deliberate re-send: starts over
    assert reported.is_set()
    result = second.result(timeout=WAIT_S)
    [record] = transport.records("orders")
    assert (result.partition, result.offset) == (record.partition, record.offset)
    assert first.failure is not None and first.failure.code == "TOPIC_AUTHORIZATION_FAILED"
    pub.close(5)


def test_a_reconciles_stale_read_of_a_parked_row_does_not_fail_a_resend_that_requeued_it(
    tmp_path: Path,
) -> None:
    """A reconcile that read the row as parked, resumed after a re-publish requeued it,
    leaves the re-publish's handle waiting; it resolves at the delivery."""
    parked, read, resume = threading.Event(), threading.Event(), threading.Event()

    class Store(Wrapped):
        def park(self, entry_id: int, error: str, *, owner: str | None = None) -> bool:
            done: bool = self.inner.park(entry_id, error, owner=owner)
            parked.set()
            read.wait(WAIT_S)  # the reconcile reads the store before the relay reports
            return done

        def row_states(self, ids: Any) -> Any:
            states = self.inner.row_states(ids)
            if threading.current_thread().name == "flusher":
                read.set()
                resume.wait(WAIT_S)  # preempted after its read
            return states

    store = Store(tmp_path)
    pub, transport = refusing_publisher(store)
    relay = pub._sink.relay  # type: ignore[attr-defined]
    first = pub.publish(order(1), event_id="X")
    must(parked, "the relay parks the row")

    def flush() -> None:
        with pytest.raises(DeliveryError):
            pub.flush(WAIT_S)

    flusher = in_thread("flusher", flush)
    must(read, "the reconcile read the row as parked")
    while not first.done() or relay.in_hand():
        time.sleep(0.005)
    store.claims.clear()
    transport.heal()
    second = pub.publish(order(1), event_id="X")  # requeues the row
    resume.set()
    flusher.join(WAIT_S)
    assert not second.done()
    store.claims.set()
    result = second.result(timeout=WAIT_S)
    [record] = transport.records("orders")
    assert (result.partition, result.offset) == (record.partition, record.offset)
    pub.close(5)


def test_a_round_stuck_past_close_puts_a_given_up_event_back_instead_of_parking_it(
    tmp_path: Path,
) -> None:
    """close() timed out under a round still settling, so it told the handle the event
    waits in the outbox (_IN_OUTBOX): the dead letter the closed producer then cannot
    send leaves the event pending for the next relay, never parked where no relay goes."""
    stuck, resume = threading.Event(), threading.Event()

    class Store(Wrapped):
        def mark_retry_many(self, retries: Any, *, owner: str | None = None) -> Any:
            stuck.set()
            resume.wait(WAIT_S)  # a slow store write, before the round's dead letters
            return self.inner.mark_retry_many(retries, owner=owner)

    store = Store(tmp_path)
    transport = MemoryTransport()
    transport.fail_next(1, "_MSG_TIMED_OUT")  # retriable, for the order
    transport.fail_topic("payments", "TOPIC_AUTHORIZATION_FAILED")  # permanent
    pub = Publisher(transport=transport, outbox=store, relay_options={"idle_interval_s": 0.01})
    thread = pub._sink.relay._thread  # type: ignore[attr-defined]
    _, payment = pub.publish_many([order(1), PaymentTaken(payment_id=7, amount=1.0)])
    store.claims.set()
    must(stuck, "the round is stuck in a store write")
    pub.close(0.5)
    assert payment.failure is not None and payment.failure.code == "_IN_OUTBOX"
    resume.set()
    thread.join(WAIT_S)
    assert not thread.is_alive()
    assert store.inner.row_states([2])[2].state == "pending"
    assert store.inner.status().parked == 0


@pytest.mark.asyncio
async def test_an_async_resend_of_a_parked_event_is_not_failed_by_the_park_reported_after_it_began(
    tmp_path: Path,
) -> None:
    """The same with AsyncPublisher: its future resolves at the requeued row's delivery
    (the store is asked off the loop, in a thread)."""
    import asyncio

    from eventwire import AsyncPublisher

    parked, added, reported = threading.Event(), threading.Event(), threading.Event()
    loop_thread = threading.current_thread()
    read_on_loop: list[bool] = []

    class Store(Wrapped):
        def park(self, entry_id: int, error: str, *, owner: str | None = None) -> bool:
            done: bool = self.inner.park(entry_id, error, owner=owner)
            parked.set()
            added.wait(WAIT_S)
            return done

        def add(self, entries: Any, *, connection: Any = None) -> list[int]:
            ids: list[int] = self.inner.add(entries, connection=connection)
            if parked.is_set():
                added.set()
                reported.wait(WAIT_S)
            return ids

        def row_states(self, ids: Any) -> Any:
            read_on_loop.append(threading.current_thread() is loop_thread)
            return self.inner.row_states(ids)

    store = Store(tmp_path)
    store.claims.set()
    transport = MemoryTransport()
    transport.fail_topic("orders", "TOPIC_AUTHORIZATION_FAILED")
    pub = AsyncPublisher(
        transport=transport,
        outbox=store,  # type: ignore[arg-type]
        relay_options={"dead_letter": None, "idle_interval_s": 0.01},
    )
    sink = pub._outbox.sink  # type: ignore[union-attr]
    told = sink.given_up

    def given_up(*args: Any) -> None:
        told(*args)
        reported.set()

    sink.given_up = given_up  # type: ignore[method-assign]
    first = pub.publish_nowait(order(1), event_id="X")
    assert await asyncio.to_thread(parked.wait, WAIT_S), "the relay parks the row"
    transport.heal()
    result = await asyncio.wait_for(pub.publish(order(1), event_id="X"), WAIT_S)
    assert reported.is_set()
    with pytest.raises(DeliveryError):
        await first
    [record] = transport.records("orders")
    assert (result.partition, result.offset) == (record.partition, record.offset)
    assert read_on_loop and not any(read_on_loop)
    await pub.close(5)


def test_a_close_that_gave_up_on_a_stuck_round_settles_its_delivered_events_from_the_store(
    tmp_path: Path,
) -> None:
    """The relay thread is stuck in a slow done-callback of one event after its round
    marked two sent; close() times out. The other event's handle is settled as delivered
    (from the store), not called _IN_OUTBOX, which would tell the caller it is unsent."""
    inside, release = threading.Event(), threading.Event()
    store = Wrapped(tmp_path)
    transport = MemoryTransport()
    pub = publisher(store, transport)
    first, second = pub.publish(order(1)), pub.publish(order(2))

    def slow(_: DeliveryHandle) -> None:
        inside.set()
        release.wait(WAIT_S)

    first.add_done_callback(slow)
    store.claims.set()
    must(inside, "the relay thread runs the slow done-callback")
    try:
        pub.close(0.3)
        assert second.failure is None
        assert len(transport.records("orders")) == 2
    finally:
        release.set()


def test_flush_inside_a_done_callback_does_not_wait_for_that_handle(tmp_path: Path) -> None:
    """A done-callback that flush()'s reconcile runs (a row another process's relay
    shipped) may call flush() itself: that flush does not wait for the handle whose
    callback it is in."""

    class Elsewhere(Wrapped):  # this publisher's relay claims nothing: another ships
        pass

    store = Elsewhere(tmp_path)
    pub = publisher(store, MemoryTransport())
    handle = pub.publish(order(1))
    took: list[float] = []

    def flush_again(_: DeliveryHandle) -> None:
        started = time.monotonic()
        pub.flush(3)
        took.append(time.monotonic() - started)

    handle.add_done_callback(flush_again)
    store.inner.mark_sent([1])  # shipped by "another process's relay"
    pub.flush(WAIT_S)
    assert handle.done() and took and took[0] < 1.0
    pub.close(1)
