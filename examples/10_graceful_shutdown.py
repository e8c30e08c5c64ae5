"""Graceful shutdown: stop on SIGTERM/SIGINT, flush what was published, exit 0.

``GracefulShutdown`` turns the signal into a flag instead of killing the
process. The publishing loop checks the flag and ends; then the publisher's
``with`` block flushes (bounded by ``close_timeout``) and the summary says how
many events were published, acknowledged and failed. A failure would raise
DeliveryError naming the events, and the exit code would be 1.

GracefulShutdown is entered *before* the publisher, so its handlers stay in
place while the publisher flushes: a second, impatient Ctrl-C cannot cut the
flush short.

    python examples/10_graceful_shutdown.py              # 5000 events, then stop
    python examples/10_graceful_shutdown.py --events 0   # until Ctrl-C / SIGTERM
"""

from __future__ import annotations

import argparse
import os
import threading
import time

from _common import bootstrap

from eventwire import DeliveryError, DeliveryHandle, GracefulShutdown, Publisher, Route
from eventwire_devkit.demo.domain import make_orders
from eventwire_devkit.demo.messages import OrderEventMessage
from eventwire_devkit.demo.translator import OrderEventTranslator


def main() -> int:
    parser = argparse.ArgumentParser(description="publish until a signal, then flush")
    parser.add_argument("--events", type=int, default=5_000, help="stop after N (0: never)")
    parser.add_argument("--topic", default="orders")
    args = parser.parse_args()
    limit = args.events or None
    routes: dict[type, Route] = {OrderEventMessage: Route(topic=args.topic, key="order_id")}
    translator = OrderEventTranslator()
    orders = make_orders(1_000)
    published = acknowledged = failed = 0
    lock = threading.Lock()  # reports may be served on the publishing and the poll thread

    def on_done(handle: DeliveryHandle) -> None:
        nonlocal acknowledged
        if not handle.failed():
            with lock:
                acknowledged += 1

    with bootstrap() as servers:
        try:
            with GracefulShutdown() as shutdown, Publisher(servers, routes=routes) as publisher:
                print(f"publishing to {args.topic!r}, pid {os.getpid()}; Ctrl-C stops", flush=True)
                while not shutdown.requested and published != limit:
                    event = translator.to_event_message(orders[published % len(orders)])
                    publisher.publish(event).add_done_callback(on_done)
                    published += 1
                    if published % 1_000 == 0:
                        time.sleep(0.01)  # a real producer waits for work now and then
                reason = shutdown.received.name if shutdown.received else f"{limit} events sent"
                print(f"stopping ({reason}); flushing {publisher.in_flight} in flight", flush=True)
        except DeliveryError as exc:  # names every event that was not delivered
            print(exc)
            failed = len(exc.failures)
    lost = published - acknowledged
    print(f"summary: published={published} acknowledged={acknowledged} failed={failed} lost={lost}")
    return 0 if lost == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
