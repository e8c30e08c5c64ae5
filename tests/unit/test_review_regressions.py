"""Regression tests for defects an adversarial review reproduced.

Each test pins one promise. The memory-transport tests use transport-level
subclasses to stage a producer replacement precisely (the replacement's re-sends
are held up, or refused for one event); the Kafka ones run against librdkafka's
in-process mock cluster, and the done-callback ones in a child process (see
``callback_worker.py``), since that defect aborted the whole process.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import msgspec
import pytest

from eventwire import (
    AsyncPublisher,
    CircuitBreaker,
    ConfigurationError,
    DeliveryError,
    DeliveryFailure,
    DeliveryHandle,
    KafkaConfig,
    Publisher,
    PublisherStateError,
    SerializationError,
)
from eventwire.outbox import SQLiteOutbox
from eventwire.transports.base import DeliveryCallback, TransportQueueFull
from eventwire.transports.kafka import KafkaTransport
from eventwire.transports.memory import MemoryTransport, _Error, _Report

from .conftest import order

WORKER = Path(__file__).with_name("callback_worker.py")
TOPIC = "orders"  # where conftest's OrderPlaced goes
FATAL = "OUT_OF_ORDER_SEQUENCE_NUMBER"


# -- helpers ---------------------------------------------------------------------------------
def close_reporting(publisher: Publisher, timeout: float) -> list[DeliveryFailure]:
    """Close, returning the failures close() reported instead of raising them."""
    try:
        publisher.close(timeout)
    except DeliveryError as exc:
        return list(exc.failures)
    return []


def logged_ids(transport: MemoryTransport) -> set[str]:
    """The ce_id of every record in the memory log."""
    return {(r.header("ce_id") or b"").decode() for r in transport.records(TOPIC)}


def logged_ns(transport: MemoryTransport) -> list[int]:
    """The ``n`` of every record in the memory log, in the order they were written."""
    records = sorted(transport.records(TOPIC), key=lambda r: r.sequence)
    return [int(msgspec.json.decode(r.value)["total_price"]) for r in records]


def written_but_reported_unwritten(
    handles: Sequence[DeliveryHandle], failures: Sequence[DeliveryFailure], in_log: set[str]
) -> list[tuple[str, str]]:
    """(event_id, code) of events reported ``possibly_written=False`` that are in the log."""
    reported = [h.failure for h in handles if h.failure is not None] + list(failures)
    return sorted(
        {(f.event_id, f.code) for f in reported if not f.possibly_written and f.event_id in in_log}
    )


class Replacement(MemoryTransport):
    """The new producer a fatal error's replacement makes: tells when its fill begins.

    ``refuse(n)`` True makes every send of the event with that ``n`` find the
    queue full (so its re-send gives up after ``enqueue_timeout``).
    """

    def __init__(self, log: Any, refuse: Callable[[int], bool] | None) -> None:
        super().__init__(_log=log)
        self.fill_started = threading.Event()
        self._refuse = refuse

    def send(
        self,
        topic: str,
        key: bytes | None,
        value: bytes,
        headers: Sequence[tuple[str, bytes]],
        on_delivery: DeliveryCallback,
    ) -> None:
        self.fill_started.set()
        if self._refuse is not None and self._refuse(
            int(msgspec.json.decode(value)["total_price"])
        ):
            raise TransportQueueFull()
        super().send(topic, key, value, headers, on_delivery)


class BufferingTransport(MemoryTransport):
    """Like librdkafka with an unreachable partition leader.

    send() queues the record locally (not in the log); set_fatal() purges that
    queue (``_PURGE_QUEUE`` reports), as a fatal error does. Its replacements are
    :class:`Replacement` transports writing to the same log, kept in ``made``.
    """

    def __init__(self, refuse: Callable[[int], bool] | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.queue: list[tuple[str, DeliveryCallback]] = []
        self.made: list[Replacement] = []
        self._refuse_in_replacement = refuse

    def send(
        self,
        topic: str,
        key: bytes | None,
        value: bytes,
        headers: Sequence[tuple[str, bytes]],
        on_delivery: DeliveryCallback,
    ) -> None:
        if not self.closed and self._fatal is None:
            self.queue.append((topic, on_delivery))
            return
        super().send(topic, key, value, headers, on_delivery)

    def flush(self, timeout: float) -> int:
        return len(self.queue) + super().flush(timeout)

    def set_fatal(self, code: str = FATAL, reason: str = "injected") -> None:
        queued, self.queue = self.queue, []
        super().set_fatal(code, reason)
        for topic, callback in queued:
            callback(_Error("_PURGE_QUEUE", "purged by fatal"), _Report(topic, -1, -1, 0))

    def close(self, timeout: float) -> int:
        queued, self.queue = self.queue, []
        remaining = super().close(timeout)
        for topic, callback in queued:
            callback(_Error("_PURGE_QUEUE", "purged at close"), _Report(topic, -1, -1, 0))
        return remaining + len(queued)

    def recreate(self) -> Replacement:
        new = Replacement(self._shared, self._refuse_in_replacement)
        self.made.append(new)
        return new

    def fill_started(self, timeout: float = 10.0) -> bool:
        """Wait until a replacement's fill has made its first re-send attempt."""
        deadline = time.monotonic() + timeout
        while not self.made and time.monotonic() < deadline:
            time.sleep(0.001)
        return bool(self.made) and self.made[0].fill_started.wait(
            max(0.0, deadline - time.monotonic())
        )


class SilentTransport(MemoryTransport):
    """Writes every record to the log but never reports it (a lost report)."""

    def send(
        self,
        topic: str,
        key: bytes | None,
        value: bytes,
        headers: Sequence[tuple[str, bytes]],
        on_delivery: DeliveryCallback,
    ) -> None:
        super().send(topic, key, value, headers, lambda _err, _msg: None)


# -- the librdkafka mock cluster -------------------------------------------------------------
def _require_mock() -> None:
    from eventwire_devkit.librdkafka import (
        LibrdkafkaTestApiUnavailable,
        librdkafka_version,
    )
    from eventwire_devkit.pytest_plugin import unavailable

    try:
        librdkafka_version()
    except LibrdkafkaTestApiUnavailable as exc:
        unavailable(f"librdkafka's test API is unavailable: {exc}")


@pytest.fixture
def mock() -> Iterator[Any]:
    _require_mock()
    from eventwire_devkit.librdkafka import MockCluster

    with MockCluster() as cluster:
        cluster.create_topic(TOPIC, partitions=1)
        yield cluster


def inject_fatal(publisher: Publisher) -> None:
    from eventwire_devkit.librdkafka import ErrorCode, inject_fatal_error

    inject_fatal_error(publisher, ErrorCode.OUT_OF_ORDER_SEQUENCE_NUMBER, "test")


def topic_ids(bootstrap: str) -> set[str]:
    from eventwire_devkit.consume import read_topic

    records = read_topic(bootstrap, TOPIC, idle=1.0, timeout=30)
    return {(r.header("ce_id") or b"").decode() for r in records}


class SlowFillKafka(KafkaTransport):
    """A Kafka transport whose replacements re-send slowly (about 1 ms a record).

    A replacement's fill of a few thousand events then lasts seconds, so a
    flush() or close() can be made to run during it. ``made`` keeps every
    replacement; ``fill_started`` is set at the first re-send.
    """

    def __init__(self, config: KafkaConfig, *, slow: bool = False, **kwargs: Any) -> None:
        self.slow = slow
        self.made: list[SlowFillKafka] = []
        self.fill_started = threading.Event()
        self.config_ = config
        super().__init__(config, **kwargs)

    def send(
        self,
        topic: str,
        key: bytes | None,
        value: bytes,
        headers: Sequence[tuple[str, bytes]],
        on_delivery: DeliveryCallback,
    ) -> None:
        if self.slow:
            self.fill_started.set()
            time.sleep(0.001)
        super().send(topic, key, value, headers, on_delivery)

    def recreate(self) -> SlowFillKafka:
        new = SlowFillKafka(self.config_, slow=True, connect_timeout=None)
        new.made = self.made
        self.made.append(new)
        return new

    def wait_for_fill(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while not self.made and time.monotonic() < deadline:
            time.sleep(0.001)
        assert self.made, "no replacement producer was made after the fatal error"
        assert self.made[0].fill_started.wait(max(0.0, deadline - time.monotonic()))


def slow_fill_publisher(mock: Any, **options: Any) -> tuple[Publisher, SlowFillKafka]:
    config = KafkaConfig(mock.bootstrap_servers, overrides={"linger.ms": 5})
    transport = SlowFillKafka(config, connect_timeout=5)
    pub = Publisher(config=config, transport=transport, source="urn:test", **options)
    return pub, transport


def poll_threads() -> set[threading.Thread]:
    return {t for t in threading.enumerate() if t.name == "eventwire-poll" and t.is_alive()}


def left_running(before: set[threading.Thread], grace_s: float = 15.0) -> list[str]:
    """Poll threads started since ``before`` still alive after ``grace_s`` (generous)."""
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline:
        new = poll_threads() - before
        if not new:
            return []
        time.sleep(0.05)
    return sorted(repr(t) for t in poll_threads() - before)


# -- 1. done-callbacks that call the publisher (Kafka, in a child process) --------------------
def run_worker(mode: str) -> dict[str, Any]:
    _require_mock()
    try:
        proc = subprocess.run(
            [sys.executable, str(WORKER), mode],
            capture_output=True,
            text=True,
            timeout=60,
            env={**os.environ, "PYTHONFAULTHANDLER": "1"},
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"the child did not finish within 60 s (hung):\n{exc.stderr!s:.3000}")
    assert proc.returncode == 0, f"the child exited with {proc.returncode}:\n{proc.stderr[-3000:]}"
    lines = proc.stdout.strip().splitlines()
    assert lines, f"the child printed nothing:\n{proc.stderr[-3000:]}"
    result: dict[str, Any] = json.loads(lines[-1])
    return result


@pytest.mark.parametrize("where", ["any", "inline", "poll"])
def test_done_callback_may_publish_on_kafka(where: str) -> None:
    """A done-callback that publishes a follow-up event does not abort the process, and every follow-up is delivered."""
    result = run_worker(f"publish-{where}")
    assert result["errors"] == []
    assert result["callbacks"] == 20_000
    assert result["followups"] == result["eligible"]
    assert result["followups_delivered"] == result["followups"]
    assert result["close_error"] is None


@pytest.mark.parametrize("what", ["flush", "close"])
@pytest.mark.parametrize("where", ["inline", "poll"])
def test_flush_or_close_inside_a_done_callback_raises_publisher_state_error(
    what: str, where: str
) -> None:
    """flush()/close() called from a done-callback raise PublisherStateError (no abort, no hang), and the publisher keeps working."""
    result = run_worker(f"{what}-{where}")
    assert result["called"], result
    assert result["exc_type"] == "PublisherStateError", result
    assert "inside a delivery callback" in result["exc_msg"]
    assert result["closed_by_callback"] is False
    assert result["close_error"] is None  # every event published was delivered


# -- 2. close() while a replacement is re-sending ---------------------------------------------
def test_close_during_a_replacement_leaves_no_producer_running_memory() -> None:
    """close() during a replacement's fill leaves no producer open, and reports no event as not written that is in the log."""
    transport = BufferingTransport(partitions=1)
    pub = Publisher(transport=transport, source="urn:test")
    handles = [pub.publish(order(i, key="k")) for i in range(3)]
    transport.queue_full_next(1000)  # the replacement's queue stays full for a while
    fatal = threading.Thread(target=transport.set_fatal)
    fatal.start()
    assert transport.fill_started()

    failures = close_reporting(pub, 5)

    open_after_close = [t for t in transport.made if not t.closed]
    fatal.join(30)
    assert not fatal.is_alive()
    assert open_after_close == []
    assert all(t.closed for t in transport.made)
    assert all(h.done() for h in handles)
    assert pub.in_flight == 0
    assert written_but_reported_unwritten(handles, failures, logged_ids(transport)) == []


def test_close_during_a_replacement_leaves_no_producer_running_kafka(mock: Any) -> None:
    """close() during a replacement's fill leaves no poll thread running, and no event close() reports as not written is in the topic."""
    before = poll_threads()
    pub, transport = slow_fill_publisher(mock)
    pub.publish(order(-1, key="k")).result(10)
    mock.set_rtt(1, 2000)  # the events stay unacknowledged
    handles = [pub.publish(order(i, key=f"k{i % 10}")) for i in range(2000)]
    inject_fatal(pub)
    transport.wait_for_fill()

    failures = close_reporting(pub, 3)

    assert left_running(before) == []
    assert all(h.done() for h in handles)
    mock.set_rtt(1, 0)  # a producer left behind would now write what it holds
    time.sleep(1.0)
    in_log = topic_ids(mock.bootstrap_servers)
    assert written_but_reported_unwritten(handles, failures, in_log) == []


class ReplacedAfterWriting(MemoryTransport):
    """Writes records (their acks held back by pause()); its replacement only queues them."""

    def recreate(self) -> BufferingTransport:
        return BufferingTransport(_log=self._shared)


def test_resent_event_purged_at_close_is_possibly_written() -> None:
    """An event the replaced producer wrote, re-sent and then purged by close(), is reported possibly_written=True."""
    transport = ReplacedAfterWriting(partitions=1)
    pub = Publisher(transport=transport, source="urn:test")
    transport.pause()  # written to the log, the ack not yet received
    handle = pub.publish(order(1))
    transport.set_fatal()  # replaced; the re-send waits in the new producer's queue
    failures = close_reporting(pub, 1)  # ... and is purged there (_PURGE_QUEUE)
    assert handle.event_id in logged_ids(transport)
    assert handle.failure is not None
    assert handle.failure.possibly_written is True, handle.failure
    assert written_but_reported_unwritten([handle], failures, logged_ids(transport)) == []


# -- 3. flush() during a replacement ----------------------------------------------------------
def assert_flush_tells_the_truth(
    pub: Publisher, handles: list[DeliveryHandle], timeout: float
) -> None:
    """flush() returns only once every handle is delivered, or raises naming the rest."""
    try:
        pub.flush(timeout)
    except DeliveryError as exc:
        listed = {f.event_id: f.code for f in exc.failures}
        for h in handles:
            if not h.done():
                assert listed.get(h.event_id) == "_FLUSH_TIMEOUT", (h, listed.get(h.event_id))
            elif h.failed():
                assert h.event_id in listed, h
        return
    undone = [h for h in handles if not h.done()]
    assert undone == [], f"flush() returned normally with {len(undone)} events unacknowledged"
    assert pub.in_flight == 0
    assert [h.failure for h in handles if h.failed()] == []


def test_flush_during_a_replacement_waits_for_the_resent_events_memory() -> None:
    """flush() during a replacement's fill does not return success while events are unacknowledged."""
    transport = BufferingTransport(partitions=1)
    pub = Publisher(transport=transport, source="urn:test")
    handles = [pub.publish(order(i, key="k")) for i in range(3)]
    transport.queue_full_next(1000)
    fatal = threading.Thread(target=transport.set_fatal)
    fatal.start()
    assert transport.fill_started()
    try:
        assert_flush_tells_the_truth(pub, handles, 5)
    finally:
        fatal.join(30)
        close_reporting(pub, 1)


def test_flush_during_a_replacement_waits_for_the_resent_events_kafka(mock: Any) -> None:
    """flush() during a Kafka producer replacement does not return success while events are unacknowledged."""
    pub, transport = slow_fill_publisher(mock)
    try:
        pub.publish(order(-1, key="k")).result(10)
        mock.set_rtt(1, 1000)
        handles = [pub.publish(order(i, key=f"k{i % 10}")) for i in range(2000)]
        inject_fatal(pub)
        transport.wait_for_fill()
        assert_flush_tells_the_truth(pub, handles, 30)
    finally:
        mock.set_rtt(1, 0)
        close_reporting(pub, 30)


# -- 4. possibly_written ----------------------------------------------------------------------
def test_not_reported_at_close_is_possibly_written() -> None:
    """An event close() fails as _NOT_REPORTED (enqueued, no report) is reported possibly_written=True."""
    transport = SilentTransport()
    pub = Publisher(transport=transport, source="urn:test")
    handle = pub.publish(order(1))
    failures = close_reporting(pub, 1)
    assert [f.code for f in failures] == ["_NOT_REPORTED"]
    assert handle.event_id in logged_ids(transport)
    assert failures[0].possibly_written is True
    assert handle.failure is not None and handle.failure.possibly_written is True


def test_fatal_sweep_without_restarts_is_possibly_written_memory() -> None:
    """With producer_restarts=0, events in flight at a fatal error are reported possibly_written=True."""
    transport = MemoryTransport(partitions=1)
    pub = Publisher(transport=transport, source="urn:test", producer_restarts=0)
    transport.pause()  # written to the log, not yet acknowledged
    handles = [pub.publish(order(i, key="k")) for i in range(3)]
    transport.set_fatal()
    failures = close_reporting(pub, 1)
    outcomes = [
        (h.failure.code, h.failure.possibly_written) if h.failure else None for h in handles
    ]
    assert all(o is not None and o[1] is True for o in outcomes), outcomes
    assert written_but_reported_unwritten(handles, failures, logged_ids(transport)) == []


def test_fatal_sweep_without_restarts_is_possibly_written_kafka(mock: Any) -> None:
    """With producer_restarts=0, events failed by a fatal sweep or close's _NOT_REPORTED are possibly written, and none reported unwritten is in the topic."""
    pub = Publisher(
        mock.bootstrap_servers, source="urn:test", connect_timeout=5, producer_restarts=0
    )
    pub.publish(order(-1, key="k")).result(10)
    mock.set_rtt(1, 500)
    handles = [pub.publish(order(i, key="k")) for i in range(1000)]
    time.sleep(0.2)  # the produce request is on the wire
    inject_fatal(pub)
    deadline = time.monotonic() + 30
    while not all(h.done() for h in handles) and time.monotonic() < deadline:
        time.sleep(0.01)
    mock.set_rtt(1, 0)
    failures = close_reporting(pub, 5)
    swept = [
        f
        for f in [h.failure for h in handles if h.failure] + failures
        if f.code in (FATAL, "_NOT_REPORTED")
    ]
    assert [f for f in swept if not f.possibly_written] == []
    in_log = topic_ids(mock.bootstrap_servers)
    assert written_but_reported_unwritten(handles, failures, in_log) == []


def test_resend_finding_the_queue_full_is_possibly_written() -> None:
    """A re-send that gives up on a full queue reports the event possibly_written=True (the old producer may have written it)."""
    transport = MemoryTransport(partitions=1)
    pub = Publisher(transport=transport, source="urn:test", enqueue_timeout=0.05)
    transport.pause()  # written to the log, the ack not yet received
    handle = pub.publish(order(1))
    transport.queue_full_next(10_000)  # the new producer's queue stays full
    transport.set_fatal()
    transport.heal()
    failures = close_reporting(pub, 1)
    assert handle.event_id in logged_ids(transport)
    assert handle.failure is not None, "the re-send could not have succeeded"
    assert handle.failure.possibly_written is True, handle.failure
    assert written_but_reported_unwritten([handle], failures, logged_ids(transport)) == []


def test_failed_resend_is_not_overtaken_by_later_events_of_its_key() -> None:
    """When a re-send fails, the later events of its key are not re-sent ahead of it: they fail too."""
    transport = BufferingTransport(refuse=lambda n: n == 1, partitions=1)
    pub = Publisher(transport=transport, source="urn:test", enqueue_timeout=0.05)
    handles = [pub.publish(order(n, key="k")) for n in (1, 2, 3)]
    transport.set_fatal()  # nothing was written; the replacement refuses event 1
    outcomes = [h.failure.code if h.failure else "delivered" for h in handles]
    close_reporting(pub, 1)
    assert handles[0].failed(), outcomes
    assert logged_ns(transport) == []
    assert all(h.failed() for h in handles), outcomes


# -- 5. a header value the Kafka client refuses -----------------------------------------------
def test_bad_header_value_raises_a_typed_error_and_leaves_nothing_in_flight(mock: Any) -> None:
    """publish() with a non-bytes header value raises a typed eventwire error, leaves nothing in flight, and a later fatal error still replaces the producer."""
    pub = Publisher(mock.bootstrap_servers, source="urn:test", connect_timeout=5)
    try:
        with pytest.raises((SerializationError, ConfigurationError)):
            pub.publish(order(0), headers=[("tenant", 42)])  # type: ignore[list-item]
        assert pub.in_flight == 0

        mock.set_rtt(1, 500)
        handles = [pub.publish(order(i, key="k")) for i in range(1, 6)]
        inject_fatal(pub)
        for h in handles:
            h.result(30)  # re-sent through the replacement and delivered
        pub.publish(order(6, key="k")).result(30)
        mock.set_rtt(1, 0)
    finally:
        mock.set_rtt(1, 0)
        failures = close_reporting(pub, 10)
    assert failures == []


# -- 6. user hooks that raise while an event settles ------------------------------------------
@pytest.fixture
def raising_tracer() -> Any:
    """A TracerProvider whose span processor's on_end raises (an exporter bug)."""
    sdk = pytest.importorskip("opentelemetry.sdk.trace")

    class RaisingOnEnd(sdk.SpanProcessor):  # type: ignore[misc, name-defined]
        def on_end(self, span: Any) -> None:
            raise RuntimeError("exporter bug")

    provider = sdk.TracerProvider()
    provider.add_span_processor(RaisingOnEnd())
    return provider


def test_raising_span_processor_does_not_strand_a_waiter(raising_tracer: Any) -> None:
    """A span processor whose on_end raises does not keep a thread blocked in result() from waking."""
    transport = MemoryTransport()
    pub = Publisher(transport=transport, source="urn:test", tracer_provider=raising_tracer)
    transport.pause()
    handle = pub.publish(order(1))
    results: list[Any] = []
    waiter = threading.Thread(target=lambda: results.append(handle.result()), daemon=True)
    waiter.start()
    time.sleep(0.1)  # (the waiter is blocked, or about to be: either way it must wake)
    with contextlib.suppress(RuntimeError):
        transport.resume()
    waiter.join(10)
    assert not waiter.is_alive(), "result() never returned"
    assert results and results[0].event_id == handle.event_id
    assert pub.in_flight == 0
    close_reporting(pub, 1)


def test_raising_span_processor_does_not_fail_publish(raising_tracer: Any) -> None:
    """A span processor whose on_end raises does not make publish() raise for an event it enqueued."""
    transport = MemoryTransport()
    pub = Publisher(transport=transport, source="urn:test", tracer_provider=raising_tracer)
    handle = pub.publish(order(2))  # its report is served inline
    assert handle.result(1).event_id == handle.event_id
    assert pub.in_flight == 0
    assert close_reporting(pub, 1) == []


def test_raising_breaker_hook_does_not_break_settling() -> None:
    """A circuit breaker whose on_change raises does not break settling: the failure is in the handle and flush() reports it."""

    def on_change(_state: Any) -> None:
        raise RuntimeError("alerting hook bug")

    transport = MemoryTransport()
    breaker = CircuitBreaker(open_after_s=0.0, on_change=on_change)
    pub = Publisher(transport=transport, source="urn:test", circuit_breaker=breaker)
    transport.fail_next(1, "_MSG_TIMED_OUT")
    handle = pub.publish(order(3))
    assert handle.done()
    # (._failure: not the application observing it, so flush() must report it)
    assert handle._failure is not None and handle._failure.code == "_MSG_TIMED_OUT"
    assert pub.in_flight == 0
    with pytest.raises(DeliveryError) as caught:
        pub.flush(1)
    assert [f.code for f in caught.value.failures] == ["_MSG_TIMED_OUT"]
    close_reporting(pub, 1)


def test_raising_breaker_hook_does_not_break_async_settling() -> None:
    """With AsyncPublisher, a breaker whose on_change raises still resolves the future and flush() reports the failure."""

    def on_change(_state: Any) -> None:
        raise RuntimeError("alerting hook bug")

    async def main() -> None:
        transport = MemoryTransport()
        breaker = CircuitBreaker(open_after_s=0.0, on_change=on_change)
        pub = AsyncPublisher(transport=transport, source="urn:test", circuit_breaker=breaker)
        try:
            transport.fail_next(1, "_MSG_TIMED_OUT")
            fut = pub.publish_nowait(order(3))
            with pytest.raises(DeliveryError) as caught:
                await asyncio.wait_for(fut, 5)
            assert caught.value.failures[0].code == "_MSG_TIMED_OUT"
            await pub.flush(1)  # the awaited future raised it: not reported again
        finally:
            with contextlib.suppress(DeliveryError):
                await pub.close(1)

    asyncio.run(main())


# -- 7. outbox: a commit still running when close()'s wait ends -------------------------------
class SlowOutbox(SQLiteOutbox):
    """An outbox whose commits can be made slow (a long fsync, a busy database)."""

    slow_s = 0.0
    entered = threading.Event()

    def add(self, entries: Any, *, connection: Any = None) -> list[int]:
        if self.slow_s and connection is None:
            self.entered.set()
            time.sleep(self.slow_s)
        return super().add(entries, connection=connection)


def test_outbox_commit_outlasting_close_still_settles(tmp_path: Path) -> None:
    """A publish() whose outbox commit outlasts close()'s wait raises PublisherStateError or returns a handle that settles."""
    store = SlowOutbox(tmp_path / "o.db")
    store.entered = threading.Event()
    pub = Publisher(transport=MemoryTransport(), outbox=store, source="urn:test")
    pub.publish(order(0)).result(5)
    store.slow_s = 2.0  # longer than close(0.5) waits for sends under way
    outcome: dict[str, Any] = {}

    def late() -> None:
        try:
            outcome["handle"] = pub.publish(order(1))
        except Exception as exc:
            outcome["error"] = exc

    sender = threading.Thread(target=late)
    sender.start()
    assert store.entered.wait(10)
    with contextlib.suppress(DeliveryError):
        pub.close(0.5)
    sender.join(30)
    assert not sender.is_alive()
    if "error" in outcome:
        assert isinstance(outcome["error"], PublisherStateError), repr(outcome["error"])
        return
    handle: DeliveryHandle = outcome["handle"]
    try:
        handle.result(10)
    except DeliveryError:
        pass  # settled (e.g. _IN_OUTBOX: durable, shipped by the next relay)
    except TimeoutError:
        pytest.fail("the handle of a publish() that returned during close() never settled")
    assert handle.done()
    assert pub.in_flight == 0


# -- 8. LoopBridge after its loop has closed --------------------------------------------------
def _live_handles() -> int:
    gc.collect()
    return sum(type(o) is DeliveryHandle for o in gc.get_objects())


def test_reports_after_the_loop_closed_do_not_accumulate() -> None:
    """Delivery reports arriving after an AsyncPublisher's loop has closed are not kept."""
    transport = MemoryTransport()
    pub = AsyncPublisher(transport=transport, source="urn:test")
    count = 5000

    async def main() -> None:
        transport.pause()
        for i in range(count):
            pub.publish_nowait(order(i))

    before = _live_handles()
    asyncio.run(main())  # the loop ends without close() (e.g. a cancelled application)
    transport.resume()  # the reports arrive afterwards
    kept = _live_handles() - before
    assert kept < 10, f"{kept} settled handles are still held after their loop closed"
    assert pub.in_flight == 0
