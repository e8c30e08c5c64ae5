"""The AsyncPublisher on the memory transport."""

from __future__ import annotations

import asyncio
import statistics
import time

import pytest

from eventwire import (
    AsyncPublisher,
    BackpressureError,
    DeliveryError,
    DeliveryResult,
    RoutingError,
)
from eventwire.transports.memory import MemoryTransport

from .conftest import Unrouted, order


def run(coro):  # type: ignore[no-untyped-def]
    return asyncio.run(coro)


class TestAsyncPublish:
    def test_await_publish_resolves_with_delivery_metadata(self) -> None:
        """await publish() returns topic, partition, offset, timestamp and event id."""

        async def main() -> DeliveryResult:
            async with AsyncPublisher(transport=MemoryTransport()) as pub:
                return await pub.publish(order(1))

        meta = run(main())
        assert (meta.topic, meta.offset) == ("orders", 0)
        assert meta.event_id and meta.timestamp.year >= 2026

    def test_publish_raises_delivery_error_for_a_failed_event(self) -> None:
        """A failed delivery raises DeliveryError from await publish()."""

        async def main() -> None:
            t = MemoryTransport()
            t.fail_next(1, "TOPIC_AUTHORIZATION_FAILED")
            pub = AsyncPublisher(transport=t)
            with pytest.raises(DeliveryError, match="TOPIC_AUTHORIZATION_FAILED"):
                await pub.publish(order(1))
            await pub.close(1)  # observed by the await: close() does not raise it again

        run(main())

    def test_publish_nowait_returns_a_future(self) -> None:
        """publish_nowait() returns at once; the future resolves at the ack."""

        async def main() -> None:
            t = MemoryTransport()
            async with AsyncPublisher(transport=t) as pub:
                t.pause()
                fut = pub.publish_nowait(order(1))
                assert not fut.done()
                t.resume()
                assert (await asyncio.wait_for(fut, 1)).offset == 0

        run(main())

    def test_publish_many_isolates_failures(self) -> None:
        """One invalid and one failing event do not cancel the others."""

        async def main() -> list[object]:
            t = MemoryTransport()
            async with AsyncPublisher(transport=t) as pub:
                t.fail_next(1, "_MSG_TIMED_OUT")
                results = await pub.publish_many(
                    [order(1), Unrouted(order_id="x"), order(2), order(3)]
                )
                await pub.flush(1)  # publish_many returned the failure: not raised again
                return list(results)

        results = run(main())
        assert isinstance(results[0], DeliveryError)
        assert isinstance(results[1], RoutingError)
        assert isinstance(results[2], DeliveryResult) and isinstance(results[3], DeliveryResult)

    def test_full_queue_waits_without_blocking_then_fails_the_future(self) -> None:
        """A queue full past enqueue_timeout fails the future with BackpressureError."""

        async def main() -> None:
            t = MemoryTransport()
            async with AsyncPublisher(transport=t, enqueue_timeout=0.05) as pub:
                t.queue_full_next(10**6)
                with pytest.raises(BackpressureError):
                    await pub.publish(order(1))
                t.heal()
                assert (await pub.publish(order(2))).offset == 0

        run(main())


class TestLoopNeverBlocks:
    def test_loop_lag_stays_small_while_publishing(self) -> None:
        """A 1 ms ticker keeps ticking while 20k events are published: its median lag stays
        under 20 ms and no single stall reaches 1 s (a blocking wait would). Loose bounds,
        because the machines are shared and noisy."""

        async def main() -> tuple[float, float]:
            lags: list[float] = []
            stop = asyncio.Event()

            async def ticker() -> None:
                while not stop.is_set():
                    t0 = time.perf_counter()
                    await asyncio.sleep(0.001)
                    lags.append(time.perf_counter() - t0 - 0.001)

            tick = asyncio.create_task(ticker())
            async with AsyncPublisher(transport=MemoryTransport()) as pub:
                for chunk in range(200):
                    await pub.publish_many(order(n) for n in range(chunk * 100, chunk * 100 + 100))
                    await asyncio.sleep(0)
            stop.set()
            await tick
            return statistics.median(lags), max(lags)

        median, worst = run(main())
        assert median < 0.02, f"median loop lag {median * 1000:.1f} ms"
        assert worst < 1.0, f"event loop stalled for {worst * 1000:.0f} ms"


class _WakeCounting(MemoryTransport):
    """A memory transport that counts wake() calls (the 'serve reports now' hint)."""

    def __init__(self) -> None:
        super().__init__()
        self.wakes = 0

    def wake(self) -> None:
        self.wakes += 1


class TestServeHint:
    def test_a_burst_of_publish_nowait_wakes_the_transport_once_the_loop_is_free(
        self,
    ) -> None:
        """While the publishing task runs, the transport is left to batch its polling;
        when the task yields, one wake() per burst asks it to serve reports as they
        come (so an await never sits out the poll thread's busy backoff)."""

        async def main() -> list[int]:
            transport = _WakeCounting()
            seen: list[int] = []
            async with AsyncPublisher(transport=transport) as pub:
                transport.pause()
                futures = [pub.publish_nowait(order(n)) for n in range(50)]
                seen.append(transport.wakes)
                await asyncio.sleep(0)
                seen.append(transport.wakes)
                futures += [pub.publish_nowait(order(n)) for n in range(50, 60)]
                await asyncio.sleep(0)
                seen.append(transport.wakes)
                transport.resume()
                await asyncio.gather(*futures)
            return seen

        assert run(main()) == [0, 1, 2]


def test_events_waiting_for_room_count_as_in_flight_and_in_the_gauge() -> None:
    """While the local queue is full, publish_nowait's events wait in the backlog: they
    are published and not yet acknowledged, so in_flight and eventwire.in_flight_events
    count them (they read 0 exactly while backpressure held them)."""
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader

    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])

    def gauge() -> list[int]:
        data = reader.get_metrics_data()
        return [
            point.value
            for rm in (data.resource_metrics if data else [])
            for sm in rm.scope_metrics
            for metric in sm.metrics
            if metric.name == "eventwire.in_flight_events"
            for point in metric.data.data_points  # type: ignore[union-attr]
        ]

    async def main() -> None:
        transport = MemoryTransport()
        pub = AsyncPublisher(transport=transport, meter_provider=provider, enqueue_timeout=5)
        transport.queue_full_next(10**6)
        futures = [pub.publish_nowait(order(n)) for n in range(3)]
        await asyncio.sleep(0.05)
        assert not any(f.done() for f in futures)
        assert pub.in_flight == 3
        assert gauge() == [3]
        transport.heal()
        await asyncio.gather(*futures)
        assert pub.in_flight == 0
        assert gauge() == [0]
        await pub.close(1)

    try:
        run(main())
    finally:
        provider.shutdown()
