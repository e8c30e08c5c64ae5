"""The app's events."""

from __future__ import annotations

import msgspec


class OrderPlaced(msgspec.Struct, frozen=True):
    """Routed in :mod:`shop_orders.publishing` (its topic is a setting)."""

    order_id: str
    total: float
