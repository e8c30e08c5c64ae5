"""A small order domain (the guide's Shopify-style orders). It imports nothing of eventwire."""

from __future__ import annotations

import datetime as dt
import random
from dataclasses import dataclass
from decimal import Decimal
from typing import NewType

__all__ = ["LineItem", "Money", "Order", "OrderId", "ProductId", "make_orders"]

OrderId = NewType("OrderId", str)
ProductId = NewType("ProductId", str)


@dataclass(frozen=True)
class Money:
    """An amount in one currency, exact."""

    amount: Decimal
    currency: str = "USD"


@dataclass(frozen=True)
class LineItem:
    """One product line of an order."""

    line_item_id: str
    product_id: ProductId
    product_title: str
    quantity: int
    price: Money


@dataclass(frozen=True)
class Order:
    """An order as the domain sees it."""

    order_id: OrderId
    created_at: dt.datetime
    customer_name: str
    line_items: tuple[LineItem, ...]

    @property
    def total_price(self) -> Money:
        """Sum of quantity x price over the line items."""
        total = sum((i.price.amount * i.quantity for i in self.line_items), Decimal(0))
        return Money(total)


_NAMES = ("Ada Lovelace", "Grace Hopper", "Alan Turing", "Edsger Dijkstra", "Barbara Liskov")
_PRODUCTS = (("p-1", "Mechanical keyboard"), ("p-2", "USB-C cable"), ("p-3", "Monitor arm"))


def make_orders(count: int, *, customers: int = 50, seed: int = 7) -> list[Order]:
    """``count`` deterministic orders with 2 line items each, over ``customers`` order ids.

    Order ids repeat (``order-<n % customers>``) so several events share a key,
    which is what per-key ordering is about.
    """
    rng = random.Random(seed)
    start = dt.datetime(2026, 11, 27, 9, 0, tzinfo=dt.UTC)
    orders = []
    for n in range(count):
        items = tuple(
            LineItem(
                line_item_id=f"li-{n}-{j}",
                product_id=ProductId(_PRODUCTS[(n + j) % 3][0]),
                product_title=_PRODUCTS[(n + j) % 3][1],
                quantity=rng.randint(1, 3),
                price=Money(Decimal(rng.randint(199, 9999)) / 100),
            )
            for j in range(2)
        )
        orders.append(
            Order(
                order_id=OrderId(f"order-{n % customers}"),
                created_at=start + dt.timedelta(seconds=n),
                customer_name=_NAMES[n % len(_NAMES)],
                line_items=items,
            )
        )
    return orders
