"""pytest plugin: fixtures backed by a real local Apache Kafka. Opt-in, never auto-loaded.

Load it in a ``conftest.py`` (``pytest_plugins = ["eventwire_devkit.pytest_plugin"]``) or
with ``-p eventwire_devkit.pytest_plugin``. Its fixtures (clusters start lazily, the first
time a test asks for them):

* ``kafka_jars`` -- the Kafka jar directory (for tests that build their own cluster).
* ``kafka_cluster`` -- session-scoped 1-node :class:`~eventwire_devkit.kafka.LocalKafkaCluster`.
* ``kafka_cluster3`` -- session-scoped 3-node cluster for fault injection (RF 3, min ISR 2,
  ``replica.lag.time.max.ms=6000`` so a paused follower leaves the ISR within seconds).
* ``kafka_bootstrap`` -- bootstrap servers of the 1-node cluster, or of the external cluster
  given by ``--kafka-bootstrap`` / ``EVENTWIRE_BOOTSTRAP``.
* ``kafka_secure_cluster`` / ``kafka_secure_cluster3`` -- session-scoped 1-node / 3-node
  ``LocalKafkaCluster(security="sasl_ssl")``: SASL_SSL everywhere, SCRAM-SHA-512, PLAIN
  and OAUTHBEARER (unsecured JWS), StandardAuthorizer with the principals ``admin``,
  ``producer`` (writes ``allowed.*`` topics only) and ``nobody``; per-principal client
  config files from ``cluster.client_config(principal, mechanism)``.
* ``kafka_topic`` / ``kafka_topic3`` -- a fresh topic (3 partitions) named
  ``t-<test name>-<8 hex>`` on ``kafka_bootstrap`` / on ``kafka_cluster3`` (RF 3), deleted
  afterwards on a best-effort basis. Both heal a local cluster the plugin runs (resume
  paused and restart stopped nodes) before making the topic, so every test starts with all
  nodes up, and again before deleting it, so a test that left a node down is torn down at
  once and leaves no topic behind.
* ``schema_registry`` -- the Confluent-compatible URL (``http://127.0.0.1:<port>/apis/ccompat/v7``)
  of a session-scoped local Schema Registry (Apicurio, in memory; see
  :mod:`eventwire_devkit.registry`), or of the external one given by ``--schema-registry-url``
  / ``EVENTWIRE_TEST_SCHEMA_REGISTRY_URL``.
* ``local_schema_registry`` -- a fresh :class:`~eventwire_devkit.registry.LocalSchemaRegistry`
  of the test's own (function scope), which it may ``stop()`` or ``kill()`` (an outage).
* ``schema_registry_build`` -- the directory of the built registry (built once with Maven).

With an external cluster, ``kafka_cluster`` and ``kafka_cluster3`` cannot inject faults and
skip. When no cluster (or registry) can be started (no Java, Maven failed, startup timeout)
the test skips with the reason -- except in strict mode (``--eventwire-strict``, the
environment variable ``EVENTWIRE_DEVKIT_STRICT=1``, or ``CI=true`` unless
``EVENTWIRE_DEVKIT_STRICT=0``), where it fails instead: a CI run never passes by skipping.
:func:`unavailable` gives your own tests the same skip-or-fail rule.

A test that leaves a fault behind (a node stopped or paused) does not break the next ones:
``kafka_topic`` heals the local cluster first, and a test that requested a local cluster
fixture heals it when it ends.

Tests that request these fixtures by name get the ``kafka`` marker (``cluster3`` for the
3-node ones; the registry fixtures get ``schema_registry``), so ``-m "not kafka"`` deselects
them. This only happens where the plugin is loaded, which is your choice.
"""

from __future__ import annotations

import contextlib
import os
import re
import uuid
from typing import TYPE_CHECKING, Any, NoReturn

import pytest

from eventwire_devkit import STRICT_ENV, strict_from_env

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from eventwire_devkit.kafka import LocalKafkaCluster
    from eventwire_devkit.registry import LocalSchemaRegistry

ENV_BOOTSTRAP = "EVENTWIRE_BOOTSTRAP"
ENV_SCHEMA_REGISTRY = "EVENTWIRE_TEST_SCHEMA_REGISTRY_URL"
CLUSTER3_OVERRIDES = {
    "replica.lag.time.max.ms": "6000",
    "broker.heartbeat.interval.ms": "1000",
    "broker.session.timeout.ms": "6000",
}
_KAFKA_FIXTURES = {
    "kafka_jars",
    "kafka_cluster",
    "kafka_bootstrap",
    "kafka_topic",
    "kafka_secure_cluster",
}
_CLUSTER3_FIXTURES = {"kafka_cluster3", "kafka_topic3", "kafka_secure_cluster3"}
_REGISTRY_FIXTURES = {"schema_registry", "local_schema_registry", "schema_registry_build"}


def pytest_addoption(parser: pytest.Parser) -> None:
    """Add ``--kafka-bootstrap``, ``--schema-registry-url`` and ``--eventwire-strict``."""
    group = parser.getgroup("eventwire", "eventwire Kafka fixtures")
    group.addoption(
        "--kafka-bootstrap",
        default=None,
        metavar="HOST:PORT[,...]",
        help=f"use this running Kafka cluster instead of starting one (env: {ENV_BOOTSTRAP})",
    )
    group.addoption(
        "--schema-registry-url",
        default=None,
        metavar="URL",
        help="use this running Schema Registry (Confluent API) instead of starting one "
        f"(env: {ENV_SCHEMA_REGISTRY})",
    )
    group.addoption(
        "--eventwire-strict",
        action="store_true",
        default=False,
        help="fail instead of skip when Kafka, PostgreSQL or the librdkafka mock cannot run "
        f"here (env: {STRICT_ENV}=1)",
    )


_strict = False


def pytest_configure(config: pytest.Config) -> None:
    """Register the ``kafka`` and ``cluster3`` markers; read the strict switch."""
    global _strict  # noqa: PLW0603 - read at collection time too, where no config is at hand
    try:
        _strict = bool(config.getoption("--eventwire-strict")) or strict_from_env()
    except ValueError as exc:  # a typo in EVENTWIRE_DEVKIT_STRICT
        raise pytest.UsageError(str(exc)) from None
    config.addinivalue_line("markers", "kafka: needs a real Apache Kafka broker")
    config.addinivalue_line("markers", "cluster3: needs the 3-node local Kafka cluster")
    config.addinivalue_line("markers", "schema_registry: needs a real Schema Registry")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark tests that use the fixtures with ``kafka`` / ``cluster3`` / ``schema_registry``."""
    for item in items:
        names = set(getattr(item, "fixturenames", ()))
        if names & (_KAFKA_FIXTURES | _CLUSTER3_FIXTURES):
            item.add_marker(pytest.mark.kafka)
        if names & _CLUSTER3_FIXTURES:
            item.add_marker(pytest.mark.cluster3)
        if names & _REGISTRY_FIXTURES:
            item.add_marker(pytest.mark.schema_registry)


def strict() -> bool:
    """Return True in strict mode (fail, never skip, for a missing resource).

    That is ``--eventwire-strict``, ``EVENTWIRE_DEVKIT_STRICT=1``, or ``CI=true`` without
    ``EVENTWIRE_DEVKIT_STRICT=0``.
    """
    return _strict or strict_from_env()


def unavailable(reason: str) -> NoReturn:
    """Skip the test (or module, at import time) for ``reason``; fail instead in strict mode.

    For a resource the test cannot do without (a broker, PostgreSQL, the librdkafka mock)::

        try:
            server.start()
        except PostgresUnavailableError as exc:
            unavailable(f"PostgreSQL unavailable: {exc}")
    """
    if strict():
        pytest.fail(f"{reason}\n(strict mode: failing instead of skipping)", pytrace=False)
    # the whole reason on one line: its first line alone is often "...failed:" (the cause
    # follows it)
    pytest.skip(" ".join(reason.split()) or "unavailable", allow_module_level=True)


def _external_bootstrap(config: pytest.Config) -> str | None:
    value = config.getoption("--kafka-bootstrap") or os.environ.get(ENV_BOOTSTRAP, "")
    return str(value).strip() or None


def _topic_name(test_name: str) -> str:
    safe = re.sub(r"[^A-Za-z0-9._-]+", "-", test_name).strip("-.")[:180]
    return f"t-{safe}-{uuid.uuid4().hex[:8]}"


def _run_cluster(
    config: pytest.Config,
    nodes: int,
    overrides: dict[str, str] | None = None,
    security: str = "plaintext",
) -> Iterator[LocalKafkaCluster]:
    external = _external_bootstrap(config)
    if external is not None:  # a choice, not a failure: a skip even in strict mode
        pytest.skip(
            f"needs a local {nodes}-node cluster it can inject faults into, but an external "
            f"cluster is configured ({external})"
        )
    from eventwire_devkit._kafka.runtime import jvm_pids_of  # noqa: PLC0415
    from eventwire_devkit.kafka import KafkaClusterError, LocalKafkaCluster  # noqa: PLC0415

    cluster = LocalKafkaCluster(nodes, broker_overrides=overrides, security=security)
    failure = None
    try:
        cluster.start()
    except KafkaClusterError as exc:
        failure = f"could not start a local {nodes}-node {security} Kafka cluster: {exc}"
    if failure is not None:
        unavailable(failure)
    _RUNNING[cluster.bootstrap_servers] = cluster
    try:
        yield cluster
    finally:
        _RUNNING.pop(cluster.bootstrap_servers, None)
        cluster.close()
        if cluster.data_dir is not None:
            leftover = jvm_pids_of(cluster.data_dir)
            assert not leftover, f"Kafka JVMs {leftover} outlived cluster.close()"


@pytest.fixture(scope="session")
def kafka_jars() -> Path:
    """Directory of the Kafka jars; skips (fails in strict mode) without Java or the jars.

    For tests that build their own :class:`~eventwire_devkit.kafka.LocalKafkaCluster`.
    """
    from eventwire_devkit._kafka.jars import find_java  # noqa: PLC0415
    from eventwire_devkit.kafka import KafkaClusterError, ensure_kafka_jars  # noqa: PLC0415

    failure = ""
    try:
        find_java()
        return ensure_kafka_jars()
    except KafkaClusterError as exc:
        failure = f"cannot run a local Kafka broker: {exc}"
    unavailable(failure)


@pytest.fixture(scope="session")
def kafka_cluster(request: pytest.FixtureRequest) -> Iterator[LocalKafkaCluster]:
    """Session-wide 1-node local Kafka cluster (skips with an external cluster)."""
    yield from _run_cluster(request.config, 1)


@pytest.fixture(scope="session")
def kafka_cluster3(request: pytest.FixtureRequest) -> Iterator[LocalKafkaCluster]:
    """Session-wide 3-node local Kafka cluster for fault injection (RF 3, min ISR 2)."""
    yield from _run_cluster(request.config, 3, CLUSTER3_OVERRIDES)


@pytest.fixture(scope="session")
def kafka_secure_cluster(request: pytest.FixtureRequest) -> Iterator[LocalKafkaCluster]:
    """Session-wide 1-node ``security="sasl_ssl"`` cluster (users, ACLs, client configs)."""
    yield from _run_cluster(request.config, 1, security="sasl_ssl")


@pytest.fixture(scope="session")
def kafka_secure_cluster3(request: pytest.FixtureRequest) -> Iterator[LocalKafkaCluster]:
    """Session-wide 3-node ``security="sasl_ssl"`` cluster (RF 3, min ISR 2).

    With the fault-detection settings of ``kafka_cluster3`` (:data:`CLUSTER3_OVERRIDES`),
    so a fault test behaves the same on both.
    """
    yield from _run_cluster(request.config, 3, CLUSTER3_OVERRIDES, security="sasl_ssl")


@pytest.fixture(scope="session")
def kafka_bootstrap(request: pytest.FixtureRequest) -> str:
    """Bootstrap servers: the external cluster if configured, else the 1-node cluster's."""
    external = _external_bootstrap(request.config)
    if external is not None:
        return external
    cluster: LocalKafkaCluster = request.getfixturevalue("kafka_cluster")
    return cluster.bootstrap_servers


@pytest.fixture(scope="session")
def _eventwire_kafka_admin(request: pytest.FixtureRequest, kafka_bootstrap: str) -> Any:
    from confluent_kafka import KafkaException  # noqa: PLC0415

    from eventwire_devkit._kafka.admin import broker_ids, new_admin  # noqa: PLC0415

    admin = new_admin(kafka_bootstrap)
    external = _external_bootstrap(request.config)
    if external is not None:
        # Asked once per session: an unreachable cluster fails every test at once (this
        # error is cached for the session), instead of a 30 s topic creation in each.
        try:
            broker_ids(admin, timeout=10.0)
        except KafkaException as exc:
            pytest.fail(
                f"the external Kafka cluster {external} (--kafka-bootstrap or "
                f"{ENV_BOOTSTRAP}) did not answer a Metadata request within 10 s: "
                f"{exc.args[0] if exc.args else exc}",
                pytrace=False,
            )
    return admin


@pytest.fixture
def kafka_topic(
    request: pytest.FixtureRequest, kafka_bootstrap: str, _eventwire_kafka_admin: Any
) -> Iterator[str]:
    """A fresh 3-partition topic on ``kafka_bootstrap`` (broker-default RF), deleted after."""
    from eventwire_devkit._kafka import admin  # noqa: PLC0415
    from eventwire_devkit.kafka import KafkaClusterError  # noqa: PLC0415

    name = _topic_name(request.node.name)
    # a local cluster the plugin runs (not an external one, nor a project's own
    # kafka_bootstrap): heal what an earlier test left before making the topic
    serving = _RUNNING.get(kafka_bootstrap)
    try:
        if serving is not None:
            serving.heal()
        admin.create_topic(_eventwire_kafka_admin, name, 3, -1, config=None, timeout=30.0)
    except KafkaClusterError as exc:
        pytest.fail(f"could not create topic {name}: {exc}", pytrace=False)
    yield name
    # This teardown runs before _eventwire_heal_local_clusters': heal first, or the
    # deletion retries for 10 s against the node this test stopped or paused, and fails.
    with contextlib.suppress(KafkaClusterError):  # best effort
        if serving is not None:
            serving.heal()
        admin.delete_topic(_eventwire_kafka_admin, name, timeout=10.0)


@pytest.fixture
def kafka_topic3(
    request: pytest.FixtureRequest, kafka_cluster3: LocalKafkaCluster
) -> Iterator[str]:
    """A fresh 3-partition RF-3 topic on a healed ``kafka_cluster3``, deleted after."""
    from eventwire_devkit.kafka import KafkaClusterError  # noqa: PLC0415

    name = _topic_name(request.node.name)
    try:
        kafka_cluster3.heal()
        kafka_cluster3.create_topic(name, partitions=3, replication_factor=3)
    except KafkaClusterError as exc:
        pytest.fail(f"could not prepare topic {name} on the 3-node cluster: {exc}", pytrace=False)
    yield name
    try:
        kafka_cluster3.heal()
        kafka_cluster3.delete_topic(name, timeout=10.0)
    except KafkaClusterError:
        pass  # best effort


@pytest.fixture(autouse=True)
def _eventwire_heal_local_clusters(request: pytest.FixtureRequest) -> Iterator[None]:
    """After a test that requested a local cluster fixture: heal the clusters it used.

    A fault the test left (a node it stopped and never restarted, say because it failed
    first) would otherwise break every later test on that session-wide cluster.
    """
    yield
    for name in _LOCAL_CLUSTERS & set(request.fixturenames):
        with contextlib.suppress(Exception):  # not started (skipped), or not healable
            cluster: LocalKafkaCluster = request.getfixturevalue(name)
            cluster.heal()


#: The local clusters this plugin started and that still run, by bootstrap servers.
_RUNNING: dict[str, LocalKafkaCluster] = {}

_LOCAL_CLUSTERS = frozenset(
    {"kafka_cluster", "kafka_cluster3", "kafka_secure_cluster", "kafka_secure_cluster3"}
)


# -- Schema Registry ---------------------------------------------------------------------------


@pytest.fixture(scope="session")
def schema_registry_build() -> Path:
    """Directory of the built local registry; skips (fails in strict mode) without Java/Maven."""
    from eventwire_devkit.registry import LocalRegistryError, ensure_registry_build  # noqa: PLC0415

    failure = ""
    try:
        return ensure_registry_build()
    except LocalRegistryError as exc:
        failure = f"cannot run a local Schema Registry: {exc}"
    unavailable(failure)


def _start_registry(build: Path) -> LocalSchemaRegistry:
    from eventwire_devkit.registry import LocalRegistryError, LocalSchemaRegistry  # noqa: PLC0415

    registry = LocalSchemaRegistry()
    failure = ""
    try:
        return registry.start()
    except LocalRegistryError as exc:
        failure = f"could not start a local Schema Registry (built in {build}): {exc}"
    unavailable(failure)


@pytest.fixture(scope="session")
def schema_registry(request: pytest.FixtureRequest) -> Iterator[str]:
    """URL of the Confluent-compatible API of a session-wide registry (or the external one)."""
    external = request.config.getoption("--schema-registry-url") or os.environ.get(
        ENV_SCHEMA_REGISTRY, ""
    )
    if str(external).strip():
        yield str(external).strip().rstrip("/")
        return
    registry = _start_registry(request.getfixturevalue("schema_registry_build"))
    try:
        yield registry.url
    finally:
        registry.close()


@pytest.fixture
def local_schema_registry(schema_registry_build: Path) -> Iterator[LocalSchemaRegistry]:
    """A fresh registry of this test's own (about 2.5 s to start), which it may stop or kill."""
    registry = _start_registry(schema_registry_build)
    try:
        yield registry
    finally:
        registry.close()
