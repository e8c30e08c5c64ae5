"""Publisher.publish_many: a batch that stops part-way says exactly what was enqueued.

Events are enqueued in order. If event k cannot be enqueued (queue full past
enqueue_timeout, refused as too large, ...) the call raises BatchPublishError
carrying the handles of events 0..k-1 (enqueued, they will be reported as usual)
and the ce_id given to every event of the batch, so a retry of the rest with
``event_ids=`` re-sends them under the same ids.
"""

from __future__ import annotations

from collections.abc import Sequence

import pytest

import eventwire
from eventwire import (
    BackpressureError,
    DeliveryError,
    EventwireError,
    Publisher,
    RoutingError,
    SerializationError,
)
from eventwire.transports.base import DeliveryCallback, TransportQueueFull
from eventwire.transports.memory import MemoryTransport

from .conftest import OrderPlaced, Unrouted, order


class FullAfter(MemoryTransport):
    """A memory log whose local queue is full after ``n`` sends, until healed."""

    def __init__(self, n: int) -> None:
        super().__init__()
        self.room = n

    def send(
        self,
        topic: str,
        key: bytes | None,
        value: bytes,
        headers: Sequence[tuple[str, bytes]],
        on_delivery: DeliveryCallback,
    ) -> None:
        if self.room <= 0:
            raise TransportQueueFull()
        self.room -= 1
        super().send(topic, key, value, headers, on_delivery)


def big(n: int) -> OrderPlaced:
    return OrderPlaced(order_id=f"o-{n}", customer_name="x" * 5_000, total_price=1.0)


def ce_ids(transport: MemoryTransport) -> list[str]:
    records = sorted(transport.records("orders"), key=lambda r: r.sequence)
    return [(r.header("ce_id") or b"").decode() for r in records]


class TestPartialBatch:
    def test_a_refused_event_reports_the_handles_of_those_enqueued_before_it(self) -> None:
        """A too-large event 2 of 4: the error carries handles of events 0 and 1 (both
        delivered), ids for all 4, and the index and cause of the failure."""
        transport = MemoryTransport(max_message_bytes=1_000)
        pub = Publisher(transport=transport, source="urn:test")
        batch = [order(0), order(1), big(2), order(3)]
        with pytest.raises(EventwireError) as caught:
            pub.publish_many(batch)
        err = caught.value
        enqueued = len(transport.records("orders"))
        assert getattr(err, "handles", None) is not None, (
            f"{type(err).__name__} raised after {enqueued} events were enqueued, "
            "without their handles"
        )
        assert isinstance(err, eventwire.BatchPublishError)
        assert err.failed_index == 2
        assert isinstance(err.__cause__, DeliveryError)
        assert "MSG_SIZE_TOO_LARGE" in str(err.__cause__)
        assert [h.result(1).event_id for h in err.handles] == err.event_ids[:2]
        assert len(err.event_ids) == 4 and len(set(err.event_ids)) == 4
        assert ce_ids(transport) == err.event_ids[:2]
        pub.close(1)

    def test_backpressure_mid_batch_can_be_retried_under_the_same_ids(self) -> None:
        """The queue fills after 3 of 5 events: a retry of the rest with event_ids= puts
        every event in the log exactly once, in order, under the ids first given."""
        transport = FullAfter(3)
        pub = Publisher(transport=transport, source="urn:test", enqueue_timeout=0.05)
        batch = [order(i) for i in range(5)]
        with pytest.raises(eventwire.BatchPublishError) as caught:
            pub.publish_many(batch)
        err = caught.value
        assert isinstance(err.__cause__, BackpressureError)
        assert (err.failed_index, len(err.handles)) == (3, 3)
        transport.room = 10
        rest = pub.publish_many(batch[3:], event_ids=err.event_ids[3:])
        assert [h.result(1).event_id for h in rest] == err.event_ids[3:]
        assert ce_ids(transport) == err.event_ids
        pub.close(1)

    def test_an_invalid_event_raises_before_anything_is_enqueued(self) -> None:
        """A batch with an unroutable event raises RoutingError and enqueues nothing."""
        transport = MemoryTransport()
        pub = Publisher(transport=transport, source="urn:test")
        with pytest.raises(RoutingError):
            pub.publish_many([order(0), Unrouted("x")])
        assert transport.records() == []
        pub.close(1)

    def test_event_ids_must_match_the_events(self) -> None:
        """event_ids of another length than events is refused before anything is sent."""
        transport = MemoryTransport()
        pub = Publisher(transport=transport, source="urn:test")
        with pytest.raises(ValueError, match="event_ids"):
            pub.publish_many([order(0), order(1)], event_ids=["a"])
        assert transport.records() == []
        pub.close(1)


class TestOutboxBatch:
    def test_an_outbox_batch_takes_the_given_event_ids(self, tmp_path) -> None:  # type: ignore[no-untyped-def]
        """With an outbox, publish_many(event_ids=) commits the batch under those ids."""
        from eventwire.outbox import SQLiteOutbox

        transport = MemoryTransport()
        pub = Publisher(
            transport=transport, source="urn:test", outbox=SQLiteOutbox(tmp_path / "o.db")
        )
        handles = pub.publish_many([order(0), order(1)], event_ids=["id-a", "id-b"])
        assert [h.result(10).event_id for h in handles] == ["id-a", "id-b"]
        assert ce_ids(transport) == ["id-a", "id-b"]
        pub.close(5)


class TestBadEventInABatch:
    """Publisher.publish_many refuses a batch with an event it cannot route or encode, and
    says which one: its position, in front of the event's own error, same class and cause."""

    def test_a_serialization_error_names_the_position_of_the_event(self) -> None:
        transport = MemoryTransport()
        pub = Publisher(transport=transport, source="urn:test")
        batch = [order(0), order(1), order(2), order(3)]
        batch[2] = OrderPlaced(order_id="o-2", customer_name="c", total_price=float("nan"))
        with pytest.raises(SerializationError) as caught:
            pub.publish_many(batch)
        text = str(caught.value)
        assert text.startswith("event 2 of the batch (0-based, 4 events): cannot encode")
        assert "$.total_price is nan" in text
        assert transport.records() == []
        pub.close(1)

    def test_a_routing_error_names_the_position_and_keeps_its_class(self) -> None:
        transport = MemoryTransport()
        pub = Publisher(transport=transport, source="urn:test")
        with pytest.raises(RoutingError, match=r"^event 1 of the batch \(0-based, 3 events\): "):
            pub.publish_many([order(0), Unrouted("x"), order(2)])
        assert transport.records() == []
        pub.close(1)

    def test_a_bad_event_id_names_the_position(self) -> None:
        transport = MemoryTransport()
        pub = Publisher(transport=transport, source="urn:test")
        with pytest.raises(SerializationError, match=r"^event 1 of the batch .*event_id"):
            pub.publish_many([order(0), order(1)], event_ids=[None, "b\n"])
        assert transport.records() == []
        pub.close(1)

    def test_the_error_keeps_its_cause(self) -> None:
        """A key function's error: the RoutingError still chains it."""
        from eventwire import Route

        def broken(_event: OrderPlaced) -> str:
            raise LookupError("no key")

        transport = MemoryTransport()
        pub = Publisher(
            transport=transport,
            source="urn:test",
            routes={OrderPlaced: Route(topic="orders", key=broken)},
        )
        with pytest.raises(RoutingError, match=r"^event 0 of the batch") as caught:
            pub.publish_many([order(0)])
        assert isinstance(caught.value.__cause__, LookupError)
        pub.close(1)
