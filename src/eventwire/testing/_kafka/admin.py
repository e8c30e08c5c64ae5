"""Small confluent-kafka AdminClient helpers shared by the cluster and the pytest plugin."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic

from eventwire.testing._kafka.errors import KafkaClusterError

if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = ["broker_ids", "create_topic", "delete_topic", "new_admin", "partition_metadata"]


def new_admin(bootstrap_servers: str) -> Any:
    """Return an AdminClient that keeps librdkafka's connection chatter off stderr."""
    return AdminClient(
        {
            "bootstrap.servers": bootstrap_servers,
            "log_level": 2,  # hide "Connect to ... failed" noise while nodes are down
            "socket.connection.setup.timeout.ms": 5000,
        }
    )


def broker_ids(admin: Any, timeout: float) -> set[int]:
    """Return the node ids one Metadata response lists (raises KafkaException on timeout)."""
    return {int(b) for b in admin.list_topics(timeout=timeout).brokers}


def partition_metadata(admin: Any, topic: str, timeout: float = 10.0) -> dict[int, Any]:
    """Return ``{partition: PartitionMetadata}`` of ``topic`` from a fresh Metadata request.

    Raises:
        KafkaClusterError: the request timed out or the broker reported an error for the topic.

    """
    try:
        meta = admin.list_topics(topic=topic, timeout=timeout).topics[topic]
    except KafkaException as exc:
        raise KafkaClusterError(f"metadata request for topic {topic!r} failed: {exc}") from exc
    if meta.error is not None:
        raise KafkaClusterError(f"metadata for topic {topic!r}: {meta.error}")
    return dict(meta.partitions)


def create_topic(
    admin: Any,
    name: str,
    partitions: int,
    replication_factor: int,
    *,
    config: Mapping[str, str] | None,
    timeout: float,
) -> None:
    """Create ``name`` and wait until Metadata shows a leader for every partition.

    ``replication_factor=-1`` means the broker's default.

    Raises:
        KafkaClusterError: creation was refused, or leaders did not appear within ``timeout``.

    """
    deadline = time.monotonic() + timeout
    topic = NewTopic(
        name,
        num_partitions=partitions,
        replication_factor=replication_factor,
        config=dict(config or {}),
    )
    future = admin.create_topics([topic], operation_timeout=timeout, request_timeout=timeout)[name]
    try:
        future.result(timeout=timeout)
    except (KafkaException, TimeoutError) as exc:
        raise KafkaClusterError(f"could not create topic {name!r}: {exc}") from exc
    last = "no metadata yet"
    while time.monotonic() < deadline:
        try:
            parts = partition_metadata(admin, name, timeout=max(0.5, deadline - time.monotonic()))
        except KafkaClusterError as exc:
            last = str(exc)
        else:
            if len(parts) == partitions and all(p.leader >= 0 for p in parts.values()):
                return
            last = f"leaders {[p.leader for p in parts.values()]}"
        time.sleep(0.05)
    raise KafkaClusterError(
        f"topic {name!r} had no leader for every partition after {timeout}s ({last})"
    )


def delete_topic(admin: Any, name: str, timeout: float = 30.0) -> None:
    """Delete ``name``; a topic that does not exist counts as deleted.

    Raises:
        KafkaClusterError: the broker refused or the request timed out.

    """
    future = admin.delete_topics([name], operation_timeout=timeout, request_timeout=timeout)[name]
    try:
        future.result(timeout=timeout)
    except TimeoutError as exc:
        raise KafkaClusterError(f"deleting topic {name!r} timed out") from exc
    except KafkaException as exc:
        err = exc.args[0] if exc.args else None
        if isinstance(err, KafkaError) and err.code() == KafkaError.UNKNOWN_TOPIC_OR_PART:
            return
        raise KafkaClusterError(f"could not delete topic {name!r}: {exc}") from exc
