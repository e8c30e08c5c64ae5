"""Adversarial review of "failures reported once" (issue #17 item 3): the edge cases.

Most tests here failed on the first implementation (ced39c1/a0bcf98): a failure that
never reached the application was treated as observed and so never raised, one it was
told of was raised again, or the bound on kept failures cost O(kept) per failure once
full. Four guard the fixes' other side and held before too: observed failures still
make room, a failure nobody retrieved is still raised at close (on its loop or another),
and an awaited backlog refusal is not raised again.
"""

from __future__ import annotations

import asyncio
import gc
import threading
from pathlib import Path

import pytest

from eventwire import (
    AsyncPublisher,
    BackpressureError,
    DeliveryError,
    DeliveryHandle,
    Publisher,
    _inflight,
)
from eventwire._inflight import InFlight
from eventwire.outbox import SQLiteOutbox
from eventwire.transports.memory import MemoryTransport

from .conftest import order


def _resume_on_another_thread(transport: MemoryTransport) -> None:
    """Serve the held reports on another thread (as the poll thread does), blocking
    the loop until done: the bridge has queued them and its drain has not run yet.
    (A report served on the loop's own thread resolves its future at once.)"""
    reporter = threading.Thread(target=transport.resume)
    reporter.start()
    reporter.join(30)
    assert not reporter.is_alive()


class TestCancelledAwait:
    def test_a_failure_whose_await_was_cancelled_is_raised_by_close(self) -> None:
        """``asyncio.wait_for(publish(e), t)`` timed out (or the request task was
        cancelled) before the broker answered: the cancel cancels the event's future,
        so the failure that arrives later reaches nobody. close() must raise it."""

        async def main() -> None:
            transport = MemoryTransport()
            pub = AsyncPublisher(transport=transport)
            await pub.start()
            transport.pause()
            transport.fail_next(1, "_MSG_TIMED_OUT")
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(pub.publish(order(1)), 0.05)
            transport.resume()  # the failure arrives after the caller gave up
            with pytest.raises(DeliveryError, match="_MSG_TIMED_OUT"):
                await pub.close(1)

        asyncio.run(main())


class TestBoundCost:
    def test_a_burst_past_the_bound_scans_the_kept_failures_amortized_once_per_failure(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A service that never flushes and hits a burst of unobserved failures: once
        KEPT_FAILURES are kept, each further failure must not rescan all of them (that
        was O(kept) observed() calls per failure, under the lock every report settles
        under). At most about one observed() call per failure, amortized."""
        kept = 100
        monkeypatch.setattr(_inflight, "KEPT_FAILURES", kept)
        calls = 0
        real = DeliveryHandle.observed

        def counting(handle: DeliveryHandle) -> bool:
            nonlocal calls
            calls += 1
            return real(handle)

        monkeypatch.setattr(DeliveryHandle, "observed", counting)
        ledger = InFlight()
        total = 50 * kept
        for n in range(total):
            handle = DeliveryHandle(ledger, f"id-{n}", "test.Placed", "orders", 0)
            ledger.add(handle)
            ledger.settle(handle, None, handle.failure_from("_MSG_TIMED_OUT", "late"))
        assert calls <= 2 * total, f"{calls} observed() calls for {total} failures"
        error = ledger.failures_error(False, "flush")
        assert error is not None
        assert len(error.failures) == kept
        assert error.not_kept == total - kept  # every failure is kept or counted

    def test_observed_failures_still_make_room_during_a_long_burst(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """With the scans spaced out, failures the application observes are still let go
        within one KEPT_FAILURES of later failures: the room they held goes to later
        unobserved ones (and every failure is kept or counted)."""
        kept = 10
        monkeypatch.setattr(_inflight, "KEPT_FAILURES", kept)
        ledger = InFlight()

        def fail(n: int) -> DeliveryHandle:
            handle = DeliveryHandle(ledger, f"id-{n}", "test.Placed", "orders", 0)
            ledger.add(handle)
            ledger.settle(handle, None, handle.failure_from("_MSG_TIMED_OUT", "late"))
            return handle

        first = [fail(n) for n in range(kept)]  # full of unobserved failures
        fail(kept)  # counted: nothing could be let go
        for handle in first:
            assert handle.failed()  # the application looks at them afterwards
        late = [fail(kept + 1 + n) for n in range(2 * kept)]
        error = ledger.failures_error(False, "flush")
        assert error is not None
        reported = [f.event_id for f in error.failures]
        assert len(reported) == kept  # the observed ones made room for late ones
        assert set(reported) <= {h.event_id for h in late}
        assert len(error.failures) + error.not_kept == 2 * kept + 1


class TestAwaitRace:
    def test_a_failure_an_awaiting_task_is_about_to_get_is_not_also_raised_by_flush(
        self,
    ) -> None:
        """``await publish(e)`` is waiting; the failure arrives and sets the future's
        exception, and the awaiting task will get it when the loop next runs it. A
        flush() in between (AsyncPublisher.flush runs it in a worker thread, so at any
        moment) must not raise it as well: the task is told, so it is told once."""

        async def main() -> None:
            loop = asyncio.get_running_loop()
            transport = MemoryTransport()
            pub = AsyncPublisher(transport=transport)
            await pub.start()
            transport.pause()
            transport.fail_next(1, "_MSG_TIMED_OUT")
            awaiting = asyncio.create_task(pub.publish(order(1)))
            await asyncio.sleep(0)  # the task now awaits the event's future
            flushed: list[BaseException] = []

            def flush_now() -> None:  # where the worker thread's flush may land
                try:
                    pub._core.flush(1)
                except DeliveryError as exc:
                    flushed.append(exc)

            transport.resume()  # settles: the loop bridge's drain is scheduled
            loop.call_soon(flush_now)  # runs after the drain, before the task wakes
            with pytest.raises(DeliveryError, match="_MSG_TIMED_OUT"):
                await awaiting
            assert flushed == []
            await pub.close(1)

        asyncio.run(main())

    def test_a_failure_settled_but_not_yet_handed_to_the_awaiting_task_is_not_raised_twice(
        self,
    ) -> None:
        """The failure has settled (on the transport's thread) but the loop bridge has
        not yet set the future's exception, and a task awaits it. A flush() in that
        window must leave it to the task (and to a later flush if the task is cancelled
        first), not raise it as well."""

        async def main() -> None:
            transport = MemoryTransport()
            pub = AsyncPublisher(transport=transport)
            await pub.start()
            transport.pause()
            transport.fail_next(1, "_MSG_TIMED_OUT")
            awaiting = asyncio.create_task(pub.publish(order(1)))
            await asyncio.sleep(0)  # the task now awaits the event's future
            _resume_on_another_thread(transport)  # settled; the drain has not run yet
            assert pub._core.ledger.failures_error(False, "flush") is None
            with pytest.raises(DeliveryError, match="_MSG_TIMED_OUT"):
                await awaiting
            await pub.close(1)

        asyncio.run(main())

    def test_a_failure_left_to_a_task_that_was_then_cancelled_is_raised_by_close(
        self,
    ) -> None:
        """As above, but the awaiting task is cancelled before the bridge hands it the
        failure: nobody was told, so close() raises it."""

        async def main() -> None:
            transport = MemoryTransport()
            pub = AsyncPublisher(transport=transport)
            await pub.start()
            transport.pause()
            transport.fail_next(1, "_MSG_TIMED_OUT")
            awaiting = asyncio.create_task(pub.publish(order(1)))
            await asyncio.sleep(0)
            _resume_on_another_thread(transport)
            assert pub._core.ledger.failures_error(False, "flush") is None
            awaiting.cancel()
            with pytest.raises(asyncio.CancelledError):
                await awaiting
            with pytest.raises(DeliveryError, match="_MSG_TIMED_OUT"):
                await pub.close(1)

        asyncio.run(main())


class TestAsyncFlushCount:
    def test_async_flush_keeps_the_count_of_failures_not_kept(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """AsyncPublisher.flush() re-raises the core's DeliveryError with its backlog
        added: the failures past the bound (``not_kept``) must stay in it, as in
        Publisher.flush(), not vanish from the count and the message."""
        monkeypatch.setattr(_inflight, "KEPT_FAILURES", 3)

        async def main() -> DeliveryError:
            transport = MemoryTransport()
            pub = AsyncPublisher(transport=transport)
            await pub.start()
            transport.fail_next(5, "_MSG_TIMED_OUT")
            futures = [pub.publish_nowait(order(n)) for n in range(5)]
            await asyncio.wait(futures, timeout=1)
            try:
                await pub.flush(1)
            except DeliveryError as exc:
                return exc
            finally:
                await pub.close(1)
            pytest.fail("flush() raised nothing for 5 unobserved failures")

        error = asyncio.run(main())
        assert len(error.failures) == 3
        assert error.not_kept == 2
        assert "5 events not delivered" in str(error)

    def test_async_flush_raises_when_only_uncounted_failures_remain(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """The kept failures were observed later, the ones past the bound were only
        counted: flush() must still raise for those (as Publisher.flush() does)."""
        monkeypatch.setattr(_inflight, "KEPT_FAILURES", 2)

        async def main() -> DeliveryError | None:
            transport = MemoryTransport()
            pub = AsyncPublisher(transport=transport)
            await pub.start()
            transport.fail_next(4, "_MSG_TIMED_OUT")
            futures = [pub.publish_nowait(order(n)) for n in range(4)]
            await asyncio.wait(futures, timeout=1)
            for fut in futures[:2]:  # the two kept ones: looked at now
                assert isinstance(fut.exception(), DeliveryError)
            try:
                await pub.flush(1)
            except DeliveryError as exc:
                return exc
            finally:
                for fut in futures[2:]:
                    fut.exception()
                await pub.close(1)
            return None

        error = asyncio.run(main())
        assert error is not None, "two failures nobody observed were reported nowhere"
        assert error.failures == () and error.not_kept == 2


class TestFutureCallbacks:
    def test_a_failure_at_close_told_to_a_future_callback_is_not_raised_by_close_too(
        self,
    ) -> None:
        """The FastAPI recipe's queued endpoint: ``publish_nowait(e).add_done_callback(log)``.
        The event fails while close() runs (purged, or its report comes during the final
        flush): the callback retrieves and logs it, so close() must not raise (and the
        lifespan log) the same failure a second time."""
        told: list[str] = []

        def log_if_failed(fut: asyncio.Future[object]) -> None:
            if not fut.cancelled() and (exc := fut.exception()) is not None:
                told.append(f"callback: {type(exc).__name__}")

        async def main() -> None:
            transport = MemoryTransport()
            pub = AsyncPublisher(transport=transport)
            await pub.start()
            transport.pause()  # in flight when close() begins; fails there
            pub.publish_nowait(order(1)).add_done_callback(log_if_failed)
            try:
                await pub.close(0)
            except DeliveryError as exc:
                told.extend(f"close: {f.code}" for f in exc.failures)
            await asyncio.sleep(0.05)  # let the loop run the callback

        asyncio.run(main())
        assert told == ["callback: DeliveryError"]

    def test_a_failure_at_close_nobody_retrieved_is_still_raised_by_close(self) -> None:
        """The same, with no callback and nobody awaiting: close() raises it (and asyncio
        does not report "exception was never retrieved" for it)."""
        unretrieved: list[object] = []

        async def main() -> None:
            asyncio.get_running_loop().set_exception_handler(lambda _l, c: unretrieved.append(c))
            transport = MemoryTransport()
            pub = AsyncPublisher(transport=transport)
            await pub.start()
            transport.pause()
            fut = pub.publish_nowait(order(1))
            with pytest.raises(DeliveryError, match="_PURGE_INFLIGHT"):
                await pub.close(0)
            assert fut.done()
            del fut
            gc.collect()

        asyncio.run(main())
        assert unretrieved == []

    def test_close_on_another_loop_still_raises_a_failure_whose_future_cannot_resolve(
        self,
    ) -> None:
        """Published under one ``asyncio.run``, closed under another: the first loop is
        gone, so the failure's future never resolves; close() raises the failure
        rather than wait for a loop that will not run."""
        transport = MemoryTransport()
        pub = AsyncPublisher(transport=transport)

        async def publish() -> None:
            await pub.start()
            transport.pause()
            pub.publish_nowait(order(1))

        asyncio.run(publish())
        with pytest.raises(DeliveryError, match="_PURGE_INFLIGHT"):
            asyncio.run(pub.close(0))

    def test_futures_of_failures_counted_past_the_bound_are_not_also_never_retrieved(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """close() reports the failures past the bound by count (``not_kept``): asyncio
        must not report each of their futures again as "exception was never retrieved",
        as it does not for the kept ones close() listed."""
        monkeypatch.setattr(_inflight, "KEPT_FAILURES", 2)
        unretrieved: list[object] = []

        async def main() -> None:
            asyncio.get_running_loop().set_exception_handler(lambda _l, c: unretrieved.append(c))
            transport = MemoryTransport()
            pub = AsyncPublisher(transport=transport)
            await pub.start()
            transport.fail_next(5, "_MSG_TIMED_OUT")
            futures = [pub.publish_nowait(order(n)) for n in range(5)]
            await asyncio.wait(futures, timeout=1)
            with pytest.raises(DeliveryError) as info:
                await pub.close(1)
            assert len(info.value.failures) == 2 and info.value.not_kept == 3
            del futures
            gc.collect()

        asyncio.run(main())
        assert unretrieved == []


class TestOutboxClose:
    def test_close_reports_both_what_its_flush_took_and_what_settled_after(
        self, tmp_path: Path
    ) -> None:
        """Outbox close(): its flush takes (and marks reported) one given-up event, then
        the final reconcile finds another given up by a relay elsewhere. The DeliveryError
        close() raises must list both: the second error must not replace the first,
        whose failure would then be marked reported yet never in any ``.failures``."""
        store = SQLiteOutbox(tmp_path / "outbox.db")
        pub = Publisher(transport=MemoryTransport(), outbox=store, relay=False)
        first, second = pub.publish_many([order(1), order(2)])
        rows = {c.entry.event_id: c.id for c in store.claim_batch(10, owner="x", lease_s=60)}
        store.park(rows[first.event_id], "TOPIC_AUTHORIZATION_FAILED: denied")
        pub._sink.reconcile()  # the periodic reconcile settles the first as given up
        store.park(rows[second.event_id], "TOPIC_AUTHORIZATION_FAILED: denied")
        with pytest.raises(DeliveryError) as info:
            pub.close(1)  # its final reconcile settles the second
        assert {f.event_id for f in info.value.failures} == {first.event_id, second.event_id}


class TestBacklogFailures:
    def test_a_fire_and_forget_event_refused_from_the_backlog_is_raised_by_close(
        self, caplog: pytest.LogCaptureFixture
    ) -> None:
        """``publish_nowait(e)`` found the queue full, waited in the backlog, and was
        then refused (the queue stayed full past ``enqueue_timeout``): its future fails,
        but nobody awaits it. Like every failure nobody observed, close() raises it (and
        asyncio does not report it again as never retrieved), and it is logged as
        ``delivery_failed`` when it happens."""
        unretrieved: list[object] = []
        caplog.set_level("WARNING", logger="eventwire")

        async def main() -> None:
            asyncio.get_running_loop().set_exception_handler(lambda _l, c: unretrieved.append(c))
            transport = MemoryTransport()
            pub = AsyncPublisher(transport=transport, enqueue_timeout=0.05)
            await pub.start()
            transport.queue_full_next(10**6)
            fut = pub.publish_nowait(order(1))  # fire and forget
            await asyncio.wait({fut}, timeout=2)
            assert fut.done()
            transport.heal()
            with pytest.raises(DeliveryError, match="_QUEUE_FULL"):
                await pub.close(1)
            del fut
            gc.collect()

        asyncio.run(main())
        assert unretrieved == []
        logged = [r.msg for r in caplog.records if isinstance(r.msg, dict)]
        assert any(
            m.get("event") == "delivery_failed" and m.get("code") == "_QUEUE_FULL" for m in logged
        ), logged

    def test_an_awaited_event_refused_from_the_backlog_is_not_raised_again(self) -> None:
        """The same event, awaited: the caller got BackpressureError; close() is quiet."""

        async def main() -> None:
            transport = MemoryTransport()
            pub = AsyncPublisher(transport=transport, enqueue_timeout=0.05)
            await pub.start()
            transport.queue_full_next(10**6)
            with pytest.raises(BackpressureError):
                await pub.publish(order(1))
            transport.heal()
            await pub.close(1)

        asyncio.run(main())
