"""Testing your own service without Kafka: ``capture_events()``.

``capture_events()`` yields a real Publisher over an in-memory log, so routing,
key extraction, encoding and CloudEvents headers run exactly as in production,
and ``captured.events(OrderPlaced)`` decodes what was sent. Hand
``captured.publisher`` to the code under test wherever it expects a Publisher.

The ``test_*`` functions below are ordinary pytest tests
(``pytest examples/06_testing_with_mocks.py``); run as a script, this file calls
them itself, prints each check, and exits 1 if any fails:

    python examples/06_testing_with_mocks.py
"""

from __future__ import annotations

import sys
import traceback

import _common  # noqa: F401 (only for its stdlib logging set-up: warnings to stderr)
import msgspec
import pytest

from eventwire import DeliveryError, Publisher, event
from eventwire.testing import capture_events


@event(topic="orders", key="order_id", type_name="com.example.orders.OrderPlaced")
class OrderPlaced(msgspec.Struct, frozen=True):
    order_id: str
    customer_name: str
    total_price: float


class OrderService:
    """The code under test: it only knows it is given a Publisher."""

    def __init__(self, publisher: Publisher) -> None:
        self.publisher = publisher

    def place_order(self, order_id: str, customer_name: str, prices: list[float]) -> OrderPlaced:
        if not prices:
            raise ValueError(f"order {order_id} has no items")
        placed = OrderPlaced(order_id, customer_name, round(sum(prices), 2))
        self.publisher.publish(placed)
        return placed


def test_placing_an_order_publishes_one_order_placed() -> None:
    """Placing an order publishes exactly one OrderPlaced with the order's total."""
    with capture_events() as captured:
        OrderService(captured.publisher).place_order("o-1", "Ada Lovelace", [9.99, 9.99])
    assert captured.events(OrderPlaced) == [OrderPlaced("o-1", "Ada Lovelace", 19.98)]


def test_events_are_keyed_by_order_id_on_the_orders_topic() -> None:
    """Each event goes to 'orders', keyed by its order id, with CloudEvents headers."""
    with capture_events() as captured:
        service = OrderService(captured.publisher)
        service.place_order("o-1", "Ada Lovelace", [5.0])
        service.place_order("o-2", "Grace Hopper", [7.5])
    records = sorted(captured.records("orders"), key=lambda r: r.sequence)
    assert [r.key for r in records] == [b"o-1", b"o-2"]
    assert {r.header("ce_type") for r in records} == {b"com.example.orders.OrderPlaced"}
    assert all(r.header("ce_id") for r in records)


def test_a_rejected_order_publishes_nothing() -> None:
    """An order without items raises ValueError and publishes no event."""
    with capture_events() as captured, pytest.raises(ValueError, match="no items"):
        OrderService(captured.publisher).place_order("o-3", "Alan Turing", [])
    assert captured.records() == []


def test_a_failed_delivery_is_reported_not_lost() -> None:
    """When Kafka refuses the event, flush() raises DeliveryError naming it."""
    with capture_events() as captured:
        captured.transport.fail_topic("orders", code="TOPIC_AUTHORIZATION_FAILED")
        OrderService(captured.publisher).place_order("o-4", "Barbara Liskov", [1.0])
        with pytest.raises(DeliveryError) as raised:
            captured.publisher.flush()
    [failure] = raised.value.failures
    assert failure.event_type == "com.example.orders.OrderPlaced"
    assert failure.code == "TOPIC_AUTHORIZATION_FAILED"


def main() -> int:
    checks = [f for name, f in globals().items() if name.startswith("test_")]
    failed = 0
    for check in checks:
        try:
            check()
        except (AssertionError, pytest.fail.Exception):
            failed += 1
            print(f"FAIL {check.__doc__}")
            traceback.print_exc(file=sys.stdout)
        else:
            print(f"ok   {check.__doc__}")
    print(f"{len(checks) - failed} of {len(checks)} checks passed (no Kafka needed)")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
