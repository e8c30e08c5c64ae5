"""A publishing process for the graceful-shutdown tests (run as a subprocess).

Usage: python shutdown_worker.py BOOTSTRAP TOPIC MODE

MODE "stream": publish until SIGTERM, then leave the with-block (bounded flush) and
print the ids of every event whose publish() returned, one per line, then "DONE".
MODE "stuck-flush": publish 1,000 events to an unreachable cluster, print
"FLUSHING", then flush(8) (a SIGTERM arrives meanwhile); print "FAILED n".
"""

from __future__ import annotations

import sys
import time

import msgspec
import structlog

from eventwire import DeliveryError, GracefulShutdown, Publisher, Route


class Tick(msgspec.Struct, frozen=True):
    key: str
    n: int


def stream(bootstrap: str, topic: str) -> int:
    routes = {Tick: Route(topic=topic, key="key")}
    ids: list[str] = []
    with GracefulShutdown() as shutdown, Publisher(bootstrap, routes=routes) as pub:
        print("STARTED", flush=True)
        n = 0
        while not shutdown.requested:
            ids.append(pub.publish(Tick(key=f"k{n % 10}", n=n)).event_id)
            n += 1
            if n % 500 == 0:
                time.sleep(0.01)
    sys.stdout.write("\n".join(ids) + "\nDONE\n")
    return 0


def stuck_flush(bootstrap: str, topic: str) -> int:
    routes = {Tick: Route(topic=topic, key="key")}
    with GracefulShutdown() as shutdown:
        pub = Publisher(
            bootstrap, routes=routes, connect_timeout=None, overrides={"message.timeout.ms": 60_000}
        )
        for n in range(1000):
            pub.publish(Tick(key="k", n=n))
        print("FLUSHING", flush=True)
        try:
            pub.flush(8)
        except DeliveryError as exc:
            print(f"FLUSH-REPORTED {len(exc.failures)}", flush=True)
        try:
            pub.close(0.5)
        except DeliveryError as exc:
            print(f"FAILED {len(exc.failures)} signal={shutdown.received}", flush=True)
            return 3
    return 0


if __name__ == "__main__":
    structlog.configure(logger_factory=structlog.PrintLoggerFactory(sys.stderr))
    mode = sys.argv[3]
    sys.exit(stream(*sys.argv[1:3]) if mode == "stream" else stuck_flush(*sys.argv[1:3]))
