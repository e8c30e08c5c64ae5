"""The publisher as a context manager: leaving the block flushes, failures are named.

1. ``publish()`` only enqueues; leaving the ``with`` block waits for every
   acknowledgement, so after the block nothing is still in flight.
2. An event larger than the client's ``message.max.bytes`` is refused at once:
   ``publish()`` raises DeliveryError naming it, and the block carries on.
3. A failure the broker reports later is raised as a DeliveryError when the
   block ends, naming that event; the others are delivered. Here the client's
   limit is raised to 4 MB, so a 2 MB event leaves the client, and the broker
   refuses it (Kafka's default limit is about 1 MB).

    python examples/05_context_manager.py
"""

from __future__ import annotations

import base64
import os

import msgspec
from _common import bootstrap

from eventwire import DeliveryError, Publisher, event


@event(topic="order-documents", key="order_id", type_name="com.example.orders.InvoiceAttached")
class InvoiceAttached(msgspec.Struct, frozen=True):
    order_id: str
    pdf_base64: str


def invoice(order_id: str, size: int) -> InvoiceAttached:
    """An event of about ``size`` bytes. Random data does not compress, so it stays that large."""
    pdf = base64.b64encode(os.urandom(size * 3 // 4)).decode()
    return InvoiceAttached(order_id=order_id, pdf_base64=pdf)


def main() -> int:
    with bootstrap() as servers:
        # 1. Leaving the block flushes.
        with Publisher(servers) as publisher:
            handles = [publisher.publish(invoice(f"order-{n}", 1_000)) for n in range(200)]
            print(f"1. inside the block: {publisher.in_flight} of 200 events still in flight")
        delivered = sum(h.done() and not h.failed() for h in handles)
        print(
            f"   after the block:  {delivered} of 200 acknowledged, {publisher.in_flight} in flight"
        )

        # 2. Refused at publish time (over the client's 1 MB message.max.bytes).
        with Publisher(servers) as publisher:
            try:
                publisher.publish(invoice("order-huge", 2_000_000))
            except DeliveryError as exc:
                failure = exc.failures[0]
                print(f"2. publish() refused {failure.event_id}: {failure.code}")
            ok = publisher.publish(invoice("order-small", 1_000))
        print(f"   the block went on: {ok.result(timeout=0).event_type} delivered")

        # 3. Refused by the broker, reported when the block ends.
        try:
            with Publisher(servers, overrides={"message.max.bytes": 4_000_000}) as publisher:
                small = [publisher.publish(invoice(f"order-{n}", 1_000)) for n in range(5)]
                big = publisher.publish(invoice("order-big", 2_000_000))
        except DeliveryError as exc:
            print(f"3. leaving the block raised DeliveryError: {len(exc.failures)} failed")
            print(f"   {exc.failures[0].describe()}")
            named = [f.event_id for f in exc.failures] == [big.event_id]
            delivered = sum(not h.failed() for h in small)
            print(f"   it names event {big.event_id}: {named}; others delivered: {delivered}/5")
            return 0 if named and delivered == 5 else 1
    print("3. the broker accepted a 2 MB event: its message.max.bytes is above 2 MB")
    return 1


if __name__ == "__main__":
    raise SystemExit(main())
