"""eventwire._loop_bridge: settled deliveries reach an asyncio loop.

A report served on the loop's thread resolves its future at once; reports served on
other threads cost one wake-up per burst.

The bridge is driven as AsyncPublisher drives it: a handle carries its asyncio future,
and the bridge is the ledger's settle hook.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from eventwire import DeliveryError, DeliveryHandle, DeliveryResult
from eventwire._inflight import InFlight
from eventwire._loop_bridge import LoopBridge


class _Report:
    def topic(self) -> str:
        return "orders"

    def partition(self) -> int:
        return 1

    def offset(self) -> int:
        return 42

    def timestamp(self) -> tuple[int, int]:
        return (1, 1_764_489_600_000)


class _Wakeups:
    """Counts the loop's call_soon_threadsafe calls (the bridge's wake-ups)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.count = 0
        self._original: Callable[..., Any] = loop.call_soon_threadsafe
        loop.call_soon_threadsafe = self  # type: ignore[method-assign]

    def __call__(self, callback: Callable[..., Any], *args: Any) -> Any:
        self.count += 1
        return self._original(callback, *args)


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    made = asyncio.new_event_loop()
    yield made
    if not made.is_closed():
        made.close()


def _bridged(
    loop: asyncio.AbstractEventLoop, count: int
) -> tuple[InFlight, list[DeliveryHandle], list[asyncio.Future[DeliveryResult]]]:
    """A ledger whose settle hook is a LoopBridge, with ``count`` tracked handles with futures."""
    ledger = InFlight()
    ledger.on_settle(LoopBridge(loop).push)
    handles, futures = [], []
    for n in range(count):
        handle = DeliveryHandle(ledger, f"id-{n}", "test.Placed", "orders", time.time_ns())
        future: asyncio.Future[DeliveryResult] = loop.create_future()
        handle._afut = future  # what AsyncPublisher.publish_nowait does
        ledger.add(handle)
        handles.append(handle)
        futures.append(future)
    return ledger, handles, futures


def _run_once(loop: asyncio.AbstractEventLoop) -> None:
    loop.run_until_complete(asyncio.sleep(0))


def _settle_elsewhere(ledger: InFlight, handles: list[DeliveryHandle]) -> None:
    """Settle ``handles`` on another thread (as the poll thread does), and wait for it."""

    def settle_all() -> None:
        for handle in handles:
            ledger.settle(handle, _Report(), None)

    reporter = threading.Thread(target=settle_all)
    reporter.start()
    reporter.join(30)
    assert not reporter.is_alive()


class TestWakeups:
    def test_a_burst_of_reports_wakes_the_loop_once(self, loop: asyncio.AbstractEventLoop) -> None:
        """Any number of reports settled on another thread before the loop runs cost
        one wake-up."""
        wakeups = _Wakeups(loop)
        ledger, handles, futures = _bridged(loop, 100)
        _settle_elsewhere(ledger, handles)
        assert wakeups.count == 1
        assert not any(f.done() for f in futures)
        _run_once(loop)
        assert all(f.done() for f in futures)

    def test_the_next_burst_wakes_the_loop_again(self, loop: asyncio.AbstractEventLoop) -> None:
        """After the loop drained a burst, the next report wakes it again (once)."""
        wakeups = _Wakeups(loop)
        ledger, handles, futures = _bridged(loop, 4)
        _settle_elsewhere(ledger, handles[:2])
        _run_once(loop)
        _settle_elsewhere(ledger, handles[2:])
        assert wakeups.count == 2
        _run_once(loop)
        assert all(f.done() for f in futures)

    def test_reports_on_the_loop_thread_resolve_at_once_without_a_wakeup(
        self, loop: asyncio.AbstractEventLoop
    ) -> None:
        """A report served on the loop's own thread (inside publish_nowait) resolves its
        future there and then: no queue, no call_soon_threadsafe."""
        wakeups = _Wakeups(loop)
        ledger, handles, futures = _bridged(loop, 3)
        for handle in handles:
            ledger.settle(handle, _Report(), None)
        assert [f.result().event_id for f in futures] == ["id-0", "id-1", "id-2"]
        assert wakeups.count == 0

    def test_a_report_on_the_loop_thread_waits_behind_queued_ones(
        self, loop: asyncio.AbstractEventLoop
    ) -> None:
        """Futures resolve in the order their reports were served: while reports from
        another thread wait in the queue, one served on the loop's thread joins it."""
        ledger, handles, futures = _bridged(loop, 2)
        order: list[str] = []
        for future in futures:
            future.add_done_callback(lambda f: order.append(f.result().event_id))
        _settle_elsewhere(ledger, handles[:1])
        ledger.settle(handles[1], _Report(), None)
        assert not futures[1].done()
        _run_once(loop)
        assert order == ["id-0", "id-1"]

    def test_a_handle_without_a_future_wakes_nothing(self, loop: asyncio.AbstractEventLoop) -> None:
        """A settled handle that nobody awaits (no future) does not wake the loop."""
        wakeups = _Wakeups(loop)
        ledger = InFlight()
        ledger.on_settle(LoopBridge(loop).push)
        handle = DeliveryHandle(ledger, "id", "test.Placed", "orders", time.time_ns())
        ledger.add(handle)
        ledger.settle(handle, _Report(), None)
        assert wakeups.count == 0


class TestResolution:
    def test_futures_resolve_on_the_loop_not_on_the_reporting_thread(
        self, loop: asyncio.AbstractEventLoop
    ) -> None:
        """A report served on another thread leaves the future pending until the loop runs,
        which resolves it with the stored position."""
        ledger, [handle], [future] = _bridged(loop, 1)
        resolved_on: list[int] = []
        future.add_done_callback(lambda _f: resolved_on.append(threading.get_ident()))
        reporter = threading.Thread(target=ledger.settle, args=(handle, _Report(), None))
        reporter.start()
        reporter.join(30)
        assert not future.done()
        _run_once(loop)
        assert resolved_on == [threading.get_ident()]
        result = future.result()
        assert (result.event_id, result.partition, result.offset) == ("id-0", 1, 42)

    def test_a_failed_event_fails_its_future_with_delivery_error(
        self, loop: asyncio.AbstractEventLoop
    ) -> None:
        """A failure settles the future with DeliveryError carrying that failure."""
        ledger, [handle], [future] = _bridged(loop, 1)
        failure = handle.failure_from("_MSG_TIMED_OUT", "timed out")
        ledger.settle(handle, None, failure)
        _run_once(loop)
        with pytest.raises(DeliveryError) as info:
            future.result()
        assert list(info.value.failures) == [failure]

    def test_a_cancelled_future_is_skipped(self, loop: asyncio.AbstractEventLoop) -> None:
        """A future its awaiter cancelled stays cancelled; the others still resolve."""
        ledger, handles, futures = _bridged(loop, 2)
        futures[0].cancel()
        for handle in handles:
            ledger.settle(handle, _Report(), None)
        _run_once(loop)
        assert futures[0].cancelled()
        assert futures[1].result().offset == 42


class TestClosedLoop:
    def test_a_closed_loop_is_tolerated(self, loop: asyncio.AbstractEventLoop) -> None:
        """Reports for a loop that was closed settle their handles without raising."""
        ledger, handles, _futures = _bridged(loop, 2)
        loop.close()
        for handle in handles:
            ledger.settle(handle, _Report(), None)
        assert all(h.done() for h in handles)

    def test_after_a_closed_loop_each_report_tries_again(
        self, loop: asyncio.AbstractEventLoop
    ) -> None:
        """A wake-up refused by a closed loop is not taken as scheduled: the next report
        tries again instead of waiting forever for a drain."""
        wakeups = _Wakeups(loop)
        ledger, handles, _futures = _bridged(loop, 2)
        loop.close()
        _settle_elsewhere(ledger, handles[:1])
        _settle_elsewhere(ledger, handles[1:])
        assert wakeups.count == 2

    def test_a_closed_loop_is_tolerated_on_its_own_thread(
        self, loop: asyncio.AbstractEventLoop
    ) -> None:
        """A report served on the closed loop's thread, for a future with a done-callback
        (which set_result would schedule on the closed loop), settles without raising."""
        ledger, [handle], [future] = _bridged(loop, 1)
        future.add_done_callback(lambda _f: None)
        loop.close()
        ledger.settle(handle, _Report(), None)
        assert handle.done()
