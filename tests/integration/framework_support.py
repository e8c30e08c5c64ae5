"""What the framework recipe tests share: a dead port, and reading the orders back."""

from __future__ import annotations

import socket
from typing import Any

from eventwire import Decoder, Route


def closed_port() -> int:
    """A local port nothing listens on (a Kafka that is down)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def read_orders(bootstrap: str, topic: str, expected: int, event_type: type) -> dict[str, Any]:
    """The ``event_type`` events in ``topic``, by order id, decoded by a real consumer."""
    from eventwire_devkit.consume import read_topic

    decoder = Decoder(routes={event_type: Route(topic=topic, key="order_id")})
    records = read_topic(bootstrap, topic, expected=expected, timeout=60, idle=0.5)
    events = [decoder.decode(r).event for r in records]
    by_id = {e.order_id: e for e in events}
    assert len(by_id) == len(events), "an order was written twice"
    return by_id
