"""Events and fixtures shared by the unit tests (memory transport only)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import msgspec
import pytest

from eventwire import AsyncPublisher, DeliveryError, Publisher, event
from eventwire.transports.memory import MemoryTransport


@event(topic="orders", key="order_id")
class OrderPlaced(msgspec.Struct, frozen=True):
    order_id: str
    customer_name: str
    total_price: float


@event(topic="payments", key="payment_id", type_name="com.example.PaymentTaken")
class PaymentTaken(msgspec.Struct, frozen=True):
    payment_id: int
    amount: float


class Unrouted(msgspec.Struct, frozen=True):
    order_id: str


@pytest.fixture
def transport() -> MemoryTransport:
    return MemoryTransport()


@pytest.fixture
def publisher(transport: MemoryTransport) -> Iterator[Publisher]:
    pub = Publisher(transport=transport, source="urn:test")
    yield pub
    if not pub.closed:
        pub.close(1)


def order(n: int = 1, key: str | None = None) -> OrderPlaced:
    return OrderPlaced(order_id=key or f"o-{n}", customer_name="Ada", total_price=float(n))


class InterruptedOnce(MemoryTransport):
    """Its first close() is cut short, as Ctrl-C (or a SIGTERM handler's sys.exit) in the
    middle of close()'s flush cuts it."""

    def __init__(self, interrupt: type[BaseException]) -> None:
        super().__init__()
        self.interrupt: type[BaseException] | None = interrupt

    def close(self, timeout: float) -> int:
        if self.interrupt is not None:
            interrupt, self.interrupt = self.interrupt, None
            raise interrupt
        return super().close(timeout)


class SlowClose(MemoryTransport):
    """Its close() waits (bounded) for the held reports first, as Kafka's flushes."""

    def close(self, timeout: float) -> int:
        end = time.monotonic() + timeout
        while self.queue_length() and time.monotonic() < end:
            time.sleep(0.01)
        return super().close(0)


def close_on_a_new_loop(publisher: AsyncPublisher, timeout: float) -> tuple[float, list[str]]:
    """Run ``publisher.close(timeout)`` on a new event loop (this thread's), which must
    raise DeliveryError; return how long it took and the failures' codes."""

    async def close() -> tuple[float, list[str]]:
        started = time.monotonic()
        with pytest.raises(DeliveryError) as raised:
            await publisher.close(timeout)
        return time.monotonic() - started, [f.code for f in raised.value.failures]

    return asyncio.run(close())
