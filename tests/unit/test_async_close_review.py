"""Regressions from the review of AsyncPublisher's closing: a close after a cancelled or
interrupted one, a cancelled start(), and the loop ending without close() (async outbox)."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from eventwire import (
    AsyncPublisher,
    DeliveryError,
    OutboxWriteError,
    PublisherStateError,
)
from eventwire.observability.logging import capture_logs
from eventwire.outbox import SQLiteOutbox
from eventwire.outbox.base import OutboxEntry
from eventwire.transports.memory import MemoryTransport

from .conftest import InterruptedOnce, SlowClose, close_on_a_new_loop, order

SRC = Path(__file__).resolve().parents[2] / "src"


class SlowCheck(MemoryTransport):
    """A broker check that takes its whole timeout (a broker that does not answer)."""

    def check_connection(self, timeout: float) -> None:
        time.sleep(min(timeout, 1.0))


class InterruptedCheck(MemoryTransport):
    """A broker check cut short by an interrupt."""

    def check_connection(self, timeout: float) -> None:
        raise KeyboardInterrupt


class SlowStore(SQLiteOutbox):
    """A SQLite outbox whose commits take ``delay`` s (a slow fsync, a held lock)."""

    delay = 0.3

    def add(self, entries: Sequence[OutboxEntry], *, connection: Any = None) -> list[int]:
        time.sleep(self.delay)
        return super().add(entries, connection=connection)


async def _cancel_every_other_task() -> None:
    """A shutdown that cancels every task (a common SIGTERM handler), then lets them end."""
    me = asyncio.current_task()
    others = [task for task in asyncio.all_tasks() if task is not me]
    for task in others:
        task.cancel()
    await asyncio.gather(*others, return_exceptions=True)


class TestACloseAfterACancelledClose:
    def test_waits_for_the_closing_thread_and_raises_its_outcome(self) -> None:
        """The close task is cancelled while its worker thread closes the producer: the
        next close() waits for that thread and raises the events' failures, instead of
        returning at once with them still in flight."""
        transport = SlowClose()

        async def main() -> tuple[float, int, list[str]]:
            pub = AsyncPublisher(transport=transport)
            await pub.start()
            transport.pause()
            for n in range(3):
                pub.publish_nowait(order(n))
            first = asyncio.ensure_future(pub.close(0.6))
            await asyncio.sleep(0.1)  # its worker thread is closing
            await _cancel_every_other_task()
            assert first.cancelled()
            started = time.monotonic()
            with pytest.raises(DeliveryError) as raised:
                await pub.close(5)
            waited = time.monotonic() - started
            await pub.close(1)  # raised once: nothing more
            return waited, pub.in_flight, [f.code for f in raised.value.failures]

        waited, in_flight, codes = asyncio.run(main())
        assert codes == ["_PURGE_INFLIGHT"] * 3
        assert in_flight == 0
        assert waited > 0.2

    def test_on_a_new_loop_waits_for_the_first_loops_closing_thread(self) -> None:
        """The first loop cancelled its close task (asyncio.run's cancellation after a
        second Ctrl-C) while the closing thread runs on: a close() on a new loop waits
        for that thread (polling, up to its own timeout) and raises its outcome."""
        transport = SlowClose()
        box: dict[str, Any] = {}
        cancelled, leave = threading.Event(), threading.Event()

        async def first_loop() -> None:
            pub = box["pub"] = AsyncPublisher(transport=transport)
            await pub.start()
            transport.pause()
            for n in range(3):
                pub.publish_nowait(order(n))
            first = asyncio.ensure_future(pub.close(0.6))
            await asyncio.sleep(0.1)
            await _cancel_every_other_task()
            assert first.cancelled()
            cancelled.set()
            while not leave.is_set():
                await asyncio.sleep(0.01)

        thread = threading.Thread(target=asyncio.run, args=(first_loop(),), daemon=True)
        thread.start()
        try:
            assert cancelled.wait(5)

            waited, codes = close_on_a_new_loop(box["pub"], 5)
        finally:
            leave.set()
            thread.join(5)
        assert codes == ["_PURGE_INFLIGHT"] * 3
        assert waited > 0.2
        assert box["pub"].in_flight == 0

    def test_with_an_outbox_waits_for_the_closing_thread(self, tmp_path: Path) -> None:
        """With an outbox, the close after a cancel-all waits for the closing thread
        (which settles the handles as _IN_OUTBOX) instead of returning while it runs."""
        transport = MemoryTransport()
        transport.pause()  # the relay's sends are never acknowledged
        store = SQLiteOutbox(tmp_path / "o.db")

        async def main() -> list[bool]:
            pub = AsyncPublisher(transport=transport, outbox=store)
            await pub.start()
            futures = [pub.publish_nowait(order(n)) for n in range(3)]
            await asyncio.sleep(0.3)  # committed, sent by the relay, not acknowledged
            first = asyncio.ensure_future(pub.close(0.8))
            await asyncio.sleep(0.2)  # its worker thread flushes the outbox sink
            await _cancel_every_other_task()
            assert first.cancelled()
            await pub.close(5)
            return [f.done() for f in futures]

        try:
            assert asyncio.run(main()) == [True, True, True]
        finally:
            store.close()

    @pytest.mark.parametrize("interrupt", [KeyboardInterrupt, SystemExit])
    def test_an_interrupted_closing_is_finished_by_the_next_close(
        self, interrupt: type[BaseException]
    ) -> None:
        """A closing cut short by an interrupt out of the transport left the publisher
        half-closed for good (every later close() returned None, the transport ran on).
        Now flush() says so, and the next close() finishes it and reports the events."""
        transport = InterruptedOnce(interrupt)
        transport.pause()
        pub = AsyncPublisher(transport=transport)

        async def main() -> None:
            await pub.start()
            for n in range(3):
                pub.publish_nowait(order(n))
            await pub.close(1)

        with pytest.raises(interrupt):
            asyncio.run(main())
        with pytest.raises(PublisherStateError, match=r"close\(\) was cut short"):
            asyncio.run(pub.flush(1))
        with pytest.raises(DeliveryError) as raised:
            asyncio.run(pub.close(1))
        assert len(raised.value.failures) == 3
        assert transport.closed
        assert pub.in_flight == 0
        asyncio.run(pub.close(1))  # closed now: nothing more

    def test_a_closing_cut_short_while_a_later_close_waits_is_finished_by_it(self) -> None:
        """The close task was cancelled; its worker thread's closing is then cut short
        while a later close() waits for it: that close() finishes the closing and
        raises the events' failures."""

        class SlowThenInterrupted(MemoryTransport):
            calls = 0

            def close(self, timeout: float) -> int:
                self.calls += 1
                if self.calls == 1:
                    time.sleep(0.3)
                    raise KeyboardInterrupt
                return super().close(timeout)

        transport = SlowThenInterrupted()

        async def main() -> list[str]:
            pub = AsyncPublisher(transport=transport)
            await pub.start()
            transport.pause()
            for n in range(3):
                pub.publish_nowait(order(n))
            first = asyncio.ensure_future(pub.close(1))
            await asyncio.sleep(0.1)
            await _cancel_every_other_task()
            assert first.cancelled()
            with pytest.raises(DeliveryError) as raised:
                await pub.close(5)
            return [f.code for f in raised.value.failures]

        assert asyncio.run(main()) == ["_PURGE_INFLIGHT"] * 3
        assert transport.closed


class TestACancelledStartClosesThePublisher:
    def test_a_timed_out_async_with_entry_closes_the_transport(self) -> None:
        """asyncio.timeout() around ``async with`` runs out during the broker check:
        the publisher is closed (its transport with it) before TimeoutError goes on."""
        transport = SlowCheck()
        pub = AsyncPublisher(transport=transport, connect_timeout=5)

        async def main() -> None:
            async with asyncio.timeout(0.2), pub:
                raise AssertionError("not entered")  # pragma: no cover

        with pytest.raises(TimeoutError):
            asyncio.run(main())
        assert pub.closed
        assert transport.closed

    def test_an_interrupted_start_closes_the_transport(self) -> None:
        """A KeyboardInterrupt during start() closes the publisher, then goes on."""
        transport = InterruptedCheck()
        pub = AsyncPublisher(transport=transport, connect_timeout=5)

        async def main() -> None:
            await pub.start()

        with pytest.raises(KeyboardInterrupt):
            asyncio.run(main())
        assert transport.closed

    def test_no_kafka_poll_thread_is_left_behind(self) -> None:
        """The real case: ``async with AsyncPublisher(unreachable broker)`` under a startup
        deadline, retried; no librdkafka producer or poll thread is left running."""

        def poll_threads() -> int:
            return sum(t.name == "eventwire-poll" for t in threading.enumerate())

        before = poll_threads()

        async def attempt() -> None:
            with pytest.raises(TimeoutError):
                async with asyncio.timeout(0.3), AsyncPublisher("127.0.0.1:1"):
                    raise AssertionError("not entered")  # pragma: no cover

        async def main() -> None:
            for _ in range(2):
                await attempt()

        asyncio.run(main())
        deadline = time.monotonic() + 5
        while poll_threads() > before and time.monotonic() < deadline:
            time.sleep(0.05)
        assert poll_threads() == before


class TestTheLoopEndsWithoutClose:
    def test_events_queued_behind_the_commit_fail_and_are_logged(self, tmp_path: Path) -> None:
        """asyncio.run() ends during a commit (no close()): the commit under way fails as
        possibly written, saying the writer was cancelled (not that close() timed out),
        and the events queued behind it fail as not written, logged, and raised by a
        later close(), instead of vanishing."""
        store = SlowStore(tmp_path / "o.db")
        pub = AsyncPublisher(transport=MemoryTransport(), outbox=store, relay=False)
        futures: list[asyncio.Future[Any]] = []

        async def main() -> None:
            await pub.start()
            futures.append(pub.publish_nowait(order(0)))
            await asyncio.sleep(0.05)  # the writer task is committing it
            futures.extend(pub.publish_nowait(order(n)) for n in range(1, 5))

        try:
            with capture_logs() as logs:
                asyncio.run(main())
            assert all(f.done() for f in futures)
            assert {entry["code"] for entry in logs if entry["event"] == "delivery_failed"} == {
                "_OUTBOX_WRITE_UNKNOWN",
                "_OUTBOX_WRITE_FAILED",
            }
            with pytest.raises(DeliveryError) as raised:
                asyncio.run(pub.close(1))  # (before the test looks at the futures)
            assert len(raised.value.failures) == 5
            errors = [f.exception() for f in futures]
            assert all(isinstance(e, OutboxWriteError) for e in errors)
            written = [getattr(e, "possibly_written", None) for e in errors]
            assert written == [True, False, False, False, False]
            assert "writer task was cancelled" in str(errors[0])
            assert "close() timed out" not in str(errors[0])
        finally:
            time.sleep(SlowStore.delay)  # the cancelled commit's thread ends
            store.close()

    def test_events_of_a_writer_cancelled_before_it_ran_fail(self, tmp_path: Path) -> None:
        """A shutdown cancels every task before the writer task's first step: its
        events fail (not written) instead of waiting for a commit that never comes."""
        store = SQLiteOutbox(tmp_path / "o.db")
        pub = AsyncPublisher(transport=MemoryTransport(), outbox=store, relay=False)
        futures: list[asyncio.Future[Any]] = []

        async def main() -> None:
            await pub.start()
            futures.extend(pub.publish_nowait(order(n)) for n in range(3))
            await _cancel_every_other_task()  # (the writer task has not run yet)

        try:
            asyncio.run(main())
            assert all(f.done() for f in futures)
            with pytest.raises(DeliveryError) as raised:
                asyncio.run(pub.close(1))
            assert [f.code for f in raised.value.failures] == ["_OUTBOX_WRITE_FAILED"] * 3
            errors = [f.exception() for f in futures]
            assert all(isinstance(e, OutboxWriteError) and not e.possibly_written for e in errors)
        finally:
            store.close()
