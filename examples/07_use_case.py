"""A use case that extracts orders from a shop and publishes them as events.

The guide's ``ExtractOrdersUseCase``: an (async) Shopify gateway returns domain
``Order`` objects, the ``OrderEventTranslator`` (the anti-corruption layer) turns
each into an ``OrderEventMessage``, and an ``AsyncPublisher`` sends them.
``execute()`` returns once the broker acknowledged every event, with the count;
if any event is not delivered it raises DeliveryError instead.

The gateway here is a fake that returns generated orders; the use case depends
only on its ``fetch_all_orders()`` method.

    python examples/07_use_case.py [--orders N]
"""

from __future__ import annotations

import argparse
import asyncio

from _common import bootstrap

from eventwire import AsyncPublisher, Route
from eventwire_devkit.demo.domain import Order, make_orders
from eventwire_devkit.demo.messages import ORDER_ROUTE, OrderEventMessage
from eventwire_devkit.demo.translator import OrderEventTranslator


class FakeShopifyGateway:
    """Stands in for the Shopify API client: returns ``count`` domain orders."""

    def __init__(self, count: int) -> None:
        self.count = count

    async def fetch_all_orders(self) -> list[Order]:
        await asyncio.sleep(0.01)  # a network round trip
        return make_orders(self.count)


class ExtractOrdersUseCase:
    def __init__(self, shopify_gateway: FakeShopifyGateway, publisher: AsyncPublisher) -> None:
        self.shopify_gateway = shopify_gateway
        self.publisher = publisher
        self.translator = OrderEventTranslator()

    async def execute(self) -> int:
        orders = await self.shopify_gateway.fetch_all_orders()
        acks = [
            self.publisher.publish_nowait(self.translator.to_event_message(order))
            for order in orders
        ]
        await asyncio.gather(*acks)  # raises DeliveryError if one was not delivered
        return len(orders)


async def run(servers: str, count: int) -> int:
    routes: dict[type, Route] = {OrderEventMessage: ORDER_ROUTE}
    async with AsyncPublisher(servers, routes=routes, source="urn:example:shopify") as publisher:
        use_case = ExtractOrdersUseCase(FakeShopifyGateway(count), publisher)
        return await use_case.execute()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=250, help="orders the gateway returns")
    args = parser.parse_args()
    with bootstrap() as servers:
        extracted = asyncio.run(run(servers, args.orders))
    print(f"extracted and published {extracted} orders to topic {ORDER_ROUTE.topic!r}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
