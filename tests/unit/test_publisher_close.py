"""close() is a gate: once it begins, no event slips past it unreported.

Every ``publish()`` racing a ``close()`` either raises PublisherStateError (the
event was not enqueued) or has its event settled and reported by that close(),
and close() destroys the producer, so nothing is sent behind its back.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest

from eventwire import (
    DeliveryError,
    DeliveryFailure,
    DeliveryHandle,
    Publisher,
    PublisherStateError,
    Route,
)
from eventwire.transports.memory import MemoryTransport
from eventwire_devkit.consume import read_topic
from eventwire_devkit.librdkafka import LibrdkafkaTestApiUnavailable, MockCluster
from eventwire_devkit.pytest_plugin import unavailable

from .conftest import InterruptedOnce, order


class Slow(msgspec.Struct, frozen=True):
    order_id: str


def _slow_key(event: Slow) -> str:
    time.sleep(0.5)
    return event.order_id


SLOW_ROUTES = {Slow: Route(topic="orders", key=_slow_key, type_name="test.Slow")}


class Outcome:
    """What one racing publish() saw: its handle, or the error it raised."""

    def __init__(self) -> None:
        self.handle: DeliveryHandle | None = None
        self.error: BaseException | None = None
        self.done = threading.Event()


def publish_in_thread(pub: Publisher, event: Any) -> Outcome:
    out = Outcome()

    def run() -> None:
        try:
            out.handle = pub.publish(event)
        except BaseException as exc:
            out.error = exc
        finally:
            out.done.set()

    threading.Thread(target=run, daemon=True).start()
    return out


def close_reporting(pub: Publisher, timeout: float) -> list[DeliveryFailure]:
    try:
        pub.close(timeout)
    except DeliveryError as exc:
        return list(exc.failures)
    return []


def assert_raised_or_reported(out: Outcome, reported: list[DeliveryFailure]) -> None:
    """The racing publish raised PublisherStateError, or close() settled and reported it."""
    assert out.done.wait(10), "publish() never returned"
    if out.error is not None:
        assert isinstance(out.error, PublisherStateError), out.error
        return
    handle = out.handle
    assert handle is not None
    assert handle.done(), "publish() returned a handle that close() left unsettled"
    if handle.failed():
        assert handle.event_id in {f.event_id for f in reported}, (
            "close() did not report the racing event"
        )


class TestCloseRacingPublishMemory:
    def test_a_publish_in_progress_when_close_begins_is_refused_or_reported(self) -> None:
        """A publish whose key function is still running when close() begins either raises
        PublisherStateError or ends settled and reported by that close()."""
        transport = MemoryTransport()
        transport.pause()  # nothing is acknowledged: close() must report what it holds
        pub = Publisher(transport=transport, routes=SLOW_ROUTES, source="urn:test")
        out = publish_in_thread(pub, Slow("o-1"))
        time.sleep(0.1)  # the key function is sleeping now
        reported = close_reporting(pub, 0.2)
        assert_raised_or_reported(out, reported)

    def test_publish_after_close_returned_raises(self) -> None:
        """Once close() has returned, publish() raises PublisherStateError."""
        pub = Publisher(transport=MemoryTransport(), source="urn:test")
        pub.close(1)
        with pytest.raises(PublisherStateError, match="closed"):
            pub.publish(order(1))

    def test_a_publish_waiting_for_queue_space_gives_up_when_close_begins(self) -> None:
        """A publish blocked on a full queue raises PublisherStateError soon after close()
        begins, instead of slipping in once close() made room."""
        transport = MemoryTransport()
        transport.queue_full_next(1_000_000)
        pub = Publisher(transport=transport, source="urn:test", enqueue_timeout=30)
        out = publish_in_thread(pub, order(1))
        time.sleep(0.1)
        start = time.monotonic()
        close_reporting(pub, 0.1)
        assert out.done.wait(5)
        assert time.monotonic() - start < 5
        assert isinstance(out.error, PublisherStateError), out.error
        assert transport.records("orders") == []


def _rdk_threads() -> int:
    """librdkafka's own threads in this process (Linux names them rdk:...)."""
    tasks = Path("/proc/self/task")
    names = (p / "comm" for p in tasks.iterdir())
    return sum(1 for n in names if n.exists() and n.read_text().startswith("rdk:"))


@pytest.fixture
def mock() -> Iterator[MockCluster]:
    try:
        cluster = MockCluster()
    except LibrdkafkaTestApiUnavailable as exc:
        unavailable(f"librdkafka's test API is unavailable: {exc}")
    with cluster:
        cluster.create_topic("orders", partitions=1)
        yield cluster


FAST = {
    "message.timeout.ms": 60_000,
    "retry.backoff.ms": 20,
    "retry.backoff.max.ms": 100,
    "reconnect.backoff.ms": 20,
    "reconnect.backoff.max.ms": 200,
}


@pytest.mark.skipif(not os.path.isdir("/proc/self/task"), reason="needs Linux /proc")
class TestCloseRacingPublishLibrdkafka:
    def test_close_destroys_the_producer(self, mock: MockCluster) -> None:
        """After close() no librdkafka thread of the publisher is left running."""
        # A first publisher makes the mock cluster start whatever threads it starts
        # lazily for a client; then the baseline counts only what is not ours.
        warm_up = Publisher(mock.bootstrap_servers, source="urn:test", overrides=FAST)
        warm_up.publish(order(0)).result(10)
        warm_up.close(5)
        before = _rdk_threads()
        pub = Publisher(mock.bootstrap_servers, source="urn:test", overrides=FAST)
        pub.publish(order(1)).result(10)
        assert _rdk_threads() > before
        pub.close(5)
        deadline = time.monotonic() + 10
        while _rdk_threads() > before and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _rdk_threads() <= before, "close() left librdkafka's threads running"

    def test_an_event_reported_not_written_at_close_never_reaches_the_broker(
        self, mock: MockCluster
    ) -> None:
        """A publish waiting on a full queue while close() purges is refused or reported,
        and an event reported as not possibly written is not in the log after recovery."""
        pub = Publisher(
            mock.bootstrap_servers,
            source="urn:test",
            overrides={**FAST, "queue.buffering.max.messages": 1},
            enqueue_timeout=30,
        )
        pub.publish(order(0)).result(10)
        mock.broker_down(1)
        first = pub.publish(order(1))  # fills the one-slot queue
        out = publish_in_thread(pub, order(2))  # waits for space
        time.sleep(0.3)
        reported = close_reporting(pub, 0.3)
        assert_raised_or_reported(out, reported)
        assert first.done()
        not_written = {f.event_id for f in reported if not f.possibly_written}
        mock.broker_up(1)
        time.sleep(2)  # time for a producer that was not destroyed to reconnect and send
        in_log = {
            (r.header("ce_id") or b"").decode()
            for r in read_topic(mock.bootstrap_servers, "orders", idle=0.5, timeout=10)
        }
        assert not (not_written & in_log), (
            f"events reported possibly_written=False reached the broker: {not_written & in_log}"
        )


class TestCloseRacingPublishOutbox:
    def test_an_outbox_publish_in_progress_when_close_begins_is_refused_or_settled(
        self, tmp_path: Path
    ) -> None:
        """With an outbox, a publish whose key function runs while close() begins raises
        PublisherStateError (nothing committed) or returns a handle close() settled."""
        from eventwire.outbox import SQLiteOutbox

        store = SQLiteOutbox(tmp_path / "outbox.db")
        pub = Publisher(
            transport=MemoryTransport(), routes=SLOW_ROUTES, source="urn:test", outbox=store
        )
        out = publish_in_thread(pub, Slow("o-1"))
        time.sleep(0.1)
        reported = close_reporting(pub, 0.2)
        assert_raised_or_reported(out, reported)
        if out.error is not None:
            assert store.status().pending == 0, "a refused publish was committed anyway"


class TestAnInterruptedClose:
    @pytest.mark.parametrize("interrupt", [KeyboardInterrupt, SystemExit])
    def test_the_next_close_finishes_it_and_reports_the_events(
        self, interrupt: type[BaseException]
    ) -> None:
        """A close() cut short left the publisher 'closed': every later close() returned at
        once and raised nothing, the producer ran on, and the events' failures reached no
        API. Now flush() says so, and the next close() finishes the closing and reports."""
        transport = InterruptedOnce(interrupt)
        transport.pause()  # nothing is acknowledged
        publisher = Publisher(transport=transport)
        handles = [publisher.publish(order(n)) for n in range(3)]
        with pytest.raises(interrupt):
            publisher.close(1)
        with pytest.raises(PublisherStateError, match=r"close\(\) was cut short.*call close"):
            publisher.flush(1)
        with pytest.raises(DeliveryError) as info:
            publisher.close(1)
        assert len(info.value.failures) == 3
        assert all(h.done() for h in handles)
        assert transport.closed
        publisher.close(1)  # closed now: a no-op
