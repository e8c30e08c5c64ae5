"""The outbox relay and its CLI against the real broker."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from eventwire import KafkaConfig
from eventwire._cloudevents import HeaderTemplate, new_event_id
from eventwire.outbox import OutboxEntry, OutboxRelay, SQLiteOutbox
from eventwire.transports.kafka import KafkaTransport
from eventwire_devkit.consume import read_topic
from eventwire_devkit.kafka import LocalKafkaCluster

TEMPLATE = HeaderTemplate(
    type_name="test.Outboxed", source="urn:test", content_type="application/json"
)


def entries(topic: str, count: int, keys: int = 10) -> list[OutboxEntry]:
    out = []
    for n in range(count):
        eid = new_event_id()
        out.append(
            OutboxEntry(
                eid,
                "test.Outboxed",
                topic,
                f"k{n % keys}".encode(),
                b'{"n":%d}' % n,
                tuple(TEMPLATE.build(eid, 0)),
            )
        )
    return out


def eventwire_cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "250"}  # rich tables wrap at 80 columns without a tty
    return subprocess.run(
        [sys.executable, "-m", "eventwire.cli", *args],
        capture_output=True,
        check=False,
        text=True,
        timeout=120,
        env=env,
    )


class TestRelayToKafka:
    def test_every_entry_lands_once_in_per_key_order(
        self, tmp_path: Path, kafka_bootstrap: str, kafka_topic: str
    ) -> None:
        """2,000 outbox entries reach the topic exactly once each, in order per key."""
        store = SQLiteOutbox(tmp_path / "o.db")
        sent = entries(kafka_topic, 2000)
        store.add(sent)
        relay = OutboxRelay(
            store, lambda: KafkaTransport(KafkaConfig(kafka_bootstrap)), batch_size=300
        )
        assert relay.drain(timeout=60)
        relay.stop()
        records = read_topic(kafka_bootstrap, kafka_topic, expected=2000, idle=1.0)
        ids = [r.header("ce_id") for r in records]
        assert len(ids) == 2000
        assert set(ids) == {e.event_id.encode() for e in sent}
        for key in {r.key for r in records}:
            ns = [
                int(r.value[5:-1])
                for r in sorted(records, key=lambda r: (r.partition, r.offset))
                if r.key == key
            ]
            assert ns == sorted(ns), key

    def test_a_full_local_queue_never_reorders_a_key(
        self, tmp_path: Path, kafka_bootstrap: str, kafka_topic: str
    ) -> None:
        """With a 5-message local queue that drains slower than the enqueue deadline, entries
        that miss the deadline hold back their key: each key's first appearances in the log
        are in commit order (re-sends may repeat an event, never overtake one)."""
        store = SQLiteOutbox(tmp_path / "o.db")
        sent = entries(kafka_topic, 300, keys=3)
        store.add(sent)
        config = KafkaConfig(
            kafka_bootstrap,
            overrides={"queue.buffering.max.messages": 5, "linger.ms": 400},
        )
        relay = OutboxRelay(
            store,
            lambda: KafkaTransport(config),
            batch_size=100,
            ack_timeout=0.25,
            base_backoff_s=0.01,
            max_backoff_s=0.05,
        )
        assert relay.drain(timeout=240)
        relay.stop()
        records = read_topic(kafka_bootstrap, kafka_topic, expected=300, idle=2.0)
        assert {r.header("ce_id") for r in records} == {e.event_id.encode() for e in sent}
        by_log = sorted(records, key=lambda r: (r.partition, r.offset))
        for key in {r.key for r in records}:
            firsts: list[int] = []
            for r in by_log:
                n = int(r.value[5:-1])
                if r.key == key and n not in firsts:
                    firsts.append(n)
            assert firsts == sorted(firsts), (key, firsts)
        assert relay.stats.held_back > 0

    def test_cli_status_relay_and_dead_letters(
        self, tmp_path: Path, kafka_bootstrap: str, kafka_topic: str
    ) -> None:
        """`outbox status` counts, `outbox relay --once` drains, `dlq list/replay` show and requeue parked events."""
        db = tmp_path / "o.db"
        store = SQLiteOutbox(db)
        store.add(entries(kafka_topic, 50))
        too_big = OutboxEntry("big-1", "test.Outboxed", kafka_topic, b"k", b"x" * 2_000_000, ())
        store.add([too_big])
        store.close()

        status = eventwire_cli("outbox", "status", "--sqlite", str(db))
        assert status.returncode == 0, status.stderr
        assert "51" in status.stdout

        relay = eventwire_cli(
            "outbox", "relay", "--bootstrap", kafka_bootstrap, "--sqlite", str(db), "--once"
        )
        assert relay.returncode == 0, relay.stderr
        assert "relayed 50, dead-lettered 0, parked 1" in relay.stderr

        listed = eventwire_cli("dlq", "list", "--sqlite", str(db))
        assert "big-1" in listed.stdout
        assert "MSG_SIZE_TOO_LARGE" in listed.stdout

        replay = eventwire_cli("dlq", "replay", "--sqlite", str(db))
        assert "requeued 1" in replay.stdout
        assert SQLiteOutbox(db).status().pending == 1
        assert len(read_topic(kafka_bootstrap, kafka_topic, expected=50, idle=1.0)) == 50

    def test_cli_relay_serves_prometheus_metrics(
        self, tmp_path: Path, kafka_bootstrap: str, kafka_topic: str
    ) -> None:
        """`outbox relay --metrics-port` exposes relayed counts and the outbox depth."""
        import signal
        import socket
        import urllib.request

        db = tmp_path / "m.db"
        store = SQLiteOutbox(db)
        store.add(entries(kafka_topic, 20))
        store.close()
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        args = ["outbox", "relay", "--bootstrap", kafka_bootstrap, "--sqlite", str(db)]
        proc = subprocess.Popen(
            [sys.executable, "-m", "eventwire.cli", *args, "--metrics-port", str(port)],
            stdout=subprocess.DEVNULL,  # structlog writes here; an unread pipe could fill
            stderr=subprocess.PIPE,
            text=True,
        )
        text, deadline = "", time.monotonic() + 60
        try:
            wanted = (
                f'eventwire_outbox_relayed_total{{outcome="delivered",topic="{kafka_topic}"}} 20.0'
            )
            while wanted not in text and time.monotonic() < deadline:
                time.sleep(0.5)
                try:
                    url = f"http://127.0.0.1:{port}/metrics"
                    with urllib.request.urlopen(url, timeout=5) as response:
                        text = response.read().decode()
                except OSError:
                    continue
        finally:
            proc.send_signal(signal.SIGTERM)
            _, stderr = proc.communicate(timeout=30)
        assert wanted in text, (text[-2000:], stderr[-2000:])
        assert "eventwire_outbox_pending_events 0.0" in text
        assert proc.returncode == 0, stderr


class TestDeadLetterTopic:
    def test_broker_rejected_event_goes_to_the_dlq_and_can_be_replayed(
        self, tmp_path: Path, kafka_cluster: LocalKafkaCluster
    ) -> None:
        """A record the topic refuses (max.message.bytes) lands in <topic>.dlq with reason
        headers; `dlq list --topic` shows it; after the limit is raised, `dlq replay --topic`
        re-publishes it to the original topic with the same ce_id."""
        from confluent_kafka.admin import (
            AdminClient,
            AlterConfigOpType,
            ConfigEntry,
            ConfigResource,
        )

        topic = f"small-{new_event_id()[:8]}"
        kafka_cluster.create_topic(topic, partitions=1, config={"max.message.bytes": "1000"})
        store = SQLiteOutbox(tmp_path / "o.db")
        eid = new_event_id()
        store.add(
            [
                OutboxEntry(
                    eid, "test.Big", topic, b"k", os.urandom(5000), tuple(TEMPLATE.build(eid, 0))
                )
            ]
        )
        relay = OutboxRelay(
            store, lambda: KafkaTransport(KafkaConfig(kafka_cluster.bootstrap_servers))
        )
        assert relay.drain(timeout=60)
        relay.stop()
        assert relay.stats.dead_lettered == 1

        [dead] = read_topic(kafka_cluster.bootstrap_servers, f"{topic}.dlq", expected=1, idle=0.5)
        assert dead.header("ce_id") == eid.encode()
        assert dead.header("eventwire_dlq_code") == b"MSG_SIZE_TOO_LARGE"
        assert dead.header("eventwire_dlq_original_topic") == topic.encode()

        listed = eventwire_cli(
            "dlq", "list", "--topic", f"{topic}.dlq", "--bootstrap", kafka_cluster.bootstrap_servers
        )
        assert eid in listed.stdout
        assert "MSG_SIZE_TOO_LARGE" in listed.stdout

        admin = AdminClient({"bootstrap.servers": kafka_cluster.bootstrap_servers})
        resource = ConfigResource(
            ConfigResource.Type.TOPIC,
            topic,
            incremental_configs=[
                ConfigEntry(
                    "max.message.bytes", "100000", incremental_operation=AlterConfigOpType.SET
                )
            ],
        )
        for fut in admin.incremental_alter_configs([resource]).values():
            fut.result(30)
        time.sleep(1)
        replay_args = [
            "dlq",
            "replay",
            "--topic",
            f"{topic}.dlq",
            "--bootstrap",
            kafka_cluster.bootstrap_servers,
            "--allow-topic",
            topic,
        ]
        dry = eventwire_cli(*replay_args, "--dry-run")
        assert dry.returncode == 0, dry.stderr
        assert f"-> {topic}" in dry.stdout
        assert "dry run: 1 would be replayed, 0 skipped" in dry.stdout
        replay = eventwire_cli(*replay_args)
        assert replay.returncode == 0, replay.stderr
        [back] = read_topic(kafka_cluster.bootstrap_servers, topic, expected=1, idle=0.5)
        assert back.header("ce_id") == eid.encode()
        assert back.header("eventwire_dlq_code") is None

    def test_small_events_batched_with_an_oversized_one_are_delivered_not_dead_lettered(
        self, tmp_path: Path, kafka_cluster: LocalKafkaCluster
    ) -> None:
        """The broker refuses a whole record batch as too large (max.message.bytes=1000):
        the small events librdkafka put in one batch with a 5 KB one fail with it. The relay
        sends each again alone: the small ones are delivered, only the big one is dead-lettered."""
        topic = f"mixed-{uuid.uuid4().hex[:8]}"
        kafka_cluster.create_topic(topic, partitions=1, config={"max.message.bytes": "1000"})
        store = SQLiteOutbox(tmp_path / "o.db")
        values = [b'{"n":1}', os.urandom(5000), b'{"n":3}', b'{"n":4}']
        ids = [new_event_id() for _ in values]
        store.add(
            [
                OutboxEntry(
                    eid, "test.Mixed", topic, f"k{n}".encode(), value, tuple(TEMPLATE.build(eid, 0))
                )
                for n, (eid, value) in enumerate(zip(ids, values, strict=True))
            ]
        )
        relay = OutboxRelay(
            store, lambda: KafkaTransport(KafkaConfig(kafka_cluster.bootstrap_servers))
        )
        assert relay.drain(timeout=60)
        relay.stop()
        assert (relay.stats.sent, relay.stats.dead_lettered, relay.stats.parked) == (3, 1, 0)
        delivered = read_topic(kafka_cluster.bootstrap_servers, topic, expected=3, idle=0.5)
        assert sorted(r.header("ce_id") for r in delivered) == sorted(
            ids[n].encode() for n in (0, 2, 3)
        )
        [dead] = read_topic(kafka_cluster.bootstrap_servers, f"{topic}.dlq", expected=1, idle=0.5)
        assert dead.header("ce_id") == ids[1].encode()

    def test_replay_skips_forged_and_undecodable_records_and_replays_the_rest(
        self, kafka_cluster: LocalKafkaCluster
    ) -> None:
        """On the real broker, `dlq replay --allow-topic T` puts T's dead letters back in T,
        reports and skips one whose header names another topic (nothing is written there)
        and one whose header is not UTF-8, flushes the rest, and exits 1."""
        from confluent_kafka import Producer

        from eventwire.outbox.dead_letter import dead_letter_headers

        bootstrap = kafka_cluster.bootstrap_servers
        topic, victim = f"replay-{new_event_id()[:8]}", f"victim-{new_event_id()[:8]}"
        for name in (topic, f"{topic}.dlq", victim):
            kafka_cluster.create_topic(name, partitions=1)

        def dead(ce_id: str, origin: bytes) -> list[tuple[str, bytes]]:
            headers = dead_letter_headers(
                [("ce_id", ce_id.encode())],
                code="X",
                reason="r",
                attempts=1,
                original_topic=topic,
                first_failure_s=0.0,
                last_failure_s=0.0,
            )
            return [(k, origin if k.endswith("original_topic") else v) for k, v in headers]

        producer = Producer({"bootstrap.servers": bootstrap})
        for ce_id, origin in (
            ("a", topic.encode()),
            ("forged", victim.encode()),
            ("bad", b"\xff" + topic.encode()),
            ("b", topic.encode()),
        ):
            producer.produce(
                f"{topic}.dlq", b"v-" + ce_id.encode(), b"k", headers=dead(ce_id, origin)
            )
        assert producer.flush(30) == 0

        replay = eventwire_cli(
            "dlq", "replay", "--topic", f"{topic}.dlq", "--bootstrap", bootstrap,
            "--allow-topic", topic,
        )  # fmt: skip
        assert replay.returncode == 1, replay.stdout + replay.stderr
        assert "skipped 0:1 (ce_id forged)" in replay.stderr
        assert "skipped 0:2 (ce_id bad)" in replay.stderr
        assert "replayed 2 of 4" in replay.stdout
        back = read_topic(bootstrap, topic, expected=2, idle=0.5)
        assert [r.header("ce_id") for r in back] == [b"a", b"b"]
        assert read_topic(bootstrap, victim, idle=0.5) == []


class TestOutboxPublisherOnKafka:
    @pytest.mark.parametrize("backend", ["sqlite", "postgres"])
    def test_published_events_reach_kafka_through_the_outbox(
        self,
        backend: str,
        tmp_path: Path,
        request: pytest.FixtureRequest,
        kafka_bootstrap: str,
        kafka_topic: str,
    ) -> None:
        """Publisher(outbox=...) commits each event, its relay ships it, handles resolve,
        and an independent consumer finds every event once, on SQLite and PostgreSQL."""
        import msgspec

        from eventwire import Publisher, Route

        class Paid(msgspec.Struct, frozen=True):
            order_id: str
            n: int

        if backend == "sqlite":
            store: Any = SQLiteOutbox(tmp_path / "o.db")
        else:
            import psycopg

            from eventwire.outbox.postgres import PostgresOutbox

            dsn = request.getfixturevalue("postgres_dsn")
            with psycopg.connect(dsn, autocommit=True) as conn:
                conn.execute("DROP TABLE IF EXISTS eventwire_outbox")
            store = PostgresOutbox(dsn)
        routes = {Paid: Route(topic=kafka_topic, key="order_id")}
        with Publisher(kafka_bootstrap, routes=routes, outbox=store) as pub:
            handles = pub.publish_many(Paid(order_id=f"o{n % 7}", n=n) for n in range(1000))
            pub.flush(60)
            results = [h.result(timeout=1) for h in handles]
        assert store.status().pending == 0
        records = read_topic(kafka_bootstrap, kafka_topic, expected=1000, idle=1.0)
        assert sorted(r.header("ce_id") for r in records) == sorted(
            h.event_id.encode() for h in handles
        )
        assert {(r.partition, r.offset) for r in records} == {
            (m.partition, m.offset) for m in results
        }


class _Gated:
    """A store whose relay claims nothing until ``open`` is set."""

    def __init__(self, inner: Any) -> None:
        import threading

        self.inner = inner
        self.open = threading.Event()

    def claim_batch(self, limit: int, *, owner: str, lease_s: float) -> Any:
        return (
            self.inner.claim_batch(limit, owner=owner, lease_s=lease_s)
            if self.open.is_set()
            else []
        )

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


class TestResendWithTheSameEventIdOnKafka:
    @pytest.mark.parametrize("backend", ["sqlite", "postgres"])
    def test_a_resend_before_the_relay_sent_it_is_one_record_and_both_handles_resolve(
        self,
        backend: str,
        tmp_path: Path,
        request: pytest.FixtureRequest,
        kafka_bootstrap: str,
        kafka_topic: str,
    ) -> None:
        """publish(e, event_id=X) twice while X is unsent, on SQLite and PostgreSQL: the
        outbox keeps one row, Kafka gets one record, and both handles resolve to it."""
        import msgspec

        from eventwire import Publisher, Route

        class Paid(msgspec.Struct, frozen=True):
            order_id: str

        if backend == "sqlite":
            inner: Any = SQLiteOutbox(tmp_path / "o.db")
        else:
            import psycopg

            from eventwire.outbox.postgres import PostgresOutbox

            dsn = request.getfixturevalue("postgres_dsn")
            with psycopg.connect(dsn, autocommit=True) as conn:
                conn.execute("DROP TABLE IF EXISTS eventwire_outbox")
            inner = PostgresOutbox(dsn)
        store = _Gated(inner)
        routes = {Paid: Route(topic=kafka_topic, key="order_id")}
        with Publisher(kafka_bootstrap, routes=routes, outbox=store) as pub:
            first = pub.publish(Paid(order_id="o1"), event_id="resent-1")
            second = pub.publish(Paid(order_id="o1"), event_id="resent-1")
            store.open.set()
            results = [first.result(timeout=60), second.result(timeout=60)]
        assert results[0].offset == results[1].offset
        [record] = read_topic(kafka_bootstrap, kafka_topic, expected=1, idle=1.0)
        assert record.header("ce_id") == b"resent-1"
