"""The same order event in every shape eventwire publishes: a msgspec Struct, a
dataclass (frozen, slots), an attrs class (``@attrs.frozen``) and a pydantic v2 model
(field aliases, a validator). Not decorated with ``@event``: tests route them with
``routes=``. Used by ``unit/test_shapes.py`` and ``integration/test_shapes_kafka.py``.
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from typing import Any

import attrs
import msgspec
import pydantic

from eventwire import Route

__all__ = [
    "PLACED_AT",
    "SHAPES",
    "AttrsItem",
    "AttrsOrder",
    "DataclassItem",
    "DataclassOrder",
    "PydanticItem",
    "PydanticOrder",
    "StructItem",
    "StructOrder",
    "make",
    "routes_for",
]

PLACED_AT = datetime(2026, 11, 27, 5, 42, 35, tzinfo=UTC)


class StructItem(msgspec.Struct, frozen=True):
    sku: str
    price: float


class StructOrder(msgspec.Struct, frozen=True):
    order_id: str
    placed_at: datetime
    items: list[StructItem]
    total: float


@dataclasses.dataclass(frozen=True, slots=True)
class DataclassItem:
    sku: str
    price: float


@dataclasses.dataclass(frozen=True, slots=True)
class DataclassOrder:
    order_id: str
    placed_at: datetime
    items: list[DataclassItem]
    total: float


@attrs.frozen
class AttrsItem:
    sku: str
    price: float


@attrs.frozen
class AttrsOrder:
    order_id: str
    placed_at: datetime
    items: list[AttrsItem]
    total: float


class PydanticItem(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(frozen=True)
    sku: str
    price: float


class PydanticOrder(pydantic.BaseModel):
    """Field aliases (the wire is camelCase) and a validator (order ids start with "o-")."""

    model_config = pydantic.ConfigDict(frozen=True, populate_by_name=True)
    order_id: str = pydantic.Field(alias="orderId")
    placed_at: datetime = pydantic.Field(alias="placedAt")
    items: list[PydanticItem]
    total: float

    @pydantic.field_validator("order_id")
    @classmethod
    def _order_id_starts_with_o(cls, value: str) -> str:
        if not value.startswith("o-"):
            raise ValueError(f"order id {value!r} does not start with 'o-'")
        return value


SHAPES: dict[str, tuple[type, type]] = {
    "struct": (StructOrder, StructItem),
    "dataclass": (DataclassOrder, DataclassItem),
    "attrs": (AttrsOrder, AttrsItem),
    "pydantic": (PydanticOrder, PydanticItem),
}


def make(shape: str, order_id: str = "o-1", *, price: float = 9.99) -> Any:
    """An order of ``shape`` with two line items (the second at ``price``)."""
    order_cls, item_cls = SHAPES[shape]
    return order_cls(
        order_id=order_id,
        placed_at=PLACED_AT,
        items=[item_cls(sku="kb", price=89.99), item_cls(sku="usb", price=price)],
        total=99.98,
    )


def routes_for(shape: str, **route: Any) -> dict[type, Route]:
    route = {"topic": "orders", "key": "order_id", **route}
    return {SHAPES[shape][0]: Route(**route)}
