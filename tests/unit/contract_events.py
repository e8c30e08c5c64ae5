"""Event types for the contract tests: every kind of field eventwire's export must describe."""

from __future__ import annotations

import datetime
import enum
import uuid
from decimal import Decimal
from typing import Annotated, Any, Literal

import msgspec

from eventwire import Route, event


class Status(enum.Enum):
    NEW = "new"
    PAID = "paid"


class Line(msgspec.Struct, frozen=True):
    sku: str
    quantity: Annotated[int, msgspec.Meta(ge=1)]
    price: Decimal


class Card(msgspec.Struct, frozen=True, tag=True):
    last4: Annotated[str, msgspec.Meta(min_length=4, max_length=4)]


class Cash(msgspec.Struct, frozen=True, tag=True):
    currency: str


class Point(msgspec.Struct, frozen=True, array_like=True):
    x: float
    y: float = 0.0


class Tree(msgspec.Struct, frozen=True):
    """A recursive type."""

    name: str
    children: list[Tree] = []


@event(topic="orders", key="order_id", type_name="shop.order.placed")
class OrderPlaced(msgspec.Struct, frozen=True, rename="camel"):
    """An order was placed."""

    order_id: str
    lines: list[Line]
    status: Status
    placed_at: datetime.datetime
    payment: Card | Cash
    pickup: tuple[float, float]
    counts: dict[int, str]
    tags: frozenset[str]
    where: Point
    raw: bytes
    note: str | None = None
    channel: Literal["web", "shop"] = "web"


@event(topic="orders", key=lambda e: str(e.order_id))
class OrderCancelled(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    order_id: uuid.UUID
    when: Annotated[datetime.datetime, msgspec.Meta(tz=True)]
    reason: str = ""


@event(topic="catalog.trees", key=None)
class CatalogChanged(msgspec.Struct, frozen=True):
    root: Tree
    by_day: dict[datetime.date, int] = {}


class PartnerEvent(msgspec.Struct, frozen=True):
    """A Struct from another library, routed by the application."""

    partner_id: int
    payload: dict[str, Any]


ROUTES = {PartnerEvent: Route(topic="partners", key="partner_id", type_name="partner.event")}
