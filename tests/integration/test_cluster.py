"""LocalKafkaCluster against a real Apache Kafka broker: startup, data path, faults, cleanup."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from confluent_kafka import Consumer, Producer

from eventwire_devkit._kafka.runtime import jvm_pids_of, record_path
from eventwire_devkit.kafka import KafkaClusterError, LocalKafkaCluster, reap_stale_clusters

if TYPE_CHECKING:
    from collections.abc import Callable

pytestmark = pytest.mark.kafka


def wait_until(check: Callable[[], Any], timeout: float, what: str) -> Any:
    """Poll ``check`` until it returns a truthy value; metadata errors count as "not yet"."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = check()
        except KafkaClusterError as exc:
            last = exc
        else:
            if last:
                return last
        time.sleep(0.25)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


def produce(producer: Producer, topic: str, count: int, partition: int = 0) -> list[str]:
    """Produce ``count`` records to one partition; return the delivery errors (empty = all ok)."""
    errors: list[str] = []

    def on_delivery(err: Any, _msg: Any) -> None:
        if err is not None:
            errors.append(str(err))

    for i in range(count):
        producer.produce(
            topic, value=f"v{i}".encode(), partition=partition, on_delivery=on_delivery
        )
        producer.poll(0)
    remaining = producer.flush(60)
    assert remaining == 0, f"{remaining} records still queued after 60 s"
    return errors


def acks_all_producer(bootstrap: str) -> Producer:
    return Producer(
        {
            "bootstrap.servers": bootstrap,
            "acks": "all",
            "enable.idempotence": True,
            "message.timeout.ms": 45000,
            "log_level": 2,
        }
    )


def a_follower(cluster: LocalKafkaCluster, topic: str) -> int:
    leader = cluster.leader_of(topic, 0)
    return next(n for n in cluster.isr_of(topic, 0) if n != leader)


class TestStartup:
    def test_single_node_cluster_lists_its_node(self, kafka_cluster: LocalKafkaCluster) -> None:
        """A started 1-node cluster answers Metadata listing node 1 on a loopback port."""
        assert kafka_cluster.running_node_ids() == [1]
        assert kafka_cluster.bootstrap_servers.startswith("127.0.0.1:")

    def test_three_node_cluster_lists_every_node(self, kafka_cluster3: LocalKafkaCluster) -> None:
        """A started 3-node cluster answers Metadata listing nodes 1, 2 and 3."""
        assert kafka_cluster3.running_node_ids() == [1, 2, 3]
        assert len(kafka_cluster3.bootstrap_servers.split(",")) == 3

    def test_three_node_topics_default_to_rf3(self, kafka_cluster3: LocalKafkaCluster) -> None:
        """On 3 nodes a topic created without an RF is replicated to all three nodes."""
        name = kafka_cluster3.create_topic(f"t-default-rf-{uuid.uuid4().hex[:8]}", partitions=1)
        try:
            assert kafka_cluster3.isr_of(name, 0) == [1, 2, 3]
        finally:
            kafka_cluster3.delete_topic(name)


class TestRoundTrip:
    def test_produced_records_are_consumed(self, kafka_bootstrap: str, kafka_topic: str) -> None:
        """Records produced with a plain Producer come back, in order, from a plain Consumer."""
        producer = acks_all_producer(kafka_bootstrap)
        sent = [f"m{i}".encode() for i in range(20)]
        for value in sent:
            producer.produce(kafka_topic, key=b"same-key", value=value)
        assert producer.flush(30) == 0
        consumer = Consumer(
            {
                "bootstrap.servers": kafka_bootstrap,
                "group.id": f"g-{uuid.uuid4().hex[:8]}",
                "auto.offset.reset": "earliest",
            }
        )
        consumer.subscribe([kafka_topic])
        got: list[bytes] = []
        deadline = time.monotonic() + 30
        try:
            while len(got) < len(sent) and time.monotonic() < deadline:
                msg = consumer.poll(0.5)
                if msg is not None and msg.error() is None:
                    got.append(msg.value() or b"")
        finally:
            consumer.close()
        assert got == sent


@pytest.mark.cluster3
class TestFaults:
    def test_killed_leader_hands_over_and_acks_all_continues(
        self, kafka_cluster3: LocalKafkaCluster, kafka_topic3: str
    ) -> None:
        """After SIGKILL of a partition leader another node leads and acks=all writes succeed."""
        cluster, topic = kafka_cluster3, kafka_topic3
        producer = acks_all_producer(cluster.bootstrap_servers)
        assert produce(producer, topic, 50) == []
        old = cluster.leader_of(topic, 0)
        cluster.kill_node(old)
        new = wait_until(
            lambda: (lead := cluster.leader_of(topic, 0, timeout=3)) not in (old, -1) and lead,
            30,
            f"a new leader for {topic}-0 after killing node {old}",
        )
        assert new != old
        assert produce(producer, topic, 50) == []
        producer.flush(5)

    def test_restarted_node_rejoins_the_isr(
        self, kafka_cluster3: LocalKafkaCluster, kafka_topic3: str
    ) -> None:
        """A killed follower drops out of the ISR and is back in it after restart_node."""
        cluster, topic = kafka_cluster3, kafka_topic3
        follower = a_follower(cluster, topic)
        cluster.kill_node(follower)
        wait_until(lambda: follower not in cluster.isr_of(topic, 0, timeout=3), 30, "ISR shrink")
        assert produce(acks_all_producer(cluster.bootstrap_servers), topic, 50) == []
        cluster.restart_node(follower)
        wait_until(lambda: follower in cluster.isr_of(topic, 0, timeout=3), 60, "ISR rejoin")

    def test_paused_follower_leaves_isr_until_resumed(
        self, kafka_cluster3: LocalKafkaCluster, kafka_topic3: str
    ) -> None:
        """SIGSTOP of a follower shrinks the ISR (writes still succeed); SIGCONT restores it."""
        cluster, topic = kafka_cluster3, kafka_topic3
        follower = a_follower(cluster, topic)
        cluster.pause_node(follower)
        try:
            assert produce(acks_all_producer(cluster.bootstrap_servers), topic, 20) == []
            wait_until(
                lambda: follower not in cluster.isr_of(topic, 0, timeout=3), 30, "ISR shrink"
            )
        finally:
            cluster.resume_node(follower)
        wait_until(lambda: follower in cluster.isr_of(topic, 0, timeout=3), 60, "ISR rejoin")


_CHILD = textwrap.dedent(
    """
    import json, sys, time
    import eventwire_devkit._kafka.node as node
    from eventwire_devkit.kafka import LocalKafkaCluster
    if sys.argv[1] == "no-pdeathsig":
        node.pdeathsig_preexec = lambda: None
    cluster = LocalKafkaCluster(1).start()
    print(json.dumps({"data_dir": str(cluster.data_dir), "cluster_id": cluster.cluster_id,
                      "pid": cluster.node_pid(1)}), flush=True)
    time.sleep(600)
    """
)


def start_owner_and_sigkill_it(mode: str) -> dict[str, Any]:
    """Run a Python process that starts a 1-node cluster, then SIGKILL it; return its info."""
    child = subprocess.Popen(
        [sys.executable, "-c", _CHILD, mode], stdout=subprocess.PIPE, text=True, env=os.environ
    )
    try:
        assert child.stdout is not None
        line = child.stdout.readline()
        assert line, f"child exited early with {child.wait()}"
        info: dict[str, Any] = json.loads(line)
        assert jvm_pids_of(info["data_dir"]) == [info["pid"]]
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    return info


@pytest.mark.usefixtures("kafka_jars")
class TestNoOrphans:
    def test_close_leaves_no_jvm_and_no_data(self) -> None:
        """After close() no JVM names the cluster's data dir and the dir and record are gone."""
        with LocalKafkaCluster(1) as cluster:
            assert cluster.data_dir is not None
            data_dir = cluster.data_dir
            assert jvm_pids_of(data_dir) == [cluster.node_pid(1)]
            assert record_path(cluster.cluster_id).exists()
        assert jvm_pids_of(data_dir) == []
        assert not data_dir.exists()
        assert not record_path(cluster.cluster_id).exists()

    def test_sigkilled_owner_takes_its_jvms_along(self) -> None:
        """SIGKILL of the owning Python process kills its JVMs (pdeathsig); reaping cleans up."""
        info = start_owner_and_sigkill_it("default")
        wait_until(lambda: not jvm_pids_of(info["data_dir"]), 15, "the JVM to die with its owner")
        reap_stale_clusters()
        assert not Path(info["data_dir"]).exists()
        assert not record_path(info["cluster_id"]).exists()

    def test_reaper_kills_jvms_whose_owner_died(self) -> None:
        """Without pdeathsig the JVM outlives its SIGKILLed owner until the reaper kills it."""
        info = start_owner_and_sigkill_it("no-pdeathsig")
        time.sleep(1.0)
        assert jvm_pids_of(info["data_dir"]) == [info["pid"]]
        assert info["pid"] in reap_stale_clusters()
        assert jvm_pids_of(info["data_dir"]) == []
        assert not Path(info["data_dir"]).exists()
        assert not record_path(info["cluster_id"]).exists()
