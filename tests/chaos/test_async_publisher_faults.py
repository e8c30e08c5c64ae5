"""Broker faults under an AsyncPublisher with a small local queue, on the real 3-node cluster.

A queue of a few hundred messages keeps the publisher's FIFO backlog busy the
whole time, which is where per-key order used to break: an event waiting for
room was overtaken by a later event of its key. Each test prints the accounting
table and checks per-key order in the log.
"""

from __future__ import annotations

import asyncio
import threading
import time

from eventwire import AsyncPublisher, DeliveryResult, Route
from eventwire_devkit.consume import read_topic
from eventwire_devkit.kafka import LocalKafkaCluster

from .accounting import account
from .test_publisher_faults import KEYS, Tick

QUEUE = 300  # queue.buffering.max.messages: in the hundreds, so the backlog works


class _AsyncRun:
    """Publishes Ticks with publish_nowait() and remembers each one's future."""

    def __init__(self, publisher: AsyncPublisher) -> None:
        self.publisher = publisher
        self.published: dict[str, tuple[bytes, int]] = {}
        self.futures: list[tuple[bytes, int, asyncio.Future[DeliveryResult]]] = []
        self._n = 0

    def publish(self, count: int) -> None:
        for _ in range(count):
            key = f"k{self._n % KEYS}"
            seq = self._n // KEYS
            fut = self.publisher.publish_nowait(Tick(key=key, seq=seq))
            self.futures.append((key.encode(), seq, fut))
            self._n += 1

    async def settle(self) -> tuple[int, set[str]]:
        """Wait for every future; return (acked, ids of failed events)."""
        results = await asyncio.gather(*(f for _, _, f in self.futures), return_exceptions=True)
        acked, failed = 0, set()
        for (key, seq, _), res in zip(self.futures, results, strict=True):
            if isinstance(res, DeliveryResult):
                acked += 1
                self.published[res.event_id] = (key, seq)
            else:
                failed.add(f"{key!r}:{seq}")
        return acked, failed


def _publisher(cluster: LocalKafkaCluster, topic: str, **options: object) -> AsyncPublisher:
    return AsyncPublisher(
        cluster.bootstrap_servers,
        routes={Tick: Route(topic=topic, key="key", type_name="chaos.Tick")},
        overrides={"log_level": 0, "queue.buffering.max.messages": QUEUE},
        connect_timeout=30,
        **options,  # type: ignore[arg-type]
    )


class TestAsyncLeaderKillLoop:
    def test_sigkilled_leaders_with_a_small_queue_lose_nothing_and_keep_order(
        self, kafka_cluster3: LocalKafkaCluster, kafka_topic3: str
    ) -> None:
        """100k events through a 300-message queue while the leader of partition 0 is
        SIGKILLed and restarted every few seconds: 0 lost, 0 duplicates, per-key order."""
        stop = threading.Event()
        kills: list[int] = []

        def chaos() -> None:
            while not stop.wait(2.0):
                leader = kafka_cluster3.leader_of(kafka_topic3, 0)
                kafka_cluster3.kill_node(leader)
                kills.append(leader)
                time.sleep(1.0)
                kafka_cluster3.restart_node(leader)

        async def main() -> tuple[_AsyncRun, int, set[str]]:
            run = _AsyncRun(_publisher(kafka_cluster3, kafka_topic3, enqueue_timeout=120))
            await run.publisher.start()
            try:
                deadline = time.monotonic() + 180
                while run._n < 100_000 and time.monotonic() < deadline:
                    run.publish(5_000)
                    await asyncio.sleep(1.2)  # ~25 s in all: several leaders die mid-stream
                acked, failed = await asyncio.wait_for(run.settle(), 300)
            finally:
                await run.publisher.close(30)
            return run, acked, failed

        killer = threading.Thread(target=chaos, daemon=True)
        killer.start()
        try:
            run, acked, failed = asyncio.run(main())
        finally:
            stop.set()
            killer.join(60)
            kafka_cluster3.heal()
        records = read_topic(
            kafka_cluster3.bootstrap_servers, kafka_topic3, expected=acked, idle=2.0
        )
        result = account(
            run.published, records, acked=acked, reported_failed=len(failed), in_outbox=0
        )
        print("\n" + result.table(f"async leader kill loop, queue {QUEUE} ({len(kills)} SIGKILLs)"))
        assert run._n >= 100_000
        assert len(kills) >= 3, f"only {len(kills)} leader kills during the run"
        assert failed == set()
        assert (result.lost, result.duplicates, result.order_violations) == (0, 0, 0)
        assert result.consumed == acked == run._n


class TestAsyncOutage:
    def test_a_full_outage_with_a_small_queue_keeps_every_event_in_key_order(
        self, kafka_cluster3: LocalKafkaCluster, kafka_topic3: str
    ) -> None:
        """All 3 brokers down for 10 s while 6,000 events are published through a
        300-message queue: the backlog waits, then every event lands once, in key order."""

        async def main() -> tuple[_AsyncRun, int, set[str]]:
            run = _AsyncRun(_publisher(kafka_cluster3, kafka_topic3, enqueue_timeout=120))
            await run.publisher.start()
            try:
                run.publish(1_000)
                await asyncio.sleep(1.0)
                for node in kafka_cluster3.node_ids:
                    await asyncio.to_thread(kafka_cluster3.stop_node, node)
                for _ in range(10):  # the queue fills at once; the rest wait in the backlog
                    run.publish(500)
                    await asyncio.sleep(1.0)
                await asyncio.to_thread(kafka_cluster3.heal)  # all three at once: a quorum
                acked, failed = await asyncio.wait_for(run.settle(), 300)
            finally:
                await run.publisher.close(30)
            return run, acked, failed

        try:
            run, acked, failed = asyncio.run(main())
        finally:
            kafka_cluster3.heal()
        records = read_topic(
            kafka_cluster3.bootstrap_servers, kafka_topic3, expected=acked, idle=2.0
        )
        result = account(
            run.published, records, acked=acked, reported_failed=len(failed), in_outbox=0
        )
        print("\n" + result.table(f"async full outage 10 s, queue {QUEUE}"))
        assert failed == set()
        assert acked == run._n == 6_000
        assert (result.lost, result.duplicates, result.order_violations) == (0, 0, 0)
