"""Publishes 1,000 events through an outbox to unreachable brokers, then flushes.

Usage: python outbox_sigterm_worker.py DB. Prints FLUSHING before the flush that
the test interrupts with SIGTERM, then "KEPT <pending>" and exits 0.
"""

from __future__ import annotations

import sys

import msgspec
import structlog

from eventwire import GracefulShutdown, Publisher, Route
from eventwire.outbox import SQLiteOutbox


class Tick(msgspec.Struct, frozen=True):
    key: str
    n: int


def main(db: str) -> int:
    store = SQLiteOutbox(db)
    with GracefulShutdown() as shutdown:
        pub = Publisher(
            "127.0.0.1:1",
            routes={Tick: Route(topic="ticks", key="key")},
            outbox=store,
            overrides={"message.timeout.ms": 3000, "log_level": 0},
            relay_options={"ack_timeout": 4.0},
        )
        pub.publish_many(Tick(key=f"k{n % 10}", n=n) for n in range(1000))
        print("FLUSHING", flush=True)
        pub.flush(15)  # brokers are down: this waits, bounded, and raises nothing
        pub.close(2)
        print(f"KEPT {store.status().pending} signal={shutdown.received}", flush=True)
    return 0


if __name__ == "__main__":
    structlog.configure(logger_factory=structlog.PrintLoggerFactory(sys.stderr))
    sys.exit(main(sys.argv[1]))
