"""Regressions from the third review of the asyncio side: cancellation, concurrent
close, failed outbox commits nobody awaited, partial batches, careless arguments."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pydantic
import pytest

from eventwire import (
    AsyncPublisher,
    ConfigurationError,
    DeliveryError,
    OutboxWriteError,
    Publisher,
    PublisherStateError,
    Route,
)
from eventwire.observability.logging import capture_logs
from eventwire.outbox import SQLiteOutbox
from eventwire.outbox.base import OutboxEntry
from eventwire.transports.memory import MemoryTransport, TransportQueueFull

from .conftest import SlowClose, close_on_a_new_loop, order


class FailingStore(SQLiteOutbox):
    """A SQLite outbox whose commits fail (nothing stored), as a full disk would."""

    def add(self, entries: Sequence[OutboxEntry], *, connection: Any = None) -> list[int]:
        raise OutboxWriteError(len(entries), "disk full (injected)", possibly_written=False)


class SlowStore(SQLiteOutbox):
    """A SQLite outbox whose commits take ``delay`` s (a slow fsync, a held lock)."""

    delay = 0.5

    def add(self, entries: Sequence[OutboxEntry], *, connection: Any = None) -> list[int]:
        time.sleep(self.delay)
        return super().add(entries, connection=connection)


class TestFailedOutboxCommitsAreReported:
    def test_a_failed_commit_nobody_awaited_is_raised_by_flush(self, tmp_path: Path) -> None:
        """publish_nowait() whose future nobody awaits, and a publish() whose await was
        cancelled: when their commit fails, flush() raises both failures (once)."""
        store = FailingStore(tmp_path / "o.db")

        async def main() -> list[str]:
            pub = AsyncPublisher(transport=MemoryTransport(), outbox=store, relay=False)
            await pub.start()
            pub.publish_nowait(order(1))
            task = asyncio.ensure_future(pub.publish(order(2)))
            await asyncio.sleep(0)
            task.cancel()
            await asyncio.sleep(0.2)
            with pytest.raises(DeliveryError) as raised:
                await pub.flush(1)
            await pub.close(1)  # reported once: close() has nothing left to say
            return [f.code for f in raised.value.failures]

        assert asyncio.run(main()) == ["_OUTBOX_WRITE_FAILED"] * 2
        store.close()

    def test_events_close_fails_before_their_commit_are_raised_by_close(
        self, tmp_path: Path
    ) -> None:
        """close() with a short timeout fails the events whose commit had not begun
        (not written) and the commit under way (possibly written), and raises them."""
        store = SlowStore(tmp_path / "o.db")

        async def main() -> list[str]:
            pub = AsyncPublisher(transport=MemoryTransport(), outbox=store, relay=False)
            await pub.start()
            pub.publish_nowait(order(1))
            await asyncio.sleep(0.01)  # its commit is under way
            for n in range(2, 5):
                pub.publish_nowait(order(n))
            with pytest.raises(DeliveryError) as raised:
                await pub.close(0.1)
            return [f.code for f in raised.value.failures]

        codes = asyncio.run(main())
        assert sorted(codes) == ["_OUTBOX_WRITE_FAILED"] * 3 + ["_OUTBOX_WRITE_UNKNOWN"]
        time.sleep(0.6)  # the cancelled commit's thread ends
        store.close()

    def test_flush_lists_the_event_whose_commit_is_under_way(self, tmp_path: Path) -> None:
        """flush() timing out during a commit lists that commit's event as _FLUSH_TIMEOUT,
        as well as the events still waiting for a commit."""
        store = SlowStore(tmp_path / "o.db")

        async def main() -> tuple[set[str], set[str]]:
            pub = AsyncPublisher(transport=MemoryTransport(), outbox=store, relay=False)
            await pub.start()
            first = pub.publish_nowait(order(1), event_id="mid-commit")
            await asyncio.sleep(0.01)
            pub.publish_nowait(order(2), event_id="queued")
            with pytest.raises(DeliveryError) as raised:
                await pub.flush(0.1)
            await asyncio.wait_for(pub.close(5), 10)  # both commits end first
            # committed afterwards all the same: in the outbox at close (no relay here)
            with pytest.raises(DeliveryError) as later:
                await first
            assert later.value.failures[0].code == "_IN_OUTBOX"
            return {f.event_id for f in raised.value.failures}, {
                f.code for f in raised.value.failures
            }

        assert asyncio.run(main()) == ({"mid-commit", "queued"}, {"_FLUSH_TIMEOUT"})
        store.close()


class GatedStore(SQLiteOutbox):
    """Records each add(); a second add() of event "A" alone waits for ``gate``."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.gate = threading.Event()
        self.adds: list[list[str]] = []

    def add(self, entries: Sequence[OutboxEntry], *, connection: Any = None) -> list[int]:
        ids = [e.event_id for e in entries]
        self.adds.append(ids)
        if ids == ["A"] and len(self.adds) > 1:
            self.gate.wait(5)
        return super().add(entries, connection=connection)


def test_flush_does_not_list_events_committed_alone_after_a_conflict(tmp_path: Path) -> None:
    """A group commit refused for one event's id is committed one by one: an event
    already committed alone is durable, so a flush() timing out meanwhile lists only
    the events whose commit has not ended."""
    store = GatedStore(tmp_path / "o.db")

    async def main() -> set[str]:
        pub = AsyncPublisher(transport=MemoryTransport(), outbox=store, relay=False)
        await pub.start()
        pub.publish_nowait(order(1), event_id="A")
        while store.adds != [["A"]]:
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.05)
        pub.publish_nowait(order(2), event_id="X")
        pub.publish_nowait(order(3), event_id="A")  # another event under A's id
        pub.publish_nowait(order(4), event_id="Y")
        while store.adds[-1:] != [["A"]] or len(store.adds) < 4:
            await asyncio.sleep(0.01)
        try:
            with pytest.raises(DeliveryError) as raised:
                await pub.flush(0.1)
        finally:
            store.gate.set()
        with pytest.raises(DeliveryError):  # the conflict, and _IN_OUTBOX (no relay)
            await pub.close(5)
        return {f.event_id for f in raised.value.failures}

    assert asyncio.run(main()) == {"A", "Y"}
    assert store.adds[1:4] == [["X", "A", "Y"], ["X"], ["A"]]
    store.close()


class TestCancelledFlushAndClose:
    def test_a_cancelled_flush_leaves_the_failures_it_took_for_the_next_call(self) -> None:
        """A failure nobody saw (its publish() timed out under wait_for) stays reported
        by the next flush() when a flush() that ran meanwhile was itself cancelled."""
        transport = MemoryTransport()

        async def main() -> list[str]:
            pub = AsyncPublisher(transport=transport)
            await pub.start()
            transport.pause()
            transport.fail_next(1, "_MSG_TIMED_OUT")
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(pub.publish(order(1), event_id="A"), 0.01)
            transport.resume()
            await asyncio.sleep(0.01)
            transport.pause()
            other = pub.publish_nowait(order(2))
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(pub.flush(0.5), 0.1)
            transport.resume()
            await asyncio.sleep(0.6)  # the worker thread's flush ends
            await other
            with pytest.raises(DeliveryError) as raised:
                await pub.flush(1)
            await pub.close(1)
            return [f"{f.event_id}:{f.code}" for f in raised.value.failures]

        assert asyncio.run(main()) == ["A:_MSG_TIMED_OUT"]

    def test_a_second_close_waits_for_the_first_and_raises_its_outcome(self) -> None:
        """Two close() at once (a SIGTERM handler's and ``async with``'s): the second
        waits for the first and raises the events' failures, instead of returning at
        once while they are still in flight."""
        transport = SlowClose()

        async def main() -> tuple[float, list[str]]:
            pub = AsyncPublisher(transport=transport)
            await pub.start()
            transport.pause()
            for n in range(3):
                pub.publish_nowait(order(n))
            first = asyncio.ensure_future(pub.close(0.5))
            await asyncio.sleep(0.05)
            started = time.monotonic()
            with pytest.raises(DeliveryError) as raised:
                await pub.close(0.5)
            waited = time.monotonic() - started
            with pytest.raises(DeliveryError):
                await first  # the same outcome
            await pub.close(0.5)  # told already: nothing more
            return waited, [f.code for f in raised.value.failures]

        waited, codes = asyncio.run(main())
        assert codes == ["_PURGE_INFLIGHT"] * 3
        assert waited > 0.2

    def test_a_close_after_a_cancelled_close_raises_its_outcome(self) -> None:
        """close() cancelled by wait_for goes on closing; the next close() raises what it
        found (once)."""
        transport = SlowClose()

        async def main() -> list[str]:
            pub = AsyncPublisher(transport=transport)
            await pub.start()
            transport.pause()
            pub.publish_nowait(order(1))
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(pub.close(0.5), 0.1)
            with pytest.raises(DeliveryError) as raised:
                await pub.close(1)
            await pub.close(1)
            return [f.code for f in raised.value.failures]

        assert asyncio.run(main()) == ["_PURGE_INFLIGHT"]


class TestSyncCloseFromTwoThreads:
    def test_a_second_close_waits_for_the_first_threads_close(self) -> None:
        """Publisher.close() while another thread's close() runs waits for it (bounded)
        instead of returning with the events still in flight; the first raises."""
        transport = SlowClose()
        pub = Publisher(transport=transport)
        transport.pause()
        pub.publish(order(1))
        first_error: list[BaseException] = []

        def first() -> None:
            try:
                pub.close(0.5)
            except DeliveryError as exc:
                first_error.append(exc)

        thread = threading.Thread(target=first)
        thread.start()
        time.sleep(0.1)
        started = time.monotonic()
        pub.close(5)
        waited = time.monotonic() - started
        thread.join(5)
        assert waited > 0.2
        assert pub.in_flight == 0
        assert len(first_error) == 1
        started = time.monotonic()
        pub.close(5)  # closing ended: a no-op
        assert time.monotonic() - started < 0.1

    def test_close_inside_the_closing_thread_does_not_wait_for_itself(self) -> None:
        """A close() run on the thread whose close() is under way (a signal handler)
        returns at once instead of waiting for itself (a guard: no deadlock)."""
        nested: list[float] = []

        class Reentrant(SlowClose):
            def close(self, timeout: float) -> None:
                started = time.monotonic()
                pub.close(5)
                nested.append(time.monotonic() - started)
                super().close(timeout)

        pub = Publisher(transport=Reentrant())
        pub.close(1)
        assert len(nested) == 1
        assert nested[0] < 0.5

    @pytest.mark.parametrize("closing_too", [False, True])
    def test_close_or_flush_in_a_done_callback_of_an_outbox_publisher_is_refused(
        self, tmp_path: Path, closing_too: bool
    ) -> None:
        """Outbox mode runs done-callbacks on the relay's thread, which flush()/close()
        wait for (and close() stops): there they raise PublisherStateError at once,
        instead of stalling the relay for the timeout or failing to join itself; a
        close() under way on the main thread is not held up."""
        pub = Publisher(
            transport=MemoryTransport(), outbox=SQLiteOutbox(tmp_path / "o.db"), close_timeout=4
        )
        raised: list[BaseException] = []
        called = threading.Event()

        def on_done(_handle: Any) -> None:
            for call in (pub.flush, pub.close):
                try:
                    call()
                except PublisherStateError as exc:
                    raised.append(exc)
            called.set()

        pub.publish(order(1)).add_done_callback(on_done)
        second = pub.publish(order(2))
        if not closing_too:
            assert called.wait(5)
            assert not pub.closed
        started = time.monotonic()
        pub.close(4)
        assert time.monotonic() - started < 2.0
        assert [type(e) for e in raised] == [PublisherStateError] * 2
        assert "relay's thread" in str(raised[1])
        assert second.done() and second.failure is None

    def test_a_close_during_the_first_ones_wait_for_a_send_waits_too(self, tmp_path: Path) -> None:
        """The second close() made while the first waits for a send under way (a slow
        outbox commit, inside begin_close) waits for that first close as well."""
        store = SlowStore(tmp_path / "o.db")
        store.delay = 0.0
        transport = MemoryTransport()
        transport.pause()
        pub = Publisher(transport=transport, outbox=store)
        pub.publish(order(1))
        store.delay = 0.8
        sender = threading.Thread(target=lambda: pub.publish(order(2)))
        sender.start()
        time.sleep(0.1)  # that publish is inside the close gate (its slow commit)
        first = threading.Thread(target=lambda: pub.close(1))
        first.start()
        time.sleep(0.1)  # the first close() waits for the send
        started = time.monotonic()
        pub.close(5)
        waited = time.monotonic() - started
        first_alive = first.is_alive()
        first.join(5)
        sender.join(5)
        assert waited > 0.3
        assert not first_alive


class TestPublishManyReadsTheWholeBatchFirst:
    @staticmethod
    def _events() -> Iterator[Any]:
        yield order(1)
        yield order(2)
        raise ValueError("bad row in the source")

    def test_an_iterable_that_raises_part_way_publishes_nothing_async(self) -> None:
        """AsyncPublisher.publish_many: the iterable's error, and no prefix in the log."""
        transport = MemoryTransport()

        async def main() -> None:
            async with AsyncPublisher(transport=transport) as pub:
                with pytest.raises(ValueError, match="bad row"):
                    await pub.publish_many(self._events())

        asyncio.run(main())
        assert transport.records() == []

    @pytest.mark.parametrize("events", [None, order(1), "abc", b"ab"])
    def test_a_single_event_or_a_string_is_refused_by_both(self, events: Any) -> None:
        """Not an iterable of events: ConfigurationError saying to pass a list (or use
        publish() for one event), from both publishers, nothing published."""
        transport = MemoryTransport()
        with Publisher(transport=transport) as pub:
            with pytest.raises(ConfigurationError, match=r"iterable of events.*publish\(\)"):
                pub.publish_many(events)

        async def main() -> None:
            async with AsyncPublisher(transport=transport) as pub:
                with pytest.raises(ConfigurationError, match="iterable of events"):
                    await pub.publish_many(events)

        asyncio.run(main())
        assert transport.records() == []


class RefundIssued(pydantic.BaseModel):
    """A pydantic event: iterable (it yields its fields), yet one event."""

    refund_id: str


REFUND_ROUTES = {RefundIssued: Route(topic="refunds", key="refund_id")}


def test_a_single_iterable_event_is_refused_by_publish_many() -> None:
    """publish_many(pydantic_event) is one event passed where many are expected: the
    "iterable of events" error, not a RoutingError per field tuple; nothing published."""
    transport = MemoryTransport()
    refund = RefundIssued(refund_id="r-1")
    with Publisher(transport=transport, routes=REFUND_ROUTES) as pub:
        with pytest.raises(ConfigurationError, match="iterable of events, not a RefundIssued"):
            pub.publish_many(refund)
        pub.publish_many([refund])  # a list of it is fine

    async def main() -> None:
        async with AsyncPublisher(transport=transport, routes=REFUND_ROUTES) as pub:
            with pytest.raises(ConfigurationError, match="iterable of events"):
                await pub.publish_many(refund)

    asyncio.run(main())
    assert len(transport.records()) == 1


class TestCarelessArguments:
    @pytest.mark.parametrize("cls", [Publisher, AsyncPublisher])
    def test_a_path_as_outbox_is_refused_at_construction(self, cls: Any, tmp_path: Path) -> None:
        """outbox='orders.db' (a path, not SQLiteOutbox(path)): ConfigurationError at once,
        saying what to pass; no relay thread starts failing in the background."""
        before = threading.active_count()
        with pytest.raises(ConfigurationError, match=r"outbox=SQLiteOutbox\("):
            cls(transport=MemoryTransport(), outbox=str(tmp_path / "orders.db"))
        assert threading.active_count() == before

    def test_publishing_from_a_thread_without_a_loop_is_a_state_error(self) -> None:
        """publish_nowait() where no event loop runs: PublisherStateError naming
        run_coroutine_threadsafe, not asyncio's bare RuntimeError."""
        transport = MemoryTransport()
        errors: list[BaseException] = []

        async def main() -> None:
            async with AsyncPublisher(transport=transport) as pub:

                def from_thread() -> None:
                    try:
                        pub.publish_nowait(order(1))
                    except BaseException as exc:
                        errors.append(exc)

                await asyncio.to_thread(from_thread)

        asyncio.run(main())
        assert len(errors) == 1
        assert isinstance(errors[0], PublisherStateError)
        assert "run_coroutine_threadsafe" in str(errors[0])
        assert transport.records() == []


class TestTheBacklogDrainSurvivesAnUnexpectedError:
    def test_the_event_fails_with_it_and_the_drain_goes_on(self) -> None:
        """A transport raising what it does not promise while the backlog drains: that
        event's await raises it, the events behind it are still sent."""

        class Flaky(MemoryTransport):
            calls = 0

            def send(self, *args: Any, **kwargs: Any) -> None:
                self.calls += 1
                if self.calls == 1:
                    raise TransportQueueFull
                if self.calls == 2:
                    raise TypeError("the client library refused a header value")
                super().send(*args, **kwargs)

        transport = Flaky()

        async def main() -> None:
            async with AsyncPublisher(transport=transport) as pub:
                first = pub.publish_nowait(order(1))
                second = pub.publish_nowait(order(2))
                with pytest.raises(TypeError, match="header value"):
                    await asyncio.wait_for(first, 2)
                await asyncio.wait_for(second, 2)

        asyncio.run(main())
        assert len(transport.records()) == 1


class TestAWithBodysErrorIsNotReplacedByClose:
    def test_async_with_keeps_the_body_error_and_notes_the_close_error(self) -> None:
        """``async with``: the body's ValueError propagates (not close()'s DeliveryError),
        with close()'s error as a note, and logged."""
        transport = MemoryTransport()
        transport.fail_next(1, "_MSG_TIMED_OUT")

        async def main() -> None:
            async with AsyncPublisher(transport=transport) as pub:
                pub.publish_nowait(order(1))
                await asyncio.sleep(0.05)
                raise ValueError("the application's own error")

        with capture_logs() as logs, pytest.raises(ValueError, match="own error") as raised:
            asyncio.run(main())
        notes = getattr(raised.value, "__notes__", [])
        assert any("DeliveryError" in n and "_MSG_TIMED_OUT" in n for n in notes)
        assert [e["event"] for e in logs if e["event"] == "close_failed_after_error"] == [
            "close_failed_after_error"
        ]

    def test_async_with_keeps_a_cancellation_a_cancellation(self) -> None:
        """A task cancelled inside ``async with`` ends cancelled (asyncio.timeout() raises
        TimeoutError), even when close() found failures to raise."""
        transport = MemoryTransport()
        transport.fail_next(1, "_MSG_TIMED_OUT")

        async def body() -> None:
            async with AsyncPublisher(transport=transport) as pub:
                pub.publish_nowait(order(1))
                await asyncio.sleep(10)

        async def main() -> None:
            async with asyncio.timeout(0.1):
                await body()

        with pytest.raises(TimeoutError):
            asyncio.run(main())

    def test_sync_with_keeps_the_body_error(self) -> None:
        """The same for ``with Publisher(...)``."""
        transport = MemoryTransport()
        transport.fail_next(1, "_MSG_TIMED_OUT")

        def body() -> None:
            with Publisher(transport=transport) as pub:
                pub.publish(order(1))
                time.sleep(0.05)
                raise KeyError("own")

        with pytest.raises(KeyError) as raised:
            body()
        assert any("DeliveryError" in n for n in getattr(raised.value, "__notes__", []))


def test_sqlite_outbox_stays_consistent_after_a_cancelled_commit(tmp_path: Path) -> None:
    """After close() cancelled a commit, the row count is what the store committed: the
    event reported possibly_written may be there, none is half-written."""
    store = SlowStore(tmp_path / "o.db")

    async def main() -> None:
        pub = AsyncPublisher(transport=MemoryTransport(), outbox=store, relay=False)
        await pub.start()
        pub.publish_nowait(order(1))
        await asyncio.sleep(0.01)
        with pytest.raises(DeliveryError):
            await pub.close(0.05)

    asyncio.run(main())
    time.sleep(0.7)
    with sqlite3.connect(tmp_path / "o.db") as con:
        rows = con.execute("SELECT count(*), count(value) FROM eventwire_outbox").fetchone()
    assert rows in {(0, 0), (1, 1)}
    store.close()


class TestCloseAcrossLoops:
    def test_a_close_on_another_loop_waits_for_the_first_and_raises_its_outcome(self) -> None:
        """close() on a second event loop while the first loop's close() still runs
        waits for it (up to its own timeout) and raises the events' failures, instead of
        returning at once while they are in flight."""
        transport = SlowClose()
        box: dict[str, Any] = {}
        closing = threading.Event()

        async def first_loop() -> None:
            pub = AsyncPublisher(transport=transport)
            await pub.start()
            transport.pause()
            for n in range(3):
                pub.publish_nowait(order(n))
            box["pub"] = pub
            task = asyncio.ensure_future(pub.close(0.5))
            await asyncio.sleep(0.05)  # the close is under way
            closing.set()
            try:
                await task
            except DeliveryError as exc:
                box["first"] = [f.code for f in exc.failures]

        thread = threading.Thread(target=asyncio.run, args=(first_loop(),), daemon=True)
        thread.start()
        assert closing.wait(5)

        waited, codes = close_on_a_new_loop(box["pub"], 5)
        thread.join(5)
        assert codes == box["first"] == ["_PURGE_INFLIGHT"] * 3
        assert waited > 0.2

    def test_a_cancelled_close_on_another_loop_stops_waiting_at_once(self) -> None:
        """That wait honours cancellation: wait_for(close(), 0.2) on the second loop ends
        after 0.2 s and its asyncio.run() returns, while the first loop's close goes on."""
        transport = SlowClose()
        box: dict[str, Any] = {}
        closing, done = threading.Event(), threading.Event()

        async def first_loop() -> None:
            pub = AsyncPublisher(transport=transport)
            await pub.start()
            transport.pause()
            pub.publish_nowait(order(1))
            box["pub"] = pub
            task = asyncio.ensure_future(pub.close(2))
            await asyncio.sleep(0.05)
            closing.set()
            with contextlib.suppress(DeliveryError):
                await task
            done.set()

        thread = threading.Thread(target=asyncio.run, args=(first_loop(),), daemon=True)
        thread.start()
        assert closing.wait(5)

        async def second_loop() -> None:
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(box["pub"].close(5), 0.2)

        started = time.monotonic()
        asyncio.run(second_loop())
        assert time.monotonic() - started < 1.0
        assert not done.is_set()  # the first close was still running
        thread.join(5)
