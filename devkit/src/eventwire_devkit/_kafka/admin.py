"""Small confluent-kafka AdminClient helpers shared by the cluster and the pytest plugin."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic

from eventwire_devkit._kafka.errors import KafkaClusterError

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

__all__ = ["broker_ids", "create_topic", "delete_topic", "new_admin", "partition_metadata"]

_TRANSIENT = {KafkaError.UNKNOWN_TOPIC_OR_PART, KafkaError.LEADER_NOT_AVAILABLE}
# client-side hiccups worth retrying an admin request for
_RETRY = {
    KafkaError._DESTROY_BROKER,
    KafkaError._TRANSPORT,
    KafkaError._TIMED_OUT,
    KafkaError.REQUEST_TIMED_OUT,
    KafkaError.NOT_CONTROLLER,
}


def new_admin(bootstrap_servers: str, security: Mapping[str, str] | None = None) -> Any:
    """Return an AdminClient that keeps librdkafka's connection chatter off stderr.

    ``security`` adds client properties (e.g. a secured cluster's admin credentials); its
    ``bootstrap.servers``, if any, is replaced by ``bootstrap_servers``.
    """
    conf: dict[str, Any] = {
        **(security or {}),
        "bootstrap.servers": bootstrap_servers,
        "log_level": 2,  # hide "Connect to ... failed" noise while nodes are down
        "socket.connection.setup.timeout.ms": 5000,
        "allow.auto.create.topics": False,  # a metadata lookup must not create topics
    }
    return AdminClient(conf)


def broker_ids(admin: Any, timeout: float) -> set[int]:
    """Return the node ids one Metadata response lists (raises KafkaException on timeout)."""
    return {int(b) for b in admin.list_topics(timeout=timeout).brokers}


def partition_metadata(admin: Any, topic: str, timeout: float = 10.0) -> dict[int, Any]:
    """Return ``{partition: PartitionMetadata}`` of ``topic`` from a fresh Metadata request.

    An unknown topic or missing leader is retried until ``timeout``: right after a topic
    is created, a broker that has not applied the change yet reports it unknown.

    Raises:
        KafkaClusterError: the request timed out or the broker kept reporting an error.

    """
    deadline = time.monotonic() + timeout
    while True:
        left = max(0.1, deadline - time.monotonic())
        try:
            meta = admin.list_topics(topic=topic, timeout=left).topics[topic]
        except KafkaException as exc:
            raise KafkaClusterError(f"metadata request for topic {topic!r} failed: {exc}") from exc
        if meta.error is None:
            return dict(meta.partitions)
        if meta.error.code() not in _TRANSIENT or time.monotonic() >= deadline:
            raise KafkaClusterError(f"metadata for topic {topic!r}: {meta.error}")
        time.sleep(0.1)


def _code(exc: KafkaException) -> int | None:
    err = exc.args[0] if exc.args else None
    return int(err.code()) if isinstance(err, KafkaError) else None


def _retrying(
    what: str, call: Callable[[float], None], timeout: float, done_codes: set[int]
) -> None:
    """Run ``call(remaining)`` until it succeeds; retry client-side transient errors.

    An error in ``done_codes`` after a retry counts as success (the lost attempt may have
    done the job, e.g. TOPIC_ALREADY_EXISTS when re-creating).
    """
    deadline = time.monotonic() + timeout
    retried = False
    while True:
        left = deadline - time.monotonic()
        try:
            call(max(1.0, left))
        except TimeoutError as exc:
            raise KafkaClusterError(f"{what}: timed out after {timeout}s") from exc
        except KafkaException as exc:
            code = _code(exc)
            if retried and code in done_codes:
                return
            if code not in _RETRY or time.monotonic() >= deadline:
                raise KafkaClusterError(f"{what}: {exc}") from exc
            retried = True
            time.sleep(0.2)
        else:
            return


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

    ``replication_factor=-1`` means the broker's default. Client-side transient errors
    (a broker connection dropped or replaced mid-request) are retried within ``timeout``.

    Raises:
        KafkaClusterError: creation was refused (e.g. the topic exists), or leaders did
            not appear within ``timeout``.

    """
    deadline = time.monotonic() + timeout
    topic = NewTopic(
        name,
        num_partitions=partitions,
        replication_factor=replication_factor,
        config=dict(config or {}),
    )

    def create(left: float) -> None:
        opts = {"operation_timeout": left, "request_timeout": left}
        admin.create_topics([topic], **opts)[name].result(timeout=left + 5)

    exists = {KafkaError.TOPIC_ALREADY_EXISTS}
    _retrying(f"could not create topic {name!r}", create, timeout, exists)
    last = "no metadata yet"
    while time.monotonic() < deadline:
        try:
            parts = partition_metadata(admin, name, timeout=min(2.0, timeout))
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

    def delete(left: float) -> None:
        opts = {"operation_timeout": left, "request_timeout": left}
        try:
            admin.delete_topics([name], **opts)[name].result(timeout=left + 5)
        except KafkaException as exc:
            if _code(exc) != KafkaError.UNKNOWN_TOPIC_OR_PART:
                raise

    _retrying(f"could not delete topic {name!r}", delete, timeout, set())
