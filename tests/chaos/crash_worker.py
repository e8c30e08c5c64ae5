"""A process that commits events to a SQLite outbox and relays them, then dies on cue.

Usage: python crash_worker.py DB BOOTSTRAP TOPIC CRASH_POINT COUNT

It first commits COUNT entries (and, in a transaction it rolls back, COUNT more
that must never appear), printing "COMMITTED" when done. Then it relays, and
SIGKILLs itself at CRASH_POINT:
  after_commit   -- before relaying anything
  after_produce  -- right after the first batch was handed to librdkafka
  after_ack      -- after the first batch was acknowledged, before mark_sent
"""

from __future__ import annotations

import os
import signal
import sqlite3
import sys

from eventwire import KafkaConfig
from eventwire._cloudevents import HeaderTemplate, new_event_id
from eventwire.outbox import OutboxEntry, OutboxRelay, SQLiteOutbox
from eventwire.transports.kafka import KafkaTransport

TEMPLATE = HeaderTemplate(
    type_name="chaos.Crash", source="urn:chaos", content_type="application/json"
)


def die() -> None:
    sys.stdout.flush()
    os.kill(os.getpid(), signal.SIGKILL)


class CrashingRelay(OutboxRelay):
    crash_point = ""
    sends = 0

    def _send(self, item, results, messages, deadline):  # type: ignore[no-untyped-def]
        enqueued = super()._send(item, results, messages, deadline)
        self.sends += 1
        if self.crash_point == "after_produce" and self.sends == self.batch_size // 2:
            self._transport.flush(0)  # librdkafka has the records; maybe some are sent
            die()
        return enqueued

    def _settle(self, claimed, results, messages=None):  # type: ignore[no-untyped-def]
        if self.crash_point == "after_ack":
            die()  # acked by Kafka, not yet marked sent
        super()._settle(claimed, results, messages)


def main(db: str, bootstrap: str, topic: str, crash_point: str, count: int) -> None:
    store = SQLiteOutbox(db)
    entries = []
    for n in range(count):
        eid = new_event_id()
        entries.append(
            OutboxEntry(
                eid,
                "chaos.Crash",
                topic,
                f"k{n % 10}".encode(),
                b'{"n":%d}' % n,
                tuple(TEMPLATE.build(eid, 0)),
            )
        )
    store.add(entries)
    conn = sqlite3.connect(db)
    rolled_back = []
    for _ in range(count):
        eid = "rolled-back-" + new_event_id()
        rolled_back.append(
            OutboxEntry(eid, "chaos.Crash", topic, b"rb", b"{}", (("ce_id", eid.encode()),))
        )
    store.add(rolled_back, connection=conn)
    conn.rollback()
    print("COMMITTED", flush=True)
    if crash_point == "after_commit":
        die()
    relay = CrashingRelay(
        store, lambda: KafkaTransport(KafkaConfig(bootstrap)), batch_size=200, lease_s=2.0
    )
    relay.crash_point = crash_point
    relay.drain(timeout=60)
    print("NO-CRASH", flush=True)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5]))
