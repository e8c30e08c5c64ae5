"""Failures are reported once (issue #17 item 3), sync and async, on the memory transport.

A failure the application observed -- ``result()`` raised, ``failed()``/``failure`` told
it, a done-callback ran, an awaited future raised, or ``publish_many`` returned it -- is
not raised again by ``flush()``/``close()``. A failure nobody observed still is, as
asyncio reports "exception was never retrieved".
"""

from __future__ import annotations

import asyncio
import gc
from typing import Any

import pytest

from eventwire import AsyncPublisher, DeliveryError, Publisher
from eventwire.transports.memory import MemoryTransport

from .conftest import order


class TestSync:
    def test_a_failure_result_raised_is_not_raised_again_by_the_with_block(self) -> None:
        """The with-block's close() stays quiet about a failure result() already raised."""
        transport = MemoryTransport()
        transport.fail_next(1, "TOPIC_AUTHORIZATION_FAILED")
        with Publisher(transport=transport) as pub:
            handle = pub.publish(order(1))
            with pytest.raises(DeliveryError, match="TOPIC_AUTHORIZATION_FAILED"):
                handle.result(1)
            pub.publish(order(2)).result(1)

    def test_an_unobserved_failure_is_still_raised_by_close(self) -> None:
        """Nobody looked at the handle: close() raises the failure, naming the event."""
        transport = MemoryTransport()
        transport.fail_next(1, "_MSG_TIMED_OUT")
        pub = Publisher(transport=transport)
        handle = pub.publish(order(1))
        with pytest.raises(DeliveryError, match=handle.event_id) as info:
            pub.close(1)
        assert [f.code for f in info.value.failures] == ["_MSG_TIMED_OUT"]

    def test_a_failure_flush_reported_is_not_raised_again_by_close(self) -> None:
        """flush() reports a failure once; close() afterwards does not repeat it."""
        transport = MemoryTransport()
        transport.fail_next(1, "_MSG_TIMED_OUT")
        pub = Publisher(transport=transport)
        pub.publish(order(1))
        with pytest.raises(DeliveryError):
            pub.flush(1)
        pub.close(1)

    def test_a_done_callback_that_ran_counts_as_observing(self) -> None:
        """An application that handles failures in done-callbacks is not told twice."""
        transport = MemoryTransport()
        transport.pause()
        transport.fail_next(1, "_MSG_TIMED_OUT")
        seen: list[str] = []
        with Publisher(transport=transport) as pub:
            handle = pub.publish(order(1))
            handle.add_done_callback(lambda h: seen.append(h._failure.code))  # type: ignore[union-attr]
            transport.resume()
            pub.flush(1)
        assert seen == ["_MSG_TIMED_OUT"]


class TestAsync:
    def test_an_awaited_failure_is_not_raised_again_by_async_with(self) -> None:
        """The FastAPI-lifespan case: a request's ``await publish()`` raised and was handled;
        leaving ``async with`` at shutdown does not raise it again."""

        async def main() -> None:
            transport = MemoryTransport()
            async with AsyncPublisher(transport=transport) as pub:
                transport.fail_next(1, "TOPIC_AUTHORIZATION_FAILED")
                with pytest.raises(DeliveryError, match="TOPIC_AUTHORIZATION_FAILED"):
                    await pub.publish(order(1))
                await pub.publish(order(2))

        asyncio.run(main())

    def test_a_never_awaited_future_is_raised_by_close_and_not_logged_by_asyncio(self) -> None:
        """publish_nowait's future nobody awaited: close() raises its failure, and asyncio
        does not also report "exception was never retrieved" for it."""
        unretrieved: list[dict[str, Any]] = []

        async def main() -> None:
            asyncio.get_running_loop().set_exception_handler(
                lambda _loop, context: unretrieved.append(context)
            )
            transport = MemoryTransport()
            pub = AsyncPublisher(transport=transport)
            await pub.start()
            transport.fail_next(1, "_MSG_TIMED_OUT")
            fut = pub.publish_nowait(order(1))
            await asyncio.wait({fut}, timeout=1)
            assert fut.done()
            with pytest.raises(DeliveryError, match="_MSG_TIMED_OUT"):
                await pub.close(1)
            del fut
            gc.collect()

        asyncio.run(main())
        assert unretrieved == []

    def test_an_unawaited_future_reported_by_flush_is_not_raised_again_by_close(self) -> None:
        """Reported once: flush() raises it, close() does not."""

        async def main() -> None:
            transport = MemoryTransport()
            pub = AsyncPublisher(transport=transport)
            await pub.start()
            transport.fail_next(1, "_MSG_TIMED_OUT")
            fut = pub.publish_nowait(order(1))
            await asyncio.wait({fut}, timeout=1)
            with pytest.raises(DeliveryError):
                await pub.flush(1)
            await pub.close(1)

        asyncio.run(main())

    def test_publish_many_returned_failures_are_not_raised_again(self) -> None:
        """publish_many returns each failure in its list: close() stays quiet."""

        async def main() -> list[object]:
            transport = MemoryTransport()
            async with AsyncPublisher(transport=transport) as pub:
                transport.fail_next(2, "_MSG_TIMED_OUT")
                return list(await pub.publish_many([order(1), order(2), order(3)]))

        results = asyncio.run(main())
        assert [type(r).__name__ for r in results] == [
            "DeliveryError",
            "DeliveryError",
            "DeliveryResult",
        ]


class TestAsyncOutbox:
    """The same rule with ``AsyncPublisher(outbox=...)``: the relay gives an event up."""

    def test_an_unawaited_dead_letter_is_raised_by_close_and_an_awaited_one_is_not(
        self, tmp_path: Any
    ) -> None:
        """eventwire's own future-resolving callback is not the application observing:
        the future nobody awaited is still reported by close(); the awaited one is not."""
        from eventwire.outbox import SQLiteOutbox

        async def main() -> None:
            transport = MemoryTransport()
            transport.fail_topic("orders", "TOPIC_AUTHORIZATION_FAILED")
            pub = AsyncPublisher(
                transport=transport,
                outbox=SQLiteOutbox(str(tmp_path / "outbox.db")),
                relay_options={"idle_interval_s": 0.01},
            )
            await pub.start()
            with pytest.raises(DeliveryError, match="TOPIC_AUTHORIZATION_FAILED"):
                await pub.publish(order(1))
            unseen = pub.publish_nowait(order(2))
            await asyncio.wait({unseen}, timeout=10)
            assert unseen.done()
            with pytest.raises(DeliveryError) as info:
                await pub.close(5)
            assert [f.code for f in info.value.failures] == ["TOPIC_AUTHORIZATION_FAILED"]

        asyncio.run(main())
