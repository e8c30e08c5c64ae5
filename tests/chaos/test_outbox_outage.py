"""A full outage of a 3-node cluster, longer than message.timeout.ms, with the outbox."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from eventwire import KafkaConfig
from eventwire._cloudevents import HeaderTemplate, new_event_id
from eventwire.outbox import OutboxEntry, OutboxRelay, SQLiteOutbox
from eventwire.transports.kafka import KafkaTransport
from eventwire_devkit.consume import read_topic
from eventwire_devkit.kafka import LocalKafkaCluster

from .accounting import account

TEMPLATE = HeaderTemplate(
    type_name="chaos.Event", source="urn:chaos", content_type="application/json"
)
KEYS = 20


class _Source:
    """Makes outbox entries with a per-key sequence number, remembering them."""

    def __init__(self, topic: str) -> None:
        self.topic = topic
        self.published: dict[str, tuple[bytes, int]] = {}
        self._n = 0

    def batch(self, count: int) -> list[OutboxEntry]:
        out = []
        for _ in range(count):
            key = f"k{self._n % KEYS}".encode()
            seq = self._n // KEYS
            eid = new_event_id()
            self.published[eid] = (key, seq)
            out.append(
                OutboxEntry(
                    eid,
                    "chaos.Event",
                    self.topic,
                    key,
                    b'{"seq":%d}' % seq,
                    tuple(TEMPLATE.build(eid, 0)),
                )
            )
            self._n += 1
        return out


class TestLongOutageWithOutbox:
    def test_no_event_is_lost_when_every_broker_is_down_past_the_message_timeout(
        self, tmp_path: Path, kafka_cluster3: LocalKafkaCluster, kafka_topic3: str
    ) -> None:
        """All 3 brokers stopped for 2x message.timeout.ms while events keep being committed:
        after recovery every committed event is in the log (0 lost), in per-key order."""
        store = SQLiteOutbox(tmp_path / "outbox.db")
        config = KafkaConfig(
            kafka_cluster3.bootstrap_servers,
            overrides={"message.timeout.ms": 5000, "log_level": 0},
        )
        relay = OutboxRelay(
            store,
            lambda: KafkaTransport(config, connect_timeout=None),
            batch_size=500,
            ack_timeout=8,
            base_backoff_s=0.2,
            max_backoff_s=2.0,
        )
        source = _Source(kafka_topic3)
        stop = threading.Event()
        worker = threading.Thread(target=relay.run, args=(stop,), daemon=True)
        worker.start()
        try:
            store.add(source.batch(3000))
            time.sleep(2)
            for node in kafka_cluster3.node_ids:
                kafka_cluster3.stop_node(node)
            for _ in range(10):  # keep committing during the outage
                store.add(source.batch(300))
                time.sleep(1.0)  # 10 s down > 2 x message.timeout.ms
            kafka_cluster3.heal()
            store.add(source.batch(1000))
            deadline = time.monotonic() + 180
            while store.status().pending and time.monotonic() < deadline:
                time.sleep(0.5)
        finally:
            stop.set()
            worker.join(30)
            relay.stop(10)
        status = store.status()
        records = read_topic(
            kafka_cluster3.bootstrap_servers, kafka_topic3, expected=len(source.published), idle=2.0
        )
        result = account(
            source.published,
            records,
            acked=relay.stats.sent,
            reported_failed=status.parked,
            in_outbox=status.pending,
        )
        print("\n" + result.table("long outage with outbox (3 nodes, all down 10 s)"))
        print(f"relay: retried={relay.stats.retried} rounds={relay.stats.rounds}")
        assert status.pending == 0
        assert status.parked == 0
        assert result.lost == 0
        assert result.order_violations == 0
