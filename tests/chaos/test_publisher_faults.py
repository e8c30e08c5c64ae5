"""Broker faults under a plain Publisher (no outbox) on the real 3-node cluster.

Each test prints the accounting table: published, acked, reported-failed,
in-outbox (always 0 here), consumed, duplicates by ce_id, lost, and per-key
order violations.
"""

from __future__ import annotations

import threading
import time

import msgspec

from eventwire import DeliveryError, DeliveryHandle, Publisher, Route
from eventwire_devkit.consume import read_topic
from eventwire_devkit.kafka import LocalKafkaCluster

from .accounting import account

KEYS = 50


class Tick(msgspec.Struct, frozen=True):
    key: str
    seq: int


class _Run:
    """Publishes Ticks and remembers each one's fate."""

    def __init__(self, publisher: Publisher) -> None:
        self.publisher = publisher
        self.published: dict[str, tuple[bytes, int]] = {}
        self.handles: list[DeliveryHandle] = []
        self._n = 0

    def publish(self, count: int) -> None:
        for _ in range(count):
            key = f"k{self._n % KEYS}"
            seq = self._n // KEYS
            handle = self.publisher.publish(Tick(key=key, seq=seq))
            self.published[handle.event_id] = (key.encode(), seq)
            self.handles.append(handle)
            self._n += 1

    def outcome(self) -> tuple[int, int, set[str]]:
        acked = sum(1 for h in self.handles if h.done() and not h.failed())
        failed = {h.event_id for h in self.handles if h.failed()}
        return acked, len(failed), failed


def _publisher(cluster: LocalKafkaCluster, topic: str, **overrides: object) -> Publisher:
    return Publisher(
        cluster.bootstrap_servers,
        routes={Tick: Route(topic=topic, key="key", type_name="chaos.Tick")},
        overrides={"log_level": 0, **overrides},
        connect_timeout=30,
    )


class TestLeaderKillLoop:
    def test_sigkilled_leaders_lose_nothing_and_keep_order(
        self, kafka_cluster3: LocalKafkaCluster, kafka_topic3: str
    ) -> None:
        """200k events while the leader of partition 0 is SIGKILLed and restarted every
        few seconds: 0 lost, 0 duplicates, per-key order kept, nothing reported failed."""
        stop = threading.Event()
        kills: list[int] = []

        def chaos() -> None:
            while not stop.wait(2.0):
                leader = kafka_cluster3.leader_of(kafka_topic3, 0)
                kafka_cluster3.kill_node(leader)
                kills.append(leader)
                time.sleep(1.0)
                kafka_cluster3.restart_node(leader)

        run = _Run(_publisher(kafka_cluster3, kafka_topic3))
        killer = threading.Thread(target=chaos, daemon=True)
        killer.start()
        try:
            deadline = time.monotonic() + 180
            while len(run.published) < 200_000 and time.monotonic() < deadline:
                run.publish(5_000)
                time.sleep(0.75)  # spread 200k over ~30 s, so several leaders die mid-stream
            run.publisher.flush(120)
        finally:
            stop.set()
            killer.join(60)
            run.publisher.close(30)
            kafka_cluster3.heal()
        acked, failed, _ = run.outcome()
        records = read_topic(
            kafka_cluster3.bootstrap_servers, kafka_topic3, expected=len(run.published), idle=2.0
        )
        result = account(run.published, records, acked=acked, reported_failed=failed, in_outbox=0)
        print("\n" + result.table(f"leader kill loop ({len(kills)} SIGKILLs)"))
        assert len(run.published) >= 200_000
        assert len(kills) >= 3, f"only {len(kills)} leader kills during the run"
        assert (result.lost, result.duplicates, result.order_violations) == (0, 0, 0)
        assert failed == 0
        assert acked == len(run.published)


class TestBrokerPause:
    def test_a_paused_broker_loses_nothing(
        self, kafka_cluster3: LocalKafkaCluster, kafka_topic3: str
    ) -> None:
        """SIGSTOP the leader of partition 0 for twice the broker session timeout while
        publishing, then SIGCONT it: every event is acknowledged and in the log."""
        run = _Run(_publisher(kafka_cluster3, kafka_topic3))
        leader = kafka_cluster3.leader_of(kafka_topic3, 0)
        try:
            run.publish(10_000)
            kafka_cluster3.pause_node(leader)
            for _ in range(12):  # 12 s > 2 x broker.session.timeout.ms (6 s)
                run.publish(1_000)
                time.sleep(1.0)
            kafka_cluster3.resume_node(leader)
            run.publisher.flush(120)
        finally:
            run.publisher.close(30)
            kafka_cluster3.heal()
        acked, failed, _ = run.outcome()
        records = read_topic(
            kafka_cluster3.bootstrap_servers, kafka_topic3, expected=len(run.published), idle=2.0
        )
        result = account(run.published, records, acked=acked, reported_failed=failed, in_outbox=0)
        print("\n" + result.table("broker pause (leader SIGSTOPped 12 s)"))
        assert (result.lost, failed) == (0, 0)
        assert result.order_violations == 0


class TestLongOutageWithoutOutbox:
    def test_every_event_ends_delivered_or_reported_never_silently_lost(
        self, kafka_cluster3: LocalKafkaCluster, kafka_topic3: str
    ) -> None:
        """All brokers down past message.timeout.ms with no outbox: every event is either
        in the log or reported failed to the caller (DeliveryError); none vanish silently."""
        run = _Run(_publisher(kafka_cluster3, kafka_topic3, **{"message.timeout.ms": 5000}))
        reported: set[str] = set()
        not_kept = 0
        try:
            run.publish(5_000)
            run.publisher.flush(30)
            for node in kafka_cluster3.node_ids:
                kafka_cluster3.stop_node(node)
            run.publish(5_000)
            try:
                run.publisher.flush(20)  # > message.timeout.ms: these fail and are reported
            except DeliveryError as exc:
                reported = {f.event_id for f in exc.failures}
                not_kept = exc.not_kept  # past the kept bound: counted (and logged), not listed
        finally:
            kafka_cluster3.heal()
            run.publisher.close(30)
        acked, failed, failed_ids = run.outcome()
        records = read_topic(
            kafka_cluster3.bootstrap_servers, kafka_topic3, expected=acked, idle=3.0
        )
        in_log = {(r.header("ce_id") or b"").decode() for r in records}
        result = account(
            run.published,
            records,
            acked=acked,
            reported_failed=failed,
            in_outbox=0,
            reported_ids=failed_ids,
        )
        print("\n" + result.table("long outage without outbox (all 3 down > message.timeout.ms)"))
        assert result.lost == 0  # not in the log and not reported: none
        # the caller was told about exactly those: listed up to the bound, the rest counted
        assert reported <= failed_ids
        assert len(reported) + not_kept == len(failed_ids)
        assert failed > 0  # the outage really made events fail
        # A failed event seen later in the log must have been flagged possibly-written.
        for h in run.handles:
            if h.failed() and h.event_id in in_log:
                assert h.failure is not None and h.failure.possibly_written, h.failure
