"""AsyncPublisher keeps publish order under backpressure, and refuses a foreign loop.

While the local queue is full, events wait in one FIFO backlog: an event published
later (of any key) never overtakes one that is waiting, so per-key publish order
is log order.
"""

from __future__ import annotations

import asyncio

import pytest

from eventwire import (
    AsyncPublisher,
    BackpressureError,
    DeliveryError,
    DeliveryResult,
    EventwireError,
    PublisherStateError,
)
from eventwire.transports.memory import MemoryTransport

from .conftest import order


def sent_order(transport: MemoryTransport, topic: str = "orders") -> list[str]:
    records = sorted(transport.records(topic), key=lambda r: r.sequence)
    return [(r.header("ce_id") or b"").decode() for r in records]


class TestBacklogOrder:
    def test_an_event_published_after_a_waiting_one_does_not_overtake_it(self) -> None:
        """With the queue full for the first event, the second event of its key is
        enqueued after it, not before."""

        async def main() -> tuple[list[str], list[str]]:
            transport = MemoryTransport()
            async with AsyncPublisher(transport=transport) as pub:
                transport.queue_full_next(1)
                first = pub.publish_nowait(order(1, key="k"))
                second = pub.publish_nowait(order(2, key="k"))
                results = await asyncio.gather(first, second)
            return [r.event_id for r in results], sent_order(transport)

        published, logged = asyncio.run(main())
        assert logged == published

    def test_publish_many_keeps_order_under_backpressure(self) -> None:
        """publish_many() over 5 keys with the queue repeatedly full logs every key's
        events in publish order."""

        async def main() -> tuple[list[DeliveryResult | EventwireError], MemoryTransport]:
            transport = MemoryTransport()
            async with AsyncPublisher(transport=transport) as pub:
                transport.queue_full_next(3)
                batch = [order(i, key=f"k{i % 5}") for i in range(200)]
                results = await pub.publish_many(batch)
            return results, transport

        results, transport = asyncio.run(main())
        ids = [r.event_id for r in results if isinstance(r, DeliveryResult)]
        assert len(ids) == 200
        assert sent_order(transport) == ids

    def test_a_backlog_that_stays_full_fails_in_order_with_backpressure(self) -> None:
        """When the queue stays full for enqueue_timeout, the waiting events fail with
        BackpressureError and none of them is enqueued later."""

        async def main() -> tuple[list[BaseException | DeliveryResult], MemoryTransport]:
            transport = MemoryTransport()
            pub = AsyncPublisher(transport=transport, enqueue_timeout=0.2)
            await pub.start()
            transport.queue_full_next(1_000_000)
            futs = [pub.publish_nowait(order(i, key="k")) for i in range(3)]
            results = await asyncio.gather(*futs, return_exceptions=True)
            transport.heal()
            late = await pub.publish(order(9, key="k"))
            await pub.close(1)
            return [*results, late], transport

        results, transport = asyncio.run(main())
        assert all(isinstance(r, BackpressureError) for r in results[:3])
        last = results[3]
        assert isinstance(last, DeliveryResult)
        assert sent_order(transport) == [last.event_id]

    def test_close_settles_every_waiting_event(self) -> None:
        """close() leaves no future of a waiting event pending: each one is delivered or
        fails with an EventwireError. Nobody had looked at them, so close() raises their
        failures too (``_CLOSED``: dropped by close, never sent)."""

        async def main() -> list[BaseException | DeliveryResult]:
            transport = MemoryTransport()
            pub = AsyncPublisher(transport=transport, enqueue_timeout=30)
            await pub.start()
            transport.queue_full_next(1_000_000)
            futs = [pub.publish_nowait(order(i, key="k")) for i in range(3)]
            with pytest.raises(DeliveryError, match="3 events not delivered") as info:
                await pub.close(0.2)
            assert {f.code for f in info.value.failures} == {"_CLOSED"}
            return list(await asyncio.wait_for(asyncio.gather(*futs, return_exceptions=True), 5))

        results = asyncio.run(main())
        assert all(isinstance(r, PublisherStateError) for r in results), results


class TestFlushWithBacklog:
    def test_flush_waits_for_events_waiting_for_room(self) -> None:
        """flush() returns only once events that found the queue full are delivered."""

        async def main() -> list[asyncio.Future[DeliveryResult]]:
            transport = MemoryTransport()
            pub = AsyncPublisher(transport=transport)
            await pub.start()
            transport.queue_full_next(20)
            futs = [pub.publish_nowait(order(i, key="k")) for i in range(3)]
            await pub.flush(10)
            done = [f.done() for f in futs]
            await pub.close(1)
            assert done == [True, True, True]
            return futs

        asyncio.run(main())

    def test_flush_reports_events_still_waiting_for_room_at_its_timeout(self) -> None:
        """flush(timeout) raises DeliveryError naming each event still waiting for room
        when the timeout runs out (they keep waiting, as queued ones do)."""

        async def main() -> None:
            transport = MemoryTransport()
            pub = AsyncPublisher(transport=transport, enqueue_timeout=30)
            await pub.start()
            transport.queue_full_next(1_000_000)
            futs = [pub.publish_nowait(order(i, key="k")) for i in range(2)]
            with pytest.raises(DeliveryError) as caught:
                await pub.flush(0.2)
            codes = [f.code for f in caught.value.failures]
            assert codes == ["_FLUSH_TIMEOUT", "_FLUSH_TIMEOUT"]
            assert not any(f.done() for f in futs)
            transport.heal()
            await asyncio.gather(*futs)
            await pub.close(1)

        asyncio.run(main())


class TestLoopBinding:
    def test_a_publish_from_another_loop_is_refused_before_anything_is_enqueued(self) -> None:
        """publish_nowait() on a loop other than the one the publisher is bound to raises
        PublisherStateError at once and enqueues nothing."""
        transport = MemoryTransport()
        pub = AsyncPublisher(transport=transport)

        async def first() -> None:
            await pub.publish(order(1))

        async def second() -> None:
            with pytest.raises(PublisherStateError, match="another event loop"):
                pub.publish_nowait(order(2))

        asyncio.run(first())
        asyncio.run(second())
        assert len(transport.records("orders")) == 1


class TestCloseRefusesNewEvents:
    def test_a_publish_while_close_drains_the_backlog_raises(self) -> None:
        """Once close() has begun (draining the backlog), publish_nowait() raises
        PublisherStateError at once, while the waiting events are still delivered."""

        async def main() -> None:
            transport = MemoryTransport()
            pub = AsyncPublisher(transport=transport, enqueue_timeout=30)
            await pub.start()
            transport.queue_full_next(50)
            waiting = [pub.publish_nowait(order(i, key="k")) for i in range(3)]
            closing = asyncio.ensure_future(pub.close(5))
            await asyncio.sleep(0)  # close() has begun
            with pytest.raises(PublisherStateError, match="closed"):
                pub.publish_nowait(order(9, key="k"))
            await closing
            assert [f.result().offset for f in waiting] == [0, 1, 2]

        asyncio.run(main())
