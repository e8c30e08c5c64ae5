"""Regression tests for the delivery defects of the second review (issue 15, items 1-9 and 14).

Each test pins one promise and failed on the commit before its fix (80523fd); the
failing assertion is quoted in the test's docstring. Memory transport and SQLite
unless named otherwise; the Kafka ones use librdkafka's in-process mock cluster.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from types import FrameType
from typing import Any

import msgspec
import pytest

from eventwire import DeliveryError, DeliveryFailure, KafkaConfig, Publisher
from eventwire._inflight import InFlight
from eventwire.outbox import OutboxEntry, OutboxRelay, SQLiteOutbox
from eventwire.transports.base import DeliveryCallback, TransportQueueFull
from eventwire.transports.memory import MemoryTransport, _Error, _Report

from . import test_review_regressions as _regressions
from .conftest import order
from .test_review_regressions import (
    TOPIC,
    BufferingTransport,
    close_reporting,
    logged_ns,
)


def entry(n: int, key: str = "k") -> OutboxEntry:
    return OutboxEntry(
        f"id-{n}", "T", TOPIC, key.encode(), f"v{n}".encode(), (("ce_id", f"id-{n}".encode()),)
    )


def last_copy_order(transport: MemoryTransport, key: bytes) -> list[str]:
    """The ce_ids of ``key``'s records, each at the position of its last copy in the log."""
    records = sorted(
        (r for r in transport.records(TOPIC) if r.key == key), key=lambda r: r.sequence
    )
    last: dict[str, int] = {}
    for position, r in enumerate(records):
        last[(r.header("ce_id") or b"").decode()] = position
    return sorted(last, key=last.__getitem__)


def first_copy_order(transport: MemoryTransport, key: bytes) -> list[int]:
    """The ``n`` of ``key``'s events in the log, de-duplicated on ce_id (first copy kept)."""
    seen: set[bytes] = set()
    out: list[int] = []
    for r in sorted(transport.records(TOPIC), key=lambda r: r.sequence):
        ce_id = r.header("ce_id") or b""
        if r.key == key and ce_id not in seen:
            seen.add(ce_id)
            out.append(int(msgspec.json.decode(r.value)["total_price"]))
    return out


#: librdkafka's in-process mock cluster with the topic: the regression suite's fixture.
mock = _regressions.mock


@pytest.fixture
def store(tmp_path: Path) -> SQLiteOutbox:
    return SQLiteOutbox(tmp_path / "outbox.db")


# -- 1. the relay: a failed report holds back the rest of its key -----------------------------
def test_a_failed_report_holds_back_the_later_events_of_its_key(store: SQLiteOutbox) -> None:
    """v1's report fails (retriable), v2 of the same key is acked in the same round: v2 is
    sent again after v1, so each event's last copy in the log is in key order.

    On 80523fd: ``['id-2', 'id-1'] == ['id-1', 'id-2']`` (v2 marked sent, v1 re-sent after it).
    """
    store.add([entry(1), entry(2), entry(3, key="other")])
    transport = MemoryTransport(partitions=1)
    transport.fail_next(1, "_MSG_TIMED_OUT")
    relay = OutboxRelay(store, lambda: transport, base_backoff_s=0.01, max_backoff_s=0.02)
    assert relay.drain(timeout=5)
    assert last_copy_order(transport, b"k") == ["id-1", "id-2"]
    assert last_copy_order(transport, b"other") == ["id-3"]  # other keys are not held
    assert relay.stats.held_back == 1


def test_a_given_up_event_does_not_hold_back_its_key(store: SQLiteOutbox) -> None:
    """A permanent failure leaves the stream (dead letter): the next event of its key stays sent."""
    store.add([entry(1), entry(2)])
    transport = MemoryTransport(partitions=1)
    transport.fail_next(1, "INVALID_RECORD")
    relay = OutboxRelay(store, lambda: transport)
    assert relay.drain(timeout=5)
    assert [r.header("ce_id") for r in transport.records(TOPIC)] == [b"id-2"]
    assert relay.stats.held_back == 0 and relay.stats.dead_lettered == 1


# -- 8. the relay's retry budget counts real attempts only -------------------------------------
class RefusingFirst(MemoryTransport):
    """The queue is full for ``v1`` in the first ``rounds`` rounds; ``v2``'s first report fails.

    (A relay round ends with one flush(), which counts the rounds.)
    """

    def __init__(self, rounds: int) -> None:
        super().__init__(partitions=1)
        self.rounds = rounds
        self.flushes = 0
        self.v2_failed = False

    def flush(self, timeout: float) -> int:
        self.flushes += 1
        return super().flush(timeout)

    def send(
        self,
        topic: str,
        key: bytes | None,
        value: bytes,
        headers: Sequence[tuple[str, bytes]],
        on_delivery: DeliveryCallback,
    ) -> None:
        if value == b"v1" and self.flushes < self.rounds:
            raise TransportQueueFull()
        if value == b"v2" and not self.v2_failed:
            self.v2_failed = True
            self.fail_next(1, "_MSG_TIMED_OUT")
        super().send(topic, key, value, headers, on_delivery)


def test_held_back_rounds_do_not_use_up_the_retry_budget(store: SQLiteOutbox) -> None:
    """With max_attempts=4, an event held back for 3 rounds behind its key's blocker still
    gets its retries: its first real failure is retried, not dead-lettered.

    On 80523fd: ``assert 1 == 0`` (relay.stats.dead_lettered: v2 dead-lettered at once).
    """
    store.add([entry(1), entry(2)])
    transport = RefusingFirst(rounds=3)
    relay = OutboxRelay(
        store,
        lambda: transport,
        max_attempts=4,
        ack_timeout=0.01,
        base_backoff_s=0.001,
        max_backoff_s=0.002,
    )
    assert relay.drain(timeout=10)
    assert relay.stats.dead_lettered == 0
    assert [r.value for r in transport.records(TOPIC)] == [b"v1", b"v2"]


# -- 9a. the relay's stop() racing a producer replacement ---------------------------------------
def test_a_stopped_relay_makes_no_new_producer(store: SQLiteOutbox) -> None:
    """A round that runs after stop() (its thread outlived the join) does not re-create the
    producer after a fatal error: a producer made then would never be closed.

    On 80523fd: ``assert 2 == 1`` (the factory was called after stop()).
    """
    made: list[MemoryTransport] = []

    def factory() -> MemoryTransport:
        made.append(MemoryTransport())
        return made[-1]

    relay = OutboxRelay(store, factory)
    made[0].set_fatal()
    relay.stop(0)
    store.add([entry(1)])
    relay.run_once()  # what a round still running when stop() returned does next
    assert len(made) == 1
    assert store.status().pending == 1  # nothing lost: the next relay sends it


# -- 2. order across a producer replacement ------------------------------------------------------
def test_a_done_callback_publishing_during_a_resend_goes_after_older_events_of_its_key() -> None:
    """While a replacement re-sends 0, 1, 2 (key k), event 0's done-callback publishes 999 (key
    k): the log, de-duplicated on ce_id, has 0, 1, 2, 999.

    On 80523fd: ``[0, 999, 1, 2] == [0, 1, 2, 999]``.
    """
    transport = BufferingTransport(partitions=1)
    pub = Publisher(transport=transport, source="urn:test")
    late: list[Any] = []
    first = pub.publish(order(0, key="k"))
    first.add_done_callback(lambda _h: late.append(pub.publish(order(999, key="k"))))
    rest = [pub.publish(order(n, key="k")) for n in (1, 2)]
    transport.set_fatal()
    pub.flush(5)
    assert first_copy_order(transport, b"k") == [0, 1, 2, 999]
    assert all(h.done() and not h.failed() for h in [first, *rest, *late])
    pub.close(5)


# -- 7. nothing is sent after close() returns ----------------------------------------------------
def test_nothing_is_written_after_close_returns_during_a_slow_replacement() -> None:
    """close() gives up waiting for a replacement still re-sending (its sends wait for queue
    space): the replacement is closed too, so nothing reaches the log after close() returns.

    On 80523fd: ``[0, 1, 2, 3] == [0]`` (the replacement kept writing after close()).
    Now: event 0 was re-sent before close(); 1-3 are reported, never written.
    """
    first_refusal: list[float] = []

    def refuse(n: int) -> bool:  # event 1 finds the queue full for 1.5 s, then goes
        if n != 1:
            return False
        first_refusal[:] = first_refusal or [time.monotonic()]
        return time.monotonic() - first_refusal[0] < 1.5

    transport = BufferingTransport(refuse=refuse, partitions=1)
    pub = Publisher(transport=transport, source="urn:test", enqueue_timeout=5)
    handles = [pub.publish(order(n, key=f"k{n}")) for n in range(4)]
    fatal = threading.Thread(target=transport.set_fatal)
    fatal.start()
    assert transport.fill_started()
    close_reporting(pub, 0.1)
    at_close = logged_ns(transport)
    fatal.join(30)
    time.sleep(0.2)
    assert logged_ns(transport) == at_close == [0]
    assert all(h.done() for h in handles)


# -- 9c. the ledger records a failure before it stops counting the event -------------------------
def test_a_failure_is_recorded_before_the_ledger_reports_the_event_gone() -> None:
    """At no line of InFlight.settle is the ledger empty while the failure is still unrecorded
    (a flush on another thread would return clean).

    On 80523fd: ``assert [] != []`` (the ledger was empty and no failure recorded).
    """
    ledger = InFlight()
    handle = ledger_handle(ledger)
    ledger.add(handle)
    seen: list[list[DeliveryFailure]] = []

    def tracer(frame: FrameType, event: str, _arg: Any) -> Any:
        code = InFlight.settle.__code__
        if frame.f_code is code and event == "line" and not seen and len(ledger) == 0:
            error = ledger.failures_error(False, "flush")
            seen.append(list(error.failures) if error is not None else [])
        return tracer

    failure = handle.failure_from("_MSG_TIMED_OUT", "x")
    sys.settrace(tracer)
    try:
        ledger.settle(handle, None, failure)
    finally:
        sys.settrace(None)
    assert seen, "the ledger never became empty"
    assert seen[0] != [], "the ledger was empty while the failure was not yet recorded"


def ledger_handle(ledger: InFlight) -> Any:
    from eventwire._handle import DeliveryHandle

    return DeliveryHandle(ledger, "id-1", "T", TOPIC, time.time_ns())


# -- 3. possibly_written comes from what may have happened to the event ---------------------------
def test_flush_timeout_is_possibly_written() -> None:
    """An event still queued when flush() times out may land later: possibly_written=True.

    On 80523fd: ``assert False is True``.
    """
    transport = MemoryTransport()
    pub = Publisher(transport=transport, source="urn:test")
    transport.pause()
    handle = pub.publish(order(1))
    with pytest.raises(DeliveryError) as caught:
        pub.flush(0.05)
    [failure] = caught.value.failures
    assert failure.code == "_FLUSH_TIMEOUT"
    assert failure.possibly_written is True
    transport.resume()
    assert handle.result(1).event_id in {
        (r.header("ce_id") or b"").decode() for r in transport.records(TOPIC)
    }
    pub.close(1)


def test_in_outbox_at_close_is_possibly_written(store: SQLiteOutbox) -> None:
    """An event still in the outbox at close() will be written by the next relay.

    On 80523fd: ``assert False is True``.
    """
    pub = Publisher(transport=MemoryTransport(), source="urn:test", outbox=store, relay=False)
    handle = pub.publish(order(1))
    close_reporting(pub, 0.1)
    assert handle.failure is not None and handle.failure.code == "_IN_OUTBOX"
    assert handle.failure.possibly_written is True


def test_purged_from_the_queue_after_a_request_timeout_is_possibly_written(mock: Any) -> None:
    """A record whose ProduceRequest timed out waits in librdkafka's queue for its retry; purged
    by close() it is reported ``_PURGE_QUEUE``, yet the broker may have written it (the
    request reached it; only the answer was late), so it is reported possibly_written.

    On 80523fd: ``assert False is True`` (reported possibly_written=False).
    """
    config = KafkaConfig(
        mock.bootstrap_servers,
        overrides={"request.timeout.ms": 1000, "message.timeout.ms": 30000},
    )
    pub = Publisher(config=config, source="urn:test")
    mock.set_rtt(1, 6000)  # (wide margins: the record waits from ~1.1 s to ~6 s)
    handle = pub.publish(order(1))
    time.sleep(2.5)  # the request timed out; the record waits for its retry
    failures = close_reporting(pub, 0)
    mock.set_rtt(1, 0)
    # _PURGE_QUEUE while it waits for the retry (most runs), _PURGE_INFLIGHT if the
    # retry went out already: either way it may be in the log.
    assert [f.code for f in failures] in (["_PURGE_QUEUE"], ["_PURGE_INFLIGHT"])
    assert handle.failure is not None and handle.failure.possibly_written is True


class QueuingTransport(MemoryTransport):
    """Holds records in a local queue (not in the log) and purges them at close()."""

    def __init__(self, may_be_written: bool) -> None:
        super().__init__()
        self.queued_may_be_written = may_be_written
        self.queue: list[DeliveryCallback] = []

    def send(
        self,
        topic: str,
        key: bytes | None,
        value: bytes,
        headers: Sequence[tuple[str, bytes]],
        on_delivery: DeliveryCallback,
    ) -> None:
        self.queue.append(on_delivery)

    def close(self, timeout: float) -> int:
        queued, self.queue = self.queue, []
        for callback in queued:
            callback(_Error("_PURGE_QUEUE", "purged"), _Report(TOPIC, -1, -1, 0))
        return len(queued)


@pytest.mark.parametrize("may_be_written", [True, False])
def test_purge_queue_is_possibly_written_exactly_when_the_transport_says_so(
    may_be_written: bool,
) -> None:
    """``_PURGE_QUEUE`` is possibly_written iff the transport's queue may hold written records
    (KafkaTransport: yes, a record waiting for a retry; a plain local queue: no).

    On 80523fd: ``assert False is True`` for the Kafka-like transport.
    """
    pub = Publisher(transport=QueuingTransport(may_be_written), source="urn:test")
    handle = pub.publish(order(1))
    [failure] = close_reporting(pub, 0)
    assert failure.code == "_PURGE_QUEUE"
    assert failure.possibly_written is may_be_written
    assert handle.failure == failure


# -- 4. several publishers on one outbox -------------------------------------------------------
def test_a_row_shipped_by_another_relay_settles_the_publishers_handle(tmp_path: Path) -> None:
    """Another process's relay ships this publisher's row: flush() returns once it has, the
    handle is delivered, and close() does not call it _IN_OUTBOX.

    On 80523fd: ``flush(5) took 5.0 s`` / handle still pending.
    """
    path = tmp_path / "outbox.db"
    transport = MemoryTransport()
    pub = Publisher(
        transport=transport,
        source="urn:test",
        outbox=SQLiteOutbox(path),
        relay_options={"idle_interval_s": 3600},  # its own relay sleeps: another ships
    )
    time.sleep(0.2)  # (its first, empty round)
    handle = pub.publish(order(1))
    other = OutboxRelay(SQLiteOutbox(path), transport.recreate)
    assert other.drain(timeout=5)
    started = time.monotonic()
    pub.flush(5)
    took = time.monotonic() - started
    assert took < 4.0, f"flush(5) took {took:.1f} s"
    result = handle.result(0)
    assert (result.event_id, result.offset) == (handle.event_id, -1)
    assert close_reporting(pub, 1) == []


def test_a_row_another_relay_parked_fails_the_publishers_handle(tmp_path: Path) -> None:
    """A row another relay gave up on (parked) fails this publisher's handle with its code."""
    path = tmp_path / "outbox.db"
    pub = Publisher(
        transport=MemoryTransport(),
        source="urn:test",
        outbox=SQLiteOutbox(path),
        relay=False,
    )
    handle = pub.publish(order(1))
    failing = MemoryTransport()
    failing.fail_topic(TOPIC, "TOPIC_AUTHORIZATION_FAILED")
    other = OutboxRelay(SQLiteOutbox(path), lambda: failing, dead_letter=None)
    other.run_once()
    close_reporting(pub, 1)
    assert handle.failure is not None
    assert handle.failure.code == "TOPIC_AUTHORIZATION_FAILED"


# -- 6. re-publishing a parked event while another commit is in flight ---------------------------
class SlowAdds(SQLiteOutbox):
    """An outbox whose add() of event id ``slow`` waits until ``release`` is set."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.release = threading.Event()
        self.waiting = threading.Event()

    def add(self, entries: Sequence[OutboxEntry], *, connection: Any = None) -> list[int]:
        if any(e.event_id == "slow" for e in entries):
            self.waiting.set()
            self.release.wait(10)
        return super().add(entries, connection=connection)


def test_republishing_a_parked_event_is_not_matched_to_its_old_report(tmp_path: Path) -> None:
    """An event parked while another commit was in flight, then published again (same
    event_id: its row is requeued), is delivered; the old "given up" does not fail it.

    On 80523fd: ``DeliveryError: ... TOPIC_AUTHORIZATION_FAILED`` from the second handle.
    """
    store = SlowAdds(tmp_path / "outbox.db")
    transport = MemoryTransport()
    transport.fail_topic(TOPIC, "TOPIC_AUTHORIZATION_FAILED")
    pub = Publisher(
        transport=transport,
        source="urn:test",
        outbox=store,
        relay_options={"dead_letter": None, "idle_interval_s": 0.01},
    )
    slow = threading.Thread(target=lambda: pub.publish(order(5, key="s"), event_id="slow"))
    slow.start()
    assert store.waiting.wait(5)  # a commit in flight
    first = pub.publish(order(1), event_id="e1")
    with pytest.raises(DeliveryError):
        first.result(5)  # parked
    transport.heal()
    second = pub.publish(order(1), event_id="e1")  # a deliberate re-send: requeued
    result = second.result(5)
    assert result.event_id == "e1"
    store.release.set()
    slow.join(10)
    failures = close_reporting(pub, 5)  # (the first, parked, publish is reported again)
    assert {f.code for f in failures} <= {"TOPIC_AUTHORIZATION_FAILED"}


# -- 14. a different event under an unsent event_id -------------------------------------------
def test_a_different_event_under_an_unsent_event_id_is_refused(store: SQLiteOutbox) -> None:
    """Same event_id, different value, first still unsent: a typed error, nothing stored,
    and no handle that claims a delivery that never happened.

    On 80523fd: ``DID NOT RAISE`` (the second event was dropped; its handle took the
    first one's delivery).
    """
    from eventwire.outbox.base import EventIdConflictError

    pub = Publisher(transport=MemoryTransport(), source="urn:test", outbox=store, relay=False)
    pub.publish(order(1), event_id="same")
    with pytest.raises(EventIdConflictError, match="same"):
        pub.publish(order(2), event_id="same")
    pub.publish(order(1), event_id="same")  # the same event again: de-duplicated
    assert store.status().pending == 1
    close_reporting(pub, 0.1)


# -- 5. close(timeout) with an outbox is bounded -------------------------------------------------
def test_close_with_an_outbox_is_bounded_when_kafka_is_down(mock: Any, tmp_path: Path) -> None:
    """close(0.5) with the relay's producer holding records for a down broker returns within a
    few seconds, not message.timeout.ms (20 s here); the events stay in the outbox.

    On 80523fd: ``close(0.5) took 20.3 s``.
    """
    config = KafkaConfig(
        mock.bootstrap_servers,
        overrides={
            "message.timeout.ms": 20000,
            "linger.ms": 5,
            # the relay waits for room mid-round: a purge makes room it refills
            "queue.buffering.max.messages": 50,
        },
    )
    store = SQLiteOutbox(tmp_path / "outbox.db")
    pub = Publisher(config=config, source="urn:test", outbox=store)
    pub.publish(order(0)).result(10)
    mock.broker_down(1)
    for n in range(1, 200):
        pub.publish(order(n))
    time.sleep(1.0)  # the relay has claimed and enqueued them
    started = time.monotonic()
    close_reporting(pub, 0.5)
    took = time.monotonic() - started
    mock.broker_up(1)
    assert took < 8.0, f"close(0.5) took {took:.1f} s"
    assert SQLiteOutbox(tmp_path / "outbox.db").status().pending == 199
