"""Adversarial review of "failures reported once" (issue #17 item 3): the edge cases.

Each test here failed on the first implementation (ced39c1/a0bcf98): a failure that
never reached the application was treated as observed and so never raised, or the
bound on kept failures cost O(kept) per failure once full.
"""

from __future__ import annotations

import asyncio

import pytest

from eventwire import AsyncPublisher, DeliveryError, DeliveryHandle, _inflight
from eventwire._inflight import InFlight
from eventwire.transports.memory import MemoryTransport

from .conftest import order


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
