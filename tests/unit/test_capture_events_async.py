"""capture_events in async tests: ``async with`` gives an AsyncPublisher on the test's
loop, ``events()`` returns typed events of every shape, ``wait_for()`` waits for events
published in the background. Every case runs under pytest-asyncio (strict mode, marked
``asyncio``) and under anyio's pytest plugin (marked ``anyio``, asyncio backend)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import msgspec
import pytest

from eventwire import AsyncPublisher, DeliveryError, Publisher, PublisherStateError, Route
from eventwire.testing import capture_events

from ..shapes import SHAPES, make, routes_for


class Shipped(msgspec.Struct, frozen=True):
    order_id: str


def mixed_routes() -> dict[type, Route]:
    """Every shape's order class and Shipped, each on its own topic."""
    routes: dict[type, Route] = {
        order_cls: Route(topic=f"orders-{shape}", key="order_id")
        for shape, (order_cls, _item) in SHAPES.items()
    }
    routes[Shipped] = Route(topic="shipments", key="order_id")
    return routes


@pytest.fixture
def anyio_backend() -> str:
    """AsyncPublisher is asyncio code: anyio's plugin runs these cases on asyncio."""
    return "asyncio"


class AsyncCaptureCases:
    """The cases; the subclasses below choose the pytest plugin that runs them."""

    @pytest.mark.parametrize("shape", list(SHAPES))
    async def test_async_with_gives_an_async_publisher_whose_events_come_back_typed(
        self, shape: str
    ) -> None:
        """`async with capture_events()` yields an AsyncPublisher bound to the running
        loop; an awaited publish of any shape (Struct, dataclass, attrs, pydantic with
        aliases) is read back by events(cls) as an equal instance of that class."""
        order = make(shape)
        async with capture_events(routes=routes_for(shape)) as captured:
            assert isinstance(captured.publisher, AsyncPublisher)
            result = await captured.publisher.publish(order)
            assert (result.topic, result.offset) == ("orders", 0)
            [back] = captured.events(type(order))
        assert type(back) is type(order)
        assert back == order

    async def test_events_without_a_class_decodes_each_record_as_the_class_it_was_sent_as(
        self,
    ) -> None:
        """events() with no class returns every event, each decoded into its own class,
        in publish order across topics; events(topic=...) narrows to one topic."""
        sent = [make("pydantic", "o-1"), Shipped("o-1"), make("attrs", "o-2"), make("struct")]
        async with capture_events(routes=mixed_routes()) as captured:
            for item in sent:
                await captured.publisher.publish(item)
            everything = captured.events()
            assert [type(e) for e in everything] == [type(e) for e in sent]
            assert everything == sent
            assert captured.events(topic="shipments") == [Shipped("o-1")]

    async def test_wait_for_returns_once_the_background_publisher_has_sent_enough(
        self,
    ) -> None:
        """wait_for(n, cls) waits for events published by a task the test does not await
        (publish_nowait), and returns them typed and in order."""
        async with capture_events(routes=routes_for("dataclass")) as captured:
            publisher = captured.publisher

            async def place_orders() -> None:
                for i in range(3):
                    await asyncio.sleep(0.05)
                    publisher.publish_nowait(make("dataclass", f"o-{i}"))

            task = asyncio.create_task(place_orders())
            started = time.monotonic()
            got = await captured.wait_for(3, SHAPES["dataclass"][0], timeout=10)
            assert got == [make("dataclass", f"o-{i}") for i in range(3)]
            assert time.monotonic() - started >= 0.1  # it did wait for the task
            await task

    async def test_wait_for_counts_only_the_class_and_topic_asked_for(self) -> None:
        """Events of another class do not satisfy wait_for(cls): it times out with a
        TimeoutError naming the class and what was sent."""
        async with capture_events(routes=mixed_routes()) as captured:
            await captured.publisher.publish(Shipped("o-9"))
            assert await captured.wait_for(1) == [Shipped("o-9")]
            assert await captured.wait_for(1, topic="shipments") == [Shipped("o-9")]
            started = time.monotonic()
            with pytest.raises(TimeoutError, match=r"1 event\(s\) of StructOrder; 0 sent"):
                await captured.wait_for(1, SHAPES["struct"][0], timeout=0.2)
            assert 0.2 <= time.monotonic() - started < 5
            with pytest.raises(TimeoutError, match=r"2 event\(s\) of Shipped; 1 sent: \[Ship"):
                await captured.wait_for(2, Shipped, timeout=0.05)

    async def test_wait_for_refuses_a_count_below_one(self) -> None:
        async with capture_events() as captured:
            with pytest.raises(ValueError, match="count >= 1"):
                await captured.wait_for(0)

    async def test_an_unobserved_delivery_failure_is_raised_on_leaving_the_block(self) -> None:
        """A failure nobody looked at before the block ends (publish_nowait, future not
        awaited) raises DeliveryError when the block closes the publisher, as in
        production."""
        capture = capture_events(routes=routes_for("struct"))
        captured = await capture.__aenter__()
        captured.transport.fail_topic("orders")
        future = captured.publisher.publish_nowait(make("struct"))
        with pytest.raises(DeliveryError, match="TOPIC_AUTHORIZATION_FAILED"):
            await capture.__aexit__(None, None, None)
        assert captured.publisher.closed
        # (read only now, so asyncio does not log "exception was never retrieved")
        assert isinstance(future.exception(), DeliveryError)

    async def test_the_block_closes_the_async_publisher(self) -> None:
        async with capture_events() as captured:
            pass
        assert captured.publisher.closed


class TestUnderPytestAsyncio(AsyncCaptureCases):
    pytestmark = pytest.mark.asyncio


class TestUnderAnyio(AsyncCaptureCases):
    pytestmark = pytest.mark.anyio


def test_the_same_helper_gives_a_sync_publisher_in_a_with_block() -> None:
    """`with capture_events()` (no loop needed) yields a Publisher; events() is the same."""
    with capture_events(routes=mixed_routes()) as captured:
        assert isinstance(captured.publisher, Publisher)
        captured.publisher.publish(make("pydantic")).result(1)
        captured.publisher.publish(Shipped("o-1")).result(1)
    assert captured.events() == [make("pydantic"), Shipped("o-1")]
    assert captured.publisher.closed


def test_one_capture_cannot_be_entered_twice_at_once() -> None:
    capture = capture_events()
    with capture, pytest.raises(PublisherStateError, match="already in use"), capture:
        pass


def test_async_with_works_under_plain_asyncio_run() -> None:
    """No pytest plugin needed: asyncio.run() of a coroutine that uses the helper."""

    async def main() -> Any:
        async with capture_events(routes=routes_for("attrs")) as captured:
            captured.publisher.publish_nowait(make("attrs"))
            return await captured.wait_for(1, SHAPES["attrs"][0])

    assert asyncio.run(main()) == [make("attrs")]
