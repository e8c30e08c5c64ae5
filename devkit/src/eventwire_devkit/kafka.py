"""A real Apache Kafka cluster (KRaft, 1 or 3 nodes) on loopback, for tests and local dev.

>>> with LocalKafkaCluster(nodes=3) as cluster:  # doctest: +SKIP
...     cluster.create_topic("orders")
...     cluster.kill_node(cluster.leader_of("orders", 0))

Each node is one JVM running ``kafka.Kafka`` with ``process.roles=broker,controller`` and a
static ``controller.quorum.voters``, listening on free 127.0.0.1 ports. The jars come from
:func:`ensure_kafka_jars`. Node ids are 1..N and every method taking a node takes its id.

No JVM outlives its owner: each is started in its own session with ``PR_SET_PDEATHSIG``
(SIGKILL when the starting thread dies; only armed from the main thread), and a run record
under ``~/.cache/eventwire/run/clusters/`` lets the next :meth:`LocalKafkaCluster.start` (or
:func:`reap_stale_clusters`) kill JVMs whose owner died anyway. A cluster object is not
thread-safe.
"""

from __future__ import annotations

import concurrent.futures
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from confluent_kafka import KafkaException

from eventwire_devkit._kafka import admin as _admin
from eventwire_devkit._kafka import config as _config
from eventwire_devkit._kafka import jars as _jars
from eventwire_devkit._kafka import runtime as _runtime
from eventwire_devkit._kafka import security as _security
from eventwire_devkit._kafka.errors import (
    ClusterStartError,
    JarFetchError,
    JavaNotFoundError,
    KafkaClusterError,
    MavenNotFoundError,
)
from eventwire_devkit._kafka.node import Node, free_ports, wait_ready

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence
    from types import TracebackType

__all__ = [
    "ALLOWED_TOPIC_PREFIX",
    "KAFKA_VERSION",
    "MECHANISMS",
    "PRINCIPALS",
    "ClusterStartError",
    "JarFetchError",
    "JavaNotFoundError",
    "KafkaClusterError",
    "LocalKafkaCluster",
    "MavenNotFoundError",
    "ensure_kafka_jars",
    "java_available",
    "reap_stale_clusters",
    "stop_recorded_cluster",
]

KAFKA_VERSION = "4.1.1"
#: ``security="sasl_ssl"``: the topic-name prefix the ``producer`` principal may write to.
ALLOWED_TOPIC_PREFIX = _security.ALLOWED_PREFIX
#: ``security="sasl_ssl"``: ``admin`` (super user), ``producer`` (writes
#: ``allowed.*`` only, plus IdempotentWrite) and ``nobody`` (no rights).
PRINCIPALS = _security.PRINCIPALS
#: ``security="sasl_ssl"``: the SASL mechanisms of the client listener.
MECHANISMS = _security.MECHANISMS
DEFAULT_JVM_ARGS = ("-Xms128m", "-Xmx384m", "-XX:+UseSerialGC")


def ensure_kafka_jars(progress: _jars.Progress | None = None) -> Path:
    """Return the directory of Kafka :data:`KAFKA_VERSION` jars, fetching them once with Maven.

    ``$KAFKA_HOME/libs`` when ``KAFKA_HOME`` is set; otherwise the per-user cache
    ``${EVENTWIRE_KAFKA_CACHE:-${XDG_CACHE_HOME:-~/.cache}/eventwire/kafka}/<version>/libs``.
    ``progress`` is called with a human-readable line before a (slow) download starts.

    Raises:
        MavenNotFoundError, JavaNotFoundError, JarFetchError: see their docstrings.

    """
    return _jars.ensure_jars(KAFKA_VERSION, progress)


def java_available() -> bool:
    """Return True if Java >= 17 is in ``JAVA_HOME`` (when set) or else on PATH."""
    try:
        _jars.find_java()
    except JavaNotFoundError:
        return False
    return True


def reap_stale_clusters() -> list[int]:
    """Kill JVMs of local clusters whose owning process died; return the pids killed."""
    return _runtime.reap_stale()


def stop_recorded_cluster(cluster_id: str, timeout: float = 15.0) -> list[int]:
    """Stop a cluster known only by id (e.g. a detached one); return the pids signalled."""
    return _runtime.stop_recorded(cluster_id, timeout)


class LocalKafkaCluster:
    """N combined broker+controller nodes on 127.0.0.1 with fault-injection helpers.

    Defaults: ``default.replication.factor`` and internal topics' RF are ``min(3, nodes)``;
    ``min.insync.replicas`` is 2 with 3+ nodes, else 1; ``unclean.leader.election.enable``
    is false; ``num.partitions`` is ``partitions`` (3) and topics are auto-created unless
    ``auto_create_topics=False``. ``broker_overrides`` are added last to every node's
    ``server.properties``. Data lives in a fresh temp dir (or ``data_dir``), deleted by
    :meth:`close` unless ``keep_data`` or the dir was given by the caller.

    ``security="sasl_ssl"`` makes a secured cluster: every listener (clients, inter-broker,
    controller) is SASL over TLS, with a CA and broker certificate made at start by the
    JDK's ``keytool`` (the certificate names ``localhost`` only, so
    :attr:`bootstrap_servers` is ``localhost:<port>,...``); SCRAM-SHA-512, PLAIN and
    OAUTHBEARER (Kafka's unsecured-JWS validator, for tests) for clients;
    ``StandardAuthorizer`` with the principals of :data:`PRINCIPALS` and their ACLs in
    place before :meth:`start` returns. :meth:`client_config` gives a librdkafka
    properties file per principal; :attr:`untrusted_ca_location` is a CA the brokers do
    not use. Passwords are random per cluster.
    """

    def __init__(
        self,
        nodes: int = 1,
        *,
        partitions: int = 3,
        auto_create_topics: bool = True,
        broker_overrides: Mapping[str, str] | None = None,
        data_dir: str | Path | None = None,
        keep_data: bool = False,
        die_with_parent: bool = True,
        startup_timeout: float = 90.0,
        jvm_args: Sequence[str] = DEFAULT_JVM_ARGS,
        progress: _jars.Progress | None = None,
        security: str = "plaintext",
    ) -> None:
        """Configure a cluster; nothing runs until :meth:`start`.

        Raises:
            ValueError: ``nodes`` is not an int >= 1, ``jvm_args`` is one string (not a
                sequence of arguments), or ``security`` is not ``"plaintext"``/``"sasl_ssl"``.

        """
        if not isinstance(nodes, int) or isinstance(nodes, bool) or nodes < 1:
            raise ValueError(f"nodes must be an int >= 1, not {nodes!r}")
        if isinstance(jvm_args, str):  # list("-Xmx512m") would be its characters
            raise ValueError(
                f"jvm_args is a sequence of arguments, not one string: pass [{jvm_args!r}]"
            )
        if security not in _security.SECURITY_MODES:
            raise ValueError(
                f"security must be one of {', '.join(_security.SECURITY_MODES)}, not {security!r}"
            )
        self.security = security
        self._host = _security.CLIENT_HOST if security == "sasl_ssl" else "127.0.0.1"
        self._material: _security.SecurityMaterial | None = None
        self._client_configs: dict[str, Path] = {}
        self._count = nodes
        self._partitions = partitions
        self._auto_create = auto_create_topics
        self._overrides = dict(broker_overrides or {})
        self._given_dir = Path(data_dir) if data_dir is not None else None
        self._keep_data = keep_data
        self._die_with_parent = die_with_parent
        self._startup_timeout = startup_timeout
        self._jvm_args = list(jvm_args)
        self._progress = progress
        self.cluster_id = _config.new_cluster_id()
        self.data_dir: Path | None = None
        self.startup_seconds: float | None = None
        self._nodes: dict[int, Node] = {}
        self._java = ""
        self._classpath = ""
        self._admin: Any = None
        self._admin_nodes: tuple[int, ...] = ()
        self._state = "new"
        self._keep_logs = False  # a failed start: close() keeps the nodes' logs

    # -- lifecycle -------------------------------------------------------------------------

    @property
    def bootstrap_servers(self) -> str:
        """``"127.0.0.1:p1,127.0.0.1:p2,..."`` (valid once :meth:`start` returned).

        A ``sasl_ssl`` cluster's is ``"localhost:p1,..."``: the name its certificate holds.
        """
        return ",".join(f"{self._host}:{n.port}" for n in self._nodes.values())

    @property
    def node_ids(self) -> list[int]:
        """The node ids, ``[1, ..., nodes]``."""
        return list(range(1, self._count + 1))

    def start(self) -> LocalKafkaCluster:
        """Fetch jars if needed, format and start every node, and wait until all are ready.

        Ready means one Metadata response lists every node (and, for ``sasl_ssl``, the ACLs
        are created and the client config files written). Stale clusters whose owner died
        are reaped first. On any failure everything started is stopped again.

        Raises:
            JavaNotFoundError, MavenNotFoundError, JarFetchError: no way to run Kafka here.
            ClusterStartError: a node failed or was not ready within ``startup_timeout``;
                the message starts with the cause found in the node's log (e.g. "port N
                is already in use") and names the log, which is kept: of a temp data dir
                only the nodes' ``server.log`` and ``stdout.log`` are left.
            KafkaClusterError: the cluster was already started.

        """
        if self._state != "new":
            raise KafkaClusterError(f"cluster {self.cluster_id} was already started")
        self._state = "starting"
        began = time.monotonic()
        try:
            reap_stale_clusters()
            self._java = _jars.find_java()
            self._classpath = f"{ensure_kafka_jars(self._progress)}/*"
            self._report(f"Starting {self._count}-node Kafka {KAFKA_VERSION} cluster")
            self._prepare_dirs()
            scram = _security.scram_format_args(self._material) if self._material else []
            with concurrent.futures.ThreadPoolExecutor(1) as pool:
                tls = (
                    pool.submit(_security.make_tls, self._material, self._java)
                    if self._material is not None
                    else None
                )
                _config.format_storage(
                    list(self._nodes.values()), self._java, self._classpath, self.cluster_id, scram
                )
                if tls is not None:
                    tls.result()
            for node in self._nodes.values():
                self._start_node(node)
            self._write_record()
            self._wait_ready(self.node_ids, began + self._startup_timeout)
            if self._material is not None:
                self._secure_finish(began + self._startup_timeout)
        except BaseException as exc:
            # A node that did not start: its whole log says why, so it outlives the data.
            self._keep_logs = isinstance(exc, ClusterStartError) and self._deletes_data()
            self.close()
            if self._keep_logs and self.data_dir is not None and self.data_dir.is_dir():
                exc.args = (f"{exc}\n(the logs are kept; delete {self.data_dir} when done)",)
            raise
        self._state = "running"
        self.startup_seconds = time.monotonic() - began
        return self

    def close(self, timeout: float = 15.0, *, graceful: bool | None = None) -> None:
        """Stop every node and delete the temp data dir (unless kept); idempotent.

        ``graceful`` (default: only when the data is kept) sends SIGTERM and waits up to
        ``timeout`` before SIGKILL; otherwise nodes are SIGKILLed at once, which is faster
        for throw-away data. Afterwards no JVM of this cluster runs (leftovers found in
        ``/proc`` are SIGKILLed). Never raises for processes that are already gone.
        """
        if self._state == "closed":
            return
        self._state = "closed"
        self._admin = None
        if graceful is None:
            graceful = not self._deletes_data()
        nodes = [n for n in self._nodes.values() if n.running]
        for node in nodes:
            node.send(signal.SIGTERM if graceful else signal.SIGKILL)
            node.resume()
        deadline = time.monotonic() + timeout
        for node in nodes:
            try:
                node.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                node.kill()
        if self.data_dir is not None:
            _runtime.kill_all(str(self.data_dir), _runtime.jvm_pids_of(self.data_dir))
            if self._deletes_data() and not (self._keep_logs and self._delete_all_but_logs()):
                shutil.rmtree(self.data_dir, ignore_errors=True)
        _runtime.delete_record(self.cluster_id)

    def __enter__(self) -> LocalKafkaCluster:
        """Start the cluster (see :meth:`start`)."""
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Close the cluster (see :meth:`close`)."""
        self.close()

    # -- secured cluster (security="sasl_ssl") ----------------------------------------------

    @property
    def client_configs(self) -> dict[str, Path]:
        """Return every client config file by name (empty for a plaintext cluster).

        Names: ``<principal>`` (SCRAM-SHA-512), ``<principal>-plain``, ``<principal>-oauthbearer``.
        """
        return dict(self._client_configs)

    def client_config(self, principal: str = "producer", mechanism: str = "SCRAM-SHA-512") -> Path:
        """Path of the librdkafka properties file that connects as ``principal``.

        It holds ``bootstrap.servers``, ``security.protocol=SASL_SSL``, ``ssl.ca.location``,
        ``sasl.mechanism`` and, except for OAUTHBEARER (librdkafka's built-in unsecured
        JWT with ``sub`` = the principal), ``sasl.username``/``sasl.password``; mode 0600.
        ``eventwire.KafkaConfig.from_file`` and ``eventwire outbox relay --config`` read it.

        Raises:
            KafkaClusterError: not a started ``sasl_ssl`` cluster.
            ValueError: unknown principal or mechanism.

        """
        material = self._secured()
        _security.client_properties(self.bootstrap_servers, material, principal, mechanism)
        return self._client_configs[Path(_security.client_config_name(principal, mechanism)).stem]

    def client_properties(
        self, principal: str = "producer", mechanism: str = "SCRAM-SHA-512"
    ) -> dict[str, str]:
        """The contents of :meth:`client_config` as a dict (for ``confluent_kafka`` clients).

        Raises:
            KafkaClusterError: not a started ``sasl_ssl`` cluster.
            ValueError: unknown principal or mechanism.

        """
        material = self._secured()
        return _security.client_properties(self.bootstrap_servers, material, principal, mechanism)

    def password(self, principal: str) -> str:
        """The random password of ``principal`` (SCRAM-SHA-512 and PLAIN alike).

        Raises:
            KafkaClusterError: not a started ``sasl_ssl`` cluster.
            KeyError: unknown principal.

        """
        return self._secured().passwords[principal]

    @property
    def ca_location(self) -> Path:
        """PEM of the CA that signed the brokers' certificate (``ssl.ca.location``)."""
        return self._secured().ca_pem

    @property
    def untrusted_ca_location(self) -> Path:
        """PEM of a second CA that signed nothing the brokers use (for "untrusted CA" tests)."""
        return self._secured().untrusted_ca_pem

    # -- topics and metadata ---------------------------------------------------------------

    def create_topic(
        self,
        name: str,
        partitions: int = 3,
        replication_factor: int | None = None,
        config: Mapping[str, str] | None = None,
        timeout: float = 30.0,
    ) -> str:
        """Create ``name`` (RF default ``min(3, nodes)``); return once every partition has a leader.

        Raises:
            KafkaClusterError: the broker refused (e.g. it exists) or leaders did not appear.

        """
        rf = replication_factor if replication_factor is not None else min(3, self._count)
        _admin.create_topic(
            self._admin_client(), name, partitions, rf, config=config, timeout=timeout
        )
        return name

    def delete_topic(self, name: str, timeout: float = 30.0) -> None:
        """Delete ``name``; a missing topic is not an error.

        Raises:
            KafkaClusterError: the broker refused or did not answer within ``timeout``.

        """
        _admin.delete_topic(self._admin_client(), name, timeout)

    def leader_of(self, topic: str, partition: int, timeout: float = 10.0) -> int:
        """Return the leader's node id per a fresh Metadata request; -1 if none is elected.

        Metadata comes from a running, unpaused node; an unknown topic is retried until
        ``timeout`` (a just-created topic may not have reached every broker yet).

        Raises:
            KafkaClusterError: the topic or partition is unknown, or metadata timed out.

        """
        return int(self._partition(topic, partition, timeout).leader)

    def isr_of(self, topic: str, partition: int, timeout: float = 10.0) -> list[int]:
        """Return the sorted in-sync replica node ids per a fresh Metadata request.

        Raises:
            KafkaClusterError: the topic or partition is unknown, or metadata timed out.

        """
        return sorted(int(r) for r in self._partition(topic, partition, timeout).isrs)

    def running_node_ids(self, timeout: float = 10.0) -> list[int]:
        """Return the node ids a Metadata response currently lists (unfenced brokers)."""
        try:
            return sorted(_admin.broker_ids(self._admin_client(), timeout))
        except KafkaException as exc:
            raise KafkaClusterError(f"metadata request failed: {exc}") from exc

    # -- fault injection (node = node id, 1..N) --------------------------------------------

    def node_pid(self, node: int) -> int | None:
        """Pid of the node's current JVM (None if it was never started)."""
        return self._node(node).pid

    def node_dir(self, node: int) -> Path:
        """Return the node's dir: server.properties, server.log, stdout.log and data/."""
        return self._node(node).directory

    def is_running(self, node: int) -> bool:
        """Return True while the node's JVM process exists (a paused JVM counts as running)."""
        return self._node(node).running

    def stop_node(self, node: int, timeout: float = 30.0) -> None:
        """SIGTERM the node (clean shutdown) and wait for it to exit; SIGKILL after ``timeout``."""
        self._node(node).stop(timeout)

    def kill_node(self, node: int) -> None:
        """SIGKILL the node and wait for the process to be gone."""
        self._node(node).kill()

    def pause_node(self, node: int) -> None:
        """SIGSTOP the node: its sockets stay open but it answers nothing until resumed."""
        self._node(node).pause()

    def resume_node(self, node: int) -> None:
        """SIGCONT a paused node."""
        self._node(node).resume()

    def restart_node(self, node: int, timeout: float = 60.0) -> None:
        """(Re)start the node on the same ports and data; return once Metadata lists it again.

        A running node is stopped cleanly first.

        Raises:
            ClusterStartError: it exited or was not back within ``timeout``; includes its log.

        """
        target = self._node(node)
        target.stop(timeout)
        self._start_node(target)
        self._write_record()
        self._wait_ready([node], time.monotonic() + timeout)

    def heal(self, timeout: float = 60.0) -> None:
        """Resume paused nodes and restart stopped ones; return once Metadata lists all nodes.

        Raises:
            KafkaClusterError: the cluster is not running.
            ClusterStartError: a node did not come back within ``timeout``.

        """
        self._admin_client()  # raises unless running
        for node in self._nodes.values():
            node.resume()
            if not node.running:
                self._start_node(node)
        self._write_record()
        self._wait_ready(self.node_ids, time.monotonic() + timeout)

    # -- internals -------------------------------------------------------------------------

    def _secured(self) -> _security.SecurityMaterial:
        if self._material is None or not self._client_configs:
            raise KafkaClusterError(
                f"cluster {self.cluster_id} is not a started security='sasl_ssl' cluster"
            )
        return self._material

    def _admin_security(self) -> dict[str, str] | None:
        if self._material is None:
            return None
        return _security.client_properties(self.bootstrap_servers, self._material, "admin")

    def _secure_finish(self, deadline: float) -> None:
        """Create the ACLs, wait until every node reports them, write the client configs."""
        assert self._material is not None
        self._report("Creating ACLs")
        _security.create_acls(self._admin_client(), max(5.0, deadline - time.monotonic()))
        for node in self._nodes.values():
            one = _admin.new_admin(f"{self._host}:{node.port}", self._admin_security())
            _security.wait_acls(one, deadline)
        self._client_configs = _security.write_client_configs(
            self.bootstrap_servers, self._material
        )

    def _report(self, message: str) -> None:
        if self._progress is not None:
            self._progress(message)

    def _start_node(self, node: Node) -> None:
        node.start(
            self._java, self._classpath, self._jvm_args, die_with_parent=self._die_with_parent
        )

    def _deletes_data(self) -> bool:
        return self._given_dir is None and not self._keep_data

    def _delete_all_but_logs(self) -> bool:
        """Delete the data dir but the nodes' non-empty logs; False (nothing done) if none."""
        assert self.data_dir is not None
        logs = {
            path
            for node in self._nodes.values()
            for path in (node.log_path, node.stdout_path)
            if path.is_file() and path.stat().st_size > 0
        }
        if not logs:
            return False
        keep = logs | {path.parent for path in logs}
        for path in sorted(self.data_dir.rglob("*"), reverse=True):  # children first
            if path in keep:
                continue
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
        return True

    def _node(self, node: int) -> Node:
        if self._state not in {"running", "starting"}:
            raise KafkaClusterError(f"cluster {self.cluster_id} is not running ({self._state})")
        try:
            return self._nodes[node]
        except (KeyError, TypeError):  # TypeError: unhashable
            raise ValueError(f"no node {node!r}; node ids are the ints {self.node_ids}") from None

    def _admin_client(self) -> Any:
        """Return an AdminClient bootstrapped only with running, unpaused nodes.

        A paused node keeps its established connections "up", so a client that knew it
        would keep sending Metadata requests into the void; a new client is made whenever
        the set of healthy nodes changes.
        """
        if self._state not in {"running", "starting"}:
            raise KafkaClusterError(f"cluster {self.cluster_id} is not running ({self._state})")
        nodes = self._nodes.values()
        healthy = tuple(n.node_id for n in nodes if n.running and not n.paused)
        if self._admin is None or healthy != self._admin_nodes:
            servers = ",".join(f"{self._host}:{self._nodes[i].port}" for i in healthy)
            self._admin = _admin.new_admin(
                servers or self.bootstrap_servers, self._admin_security()
            )
            self._admin_nodes = healthy
        return self._admin

    def _partition(self, topic: str, partition: int, timeout: float) -> Any:
        parts = _admin.partition_metadata(self._admin_client(), topic, timeout)
        if partition not in parts:
            raise KafkaClusterError(f"topic {topic!r} has no partition {partition}")
        return parts[partition]

    def _prepare_dirs(self) -> None:
        if self._given_dir is not None:
            self._given_dir.mkdir(parents=True, exist_ok=True)
            self.data_dir = self._given_dir.resolve()
        else:
            self.data_dir = Path(tempfile.mkdtemp(prefix=f"eventwire-kafka-{self.cluster_id[:8]}-"))
        (self.data_dir / _runtime.DATA_MARKER).write_text(self.cluster_id + "\n")
        if self.security == "sasl_ssl":
            self._report("Formatting storage while keytool makes the CA and broker certificate")
            self._material = _security.new_material(self.data_dir / "security")
        ports = free_ports(2 * self._count)
        for i in self.node_ids:
            port, cport = ports[2 * (i - 1)], ports[2 * (i - 1) + 1]
            self._nodes[i] = Node(i, port, cport, self.data_dir / f"node-{i}")
        nodes = list(self._nodes.values())
        for node in nodes:
            secured = (
                _security.server_properties(node, nodes, self._material)
                if self._material is not None
                else {}
            )
            props = _config.server_properties(
                node,
                nodes,
                partitions=self._partitions,
                auto_create_topics=self._auto_create,
                overrides={**secured, **self._overrides},
            )
            node.write_properties(props)

    def _write_record(self) -> None:
        owner = os.getpid() if self._die_with_parent else None
        _runtime.write_record(
            {
                "cluster_id": self.cluster_id,
                "data_dir": str(self.data_dir),
                "delete_data": self._deletes_data(),
                "owner_pid": owner,
                "owner_start_time": _runtime.process_start_time(owner) if owner else None,
                "bootstrap_servers": self.bootstrap_servers,
                "security": self.security,
                "nodes": [
                    {
                        "id": n.node_id,
                        "pid": n.pid,
                        "port": n.port,
                        "controller_port": n.controller_port,
                    }
                    for n in self._nodes.values()
                ],
            }
        )

    def _wait_ready(self, node_ids: Sequence[int], deadline: float) -> None:
        def listed() -> set[int]:
            try:
                return _admin.broker_ids(self._admin_client(), timeout=2.0)
            except KafkaException:
                return set()

        wait_ready([self._nodes[i] for i in node_ids], listed, deadline)
