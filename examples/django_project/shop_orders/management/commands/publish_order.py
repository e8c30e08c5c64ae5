"""``python manage.py publish_order ORDER_ID TOTAL``: publish one OrderPlaced and wait.

A management command is synchronous and short-lived, so it uses a
:class:`eventwire.Publisher` in a ``with`` block: the event is acknowledged (or the
command fails with the reason) before the command returns.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from eventwire import EventwireError, Publisher
from shop_orders import publishing
from shop_orders.events import OrderPlaced


class Command(BaseCommand):
    help = "Publish an OrderPlaced event and wait for Kafka's acknowledgement."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("order_id")
        parser.add_argument("total", type=float)
        parser.add_argument(
            "--timeout", type=float, default=30.0, help="seconds to wait for the ack"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        event = OrderPlaced(options["order_id"], options["total"])
        try:
            with Publisher(
                config=publishing.kafka_config(),
                routes=publishing.routes(),
                source="urn:shop",
                close_timeout=options["timeout"],
            ) as publisher:
                result = publisher.publish(event).result(options["timeout"])
        except EventwireError as exc:  # BrokerUnavailableError, DeliveryError...
            raise CommandError(f"order {event.order_id} not published: {exc}") from exc
        self.stdout.write(
            f"published order {event.order_id} as event {result.event_id} "
            f"to {result.topic}[{result.partition}]@{result.offset}"
        )
