"""Server properties and storage formatting for the nodes of a local KRaft cluster."""

from __future__ import annotations

import base64
import subprocess
import uuid
from typing import TYPE_CHECKING

from eventwire_devkit._kafka.errors import ClusterStartError

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from eventwire_devkit._kafka.node import Node

__all__ = ["format_storage", "new_cluster_id", "server_properties"]

_FORMAT_JVM_ARGS = ("-Xmx128m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1")


def new_cluster_id() -> str:
    """Return a random KRaft cluster id (22 chars of URL-safe base64, not starting with -)."""
    while True:  # Kafka's Uuid.randomUuid() also avoids ids starting with "-"
        cid = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cid.startswith("-"):
            return cid


def server_properties(
    node: Node,
    nodes: Sequence[Node],
    *,
    partitions: int,
    auto_create_topics: bool,
    overrides: Mapping[str, str],
) -> dict[str, str]:
    """Return ``server.properties`` of ``node`` in a cluster of ``nodes`` (overrides last).

    RF is ``min(3, len(nodes))`` for new and internal topics; min ISR is 2 from 3 nodes up.
    """
    rf = str(min(3, len(nodes)))
    min_isr = "2" if len(nodes) >= 3 else "1"
    voters = ",".join(f"{n.node_id}@127.0.0.1:{n.controller_port}" for n in nodes)
    props = {
        "process.roles": "broker,controller",
        "node.id": str(node.node_id),
        "controller.quorum.voters": voters,
        "listeners": (
            f"PLAINTEXT://127.0.0.1:{node.port},CONTROLLER://127.0.0.1:{node.controller_port}"
        ),
        "advertised.listeners": f"PLAINTEXT://127.0.0.1:{node.port}",
        "inter.broker.listener.name": "PLAINTEXT",
        "controller.listener.names": "CONTROLLER",
        "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
        "log.dirs": str(node.data_path),
        "num.partitions": str(partitions),
        "auto.create.topics.enable": str(auto_create_topics).lower(),
        "default.replication.factor": rf,
        "min.insync.replicas": min_isr,
        "unclean.leader.election.enable": "false",
        "offsets.topic.replication.factor": rf,
        "transaction.state.log.replication.factor": rf,
        "transaction.state.log.min.isr": min_isr,
        "share.coordinator.state.topic.replication.factor": rf,
        "share.coordinator.state.topic.min.isr": min_isr,
        # startup speed and footprint on a small machine
        "group.initial.rebalance.delay.ms": "0",
        "offsets.topic.num.partitions": "1",
        "transaction.state.log.num.partitions": "1",
        "share.coordinator.state.topic.num.partitions": "1",
        "log.cleaner.dedupe.buffer.size": "2097152",
        "num.network.threads": "2",
        "num.io.threads": "2",
        "num.recovery.threads.per.data.dir": "1",
    }
    props.update(overrides)
    return props


def _secrets_in(args: Sequence[str]) -> list[str]:
    """The ``password=...`` values inside ``--add-scram`` arguments (kept out of messages)."""
    found: list[str] = []
    for arg in args:
        for part in arg.strip("]").split(","):
            if part.startswith("password="):
                found.append(part.removeprefix("password="))
    return found


def format_storage(
    nodes: Sequence[Node],
    java: str,
    classpath: str,
    cluster_id: str,
    extra_args: Sequence[str] = (),
) -> None:
    """Run ``kafka.tools.StorageTool format -t <cluster_id> [extra_args]`` on every node.

    The nodes are formatted in parallel.

    ``extra_args`` are e.g. ``--add-scram`` options (SCRAM users of a secured cluster).

    With static ``controller.quorum.voters`` no ``--standalone``/``--initial-controllers``
    flag is given (Kafka 4.1 rejects them in that mode).

    Raises:
        ClusterStartError: a format run failed; the message holds its output.

    """
    runs = []
    for node in nodes:
        main = ["kafka.tools.StorageTool", "format", "-t", cluster_id]
        main += ["-c", str(node.properties_path), *extra_args]
        cmd = node.jvm_command(java, classpath, main, _FORMAT_JVM_ARGS)
        proc = subprocess.Popen(
            cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        )
        runs.append((node, proc))
    failures = []
    for node, proc in runs:
        try:
            out, _ = proc.communicate(timeout=120)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, _ = proc.communicate()
        if proc.returncode != 0:
            text = out.decode(errors="replace").strip()
            for secret in _secrets_in(extra_args):
                text = text.replace(secret, "***")
            failures.append(f"node {node.node_id} (exit {proc.returncode}): {text}")
    if failures:
        raise ClusterStartError("formatting Kafka storage failed:\n" + "\n".join(failures))
