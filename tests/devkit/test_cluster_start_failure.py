"""A node that cannot start: the error says why first, in a few lines, and the log is kept.

A port taken between ``free_ports()`` and the JVM's bind made a 4 KB one-line skip reason
that started with Java stack frames; the cause ("Address already in use") was somewhere
in the middle, and the log it quoted was deleted with the cluster.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

import eventwire_devkit.kafka as kafka
from eventwire_devkit._kafka.node import Node, free_ports, wait_ready
from eventwire_devkit._kafka.runtime import jvm_pids_of

FRAMES = [f"\tat kafka.network.SocketServer.frame{n}(SocketServer.scala:{n})" for n in range(40)]
BIND_FAILURE = [
    "[2026-01-01 00:00:00,000] ERROR Unable to start acceptor for PLAINTEXT (kafka.network.DataPlaneAcceptor)",
    "org.apache.kafka.common.KafkaException: Socket server failed to bind to 127.0.0.1:40237: Address already in use.",
    *FRAMES,
    "Caused by: java.net.BindException: Address already in use",
    "\t... 18 more",
    "[2026-01-01 00:00:01,000] ERROR Exiting Kafka due to fatal exception during startup. (kafka.Kafka$)",
    "java.lang.RuntimeException: Received a fatal error while waiting for all of the SocketServer Acceptors to be started",
    *FRAMES,
]


def exited_node(tmp_path: Path, log: list[str]) -> Node:
    """A node whose process has exited with code 1, leaving ``log`` as its server.log."""
    node = Node(1, 40237, 40238, tmp_path / "node-1")
    node.directory.mkdir()
    node.log_path.write_text("\n".join(log) + "\n")
    node.process = subprocess.Popen([sys.executable, "-c", "raise SystemExit(1)"])
    node.process.wait()
    return node


def test_a_taken_port_is_named_first_in_a_short_message(tmp_path: Path) -> None:
    node = exited_node(tmp_path, BIND_FAILURE)
    with pytest.raises(kafka.ClusterStartError) as caught:
        wait_ready([node], set, time.monotonic() + 5)
    message = str(caught.value)
    assert message.startswith(
        "Kafka node 1 failed to start (exit code 1): port 40237 is already in use"
    )
    assert len(message) < 500, message
    assert "\tat " not in message
    assert str(node.directory) in message  # where the whole log is


def test_an_error_without_a_known_cause_gives_the_record_and_its_root_cause(
    tmp_path: Path,
) -> None:
    log = [
        "[2026-01-01 00:00:00,000] WARN something harmless (kafka.server.X)",
        "[2026-01-01 00:00:01,000] ERROR Exiting Kafka due to fatal exception during startup. (kafka.Kafka$)",
        "java.lang.RuntimeException: wrapper",
        *FRAMES,
        "Caused by: java.io.IOException: No space left on device",
        "\t... 6 more",
    ]
    node = exited_node(tmp_path, log)
    with pytest.raises(kafka.ClusterStartError) as caught:
        wait_ready([node], set, time.monotonic() + 5)
    assert str(caught.value).startswith(
        "Kafka node 1 failed to start (exit code 1): Exiting Kafka due to fatal exception "
        "during startup: java.io.IOException: No space left on device;"
    )


def test_a_real_broker_whose_port_is_taken(
    kafka_jars: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The JVM really fails to bind: the cause comes first, the logs outlive the cluster
    (only they: the rest of the temp data dir is deleted), and no JVM is left."""
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.setattr("tempfile.tempdir", None)  # read TMPDIR again
    held = socket.socket()
    taken: list[int] = []

    def ports_with_the_first_taken(count: int) -> list[int]:
        ports = free_ports(count)
        held.bind(("127.0.0.1", ports[0]))
        held.listen()
        taken.append(ports[0])
        return ports

    monkeypatch.setattr(kafka, "free_ports", ports_with_the_first_taken)
    cluster = kafka.LocalKafkaCluster(1)
    try:
        with held, pytest.raises(kafka.ClusterStartError) as caught:
            cluster.start()
        first_line = str(caught.value).splitlines()[0]
        assert f"port {taken[0]} is already in use" in first_line
        assert len(str(caught.value)) < 800, str(caught.value)
        assert cluster.data_dir is not None
        assert f"delete {cluster.data_dir} when done" in str(caught.value)
        kept = sorted(p.relative_to(cluster.data_dir) for p in cluster.data_dir.rglob("*"))
        assert {str(p) for p in kept} <= {"node-1", "node-1/server.log", "node-1/stdout.log"}
        assert "Address already in use" in (cluster.data_dir / "node-1/server.log").read_text()
        assert jvm_pids_of(cluster.data_dir) == []
    finally:
        if cluster.data_dir is not None:
            shutil.rmtree(cluster.data_dir, ignore_errors=True)
