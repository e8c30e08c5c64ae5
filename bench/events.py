"""The events every contender publishes: the guide's ``OrderEventMessage``.

Contenders cycle over a pool of distinct events (distinct ``order_id`` keys)
instead of building N objects up front, so peak RSS reflects the publisher, not
the benchmark's own event list. Sizes (bytes of JSON):

* ``100``: no line items, a short name (~115 bytes);
* ``300``: two line items (~340 bytes), the guide's shape;
* ``1k`` and ``10k``: the ``300`` shape with the customer name padded to 1 KiB / 10 KiB
  (the padding is one repeated letter, so lz4 compresses it well).
"""

from __future__ import annotations

from typing import Literal

import msgspec

from eventwire import Route
from eventwire_devkit.demo.messages import LineItemEventMessage, OrderEventMessage

__all__ = ["POOL_SIZE", "SIZES", "Size", "encoded_size", "make_pool", "route_for"]

Size = Literal["100", "300", "1k", "10k"]
SIZES: tuple[Size, ...] = ("100", "300", "1k", "10k")
#: Distinct events (and keys) per pool; contenders cycle over it.
POOL_SIZE = 1024
#: Encoded bytes of the padded sizes.
_TARGETS = {"1k": 1024, "10k": 10 * 1024}
TYPE_NAME = "com.example.orders.OrderPlaced"


def _order(i: int, pad: int = 0) -> OrderEventMessage:
    name = "Ada Lovelace" + (" " + "x" * (pad - 1) if pad > 0 else "")
    return OrderEventMessage(
        order_id=f"ord-{i:06d}",
        created_at="2026-11-27T05:42:35+00:00",
        customer_name=name,
        line_items=[
            LineItemEventMessage(
                line_item_id=f"li-{i:06d}-1",
                product_id="p-1",
                product_title="Keyboard",
                quantity=1,
                price=89.99,
            ),
            LineItemEventMessage(
                line_item_id=f"li-{i:06d}-2",
                product_id="p-2",
                product_title="USB-C cable 2m",
                quantity=3,
                price=9.99,
            ),
        ],
        total_price=119.96,
    )


def _small(i: int) -> OrderEventMessage:
    return OrderEventMessage(
        order_id=f"ord-{i:06d}",
        created_at="2026-11-27T05:42Z",
        customer_name="Ada",
        line_items=[],
        total_price=9.99,
    )


def make_pool(size: Size = "300", count: int = POOL_SIZE) -> list[OrderEventMessage]:
    """``count`` distinct order events of the given JSON size class."""
    if size == "100":
        return [_small(i) for i in range(count)]
    pad = 0
    if size in _TARGETS:
        pad = _TARGETS[size] - len(msgspec.json.encode(_order(0)))
    elif size != "300":
        raise ValueError(f"unknown size {size!r}: use one of {', '.join(SIZES)}")
    return [_order(i, pad) for i in range(count)]


def encoded_size(size: Size) -> int:
    """Bytes of one encoded event of this size class (the JSON value, no key or headers)."""
    return len(msgspec.json.encode(make_pool(size, 1)[0]))


def route_for(topic: str) -> Route:
    """The eventwire route for the benchmark topic: keyed by ``order_id`` like the guide."""
    return Route(topic=topic, key="order_id", type_name=TYPE_NAME)
