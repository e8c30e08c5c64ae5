"""eventwire against a secured Kafka: SASL_SSL, SCRAM-SHA-512/PLAIN/OAUTHBEARER and ACLs.

Every test runs against the devkit's ``LocalKafkaCluster(security="sasl_ssl")`` (one session
cluster; 3 nodes for one publish-and-read-back) and asserts what a user sees: a delivery
read back by an independent consumer, or the typed error, how fast it surfaces and its text.
Each failure case prints ``[case] surfaced in X s: <text>``. Every test also checks that no
password appears in anything it emitted: log records (root and ``eventwire`` loggers, at
DEBUG), stdout/stderr, and the reprs and exception texts it collected.
"""

from __future__ import annotations

import base64
import contextlib
import itertools
import json
import logging
import os
import sqlite3
import subprocess
import sys
import time
import traceback
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec
import pytest

from eventwire import (
    AuthenticationError,
    BrokerUnavailableError,
    DeliveryError,
    ErrorClass,
    KafkaConfig,
    Publisher,
    Route,
    TLSError,
)
from eventwire.outbox import SQLiteOutbox
from eventwire_devkit.consume import read_topic
from eventwire_devkit.kafka import ALLOWED_TOPIC_PREFIX, LocalKafkaCluster

CONNECT_TIMEOUT = 10.0
WRONG_PASSWORD = f"wrong-{uuid.uuid4().hex}"


class Placed(msgspec.Struct, frozen=True):
    order_id: str
    n: int


def routes(topic: str) -> dict[type, Route]:
    return {Placed: Route(topic=topic, key="order_id", type_name="test.Placed")}


@dataclass
class Emitted:
    """Everything a test showed a user, grepped for secrets at teardown."""

    texts: list[str] = field(default_factory=list)
    #: The log records captured so far (messages and record dicts).
    logs: list[str] = field(default_factory=list)

    def add(self, *items: object) -> None:
        for item in items:
            self.texts.append(item if isinstance(item, str) else repr(item))

    def add_exception(self, exc: BaseException) -> None:
        self.texts += [str(exc), repr(exc), *traceback.format_exception(exc)]


class _Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())
        self.lines.append(repr(vars(record)))
        self.lines.append(logging.Formatter().format(record))


def report(case: str, seconds: float, text: str) -> None:
    """Print the time-to-surface and the text a user sees (the numbers of the issue's note)."""
    print(f"\n[{case}] surfaced in {seconds:.2f} s: {text}")


@pytest.fixture
def emitted(
    kafka_secure_cluster: LocalKafkaCluster, capfd: pytest.CaptureFixture[str]
) -> Iterator[Emitted]:
    """Capture every log record at DEBUG and the process's stdout/stderr; grep them after."""
    capture = _Capture()
    loggers = [logging.getLogger(), logging.getLogger("eventwire")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.addHandler(capture)
        lg.setLevel(logging.DEBUG)
    found = Emitted(logs=capture.lines)
    try:
        yield found
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.removeHandler(capture)
            lg.setLevel(level)
        out, err = capfd.readouterr()
    secrets = [WRONG_PASSWORD] + [kafka_secure_cluster.password(p) for p in ("admin", "producer")]
    everything = [*capture.lines, out, err, *found.texts]
    leaks = [text[:300] for text in everything for s in secrets if s in text]
    assert not leaks, f"a password appeared in what was emitted: {leaks}"


@pytest.fixture
def allowed_topic(kafka_secure_cluster: LocalKafkaCluster, request: pytest.FixtureRequest) -> str:
    """A fresh 3-partition topic the ``producer`` principal may write to."""
    name = f"{ALLOWED_TOPIC_PREFIX}{request.node.name[:60]}-{uuid.uuid4().hex[:8]}"
    name = "".join(c if c.isalnum() or c in "._-" else "-" for c in name)
    return kafka_secure_cluster.create_topic(name, partitions=3)


def secured(cluster: LocalKafkaCluster, **fields: Any) -> KafkaConfig:
    """A KafkaConfig as the producer over SCRAM-SHA-512, with ``fields`` changed."""
    props = cluster.client_properties("producer")
    args: dict[str, Any] = {
        "bootstrap_servers": props["bootstrap.servers"],
        "security_protocol": "SASL_SSL",
        "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_username": "producer",
        "sasl_password": props["sasl.password"],
        "ssl_ca_location": props["ssl.ca.location"],
    }
    args.update(fields)
    return KafkaConfig(**args)


def read_back(cluster: LocalKafkaCluster, topic: str, expected: int) -> list[int]:
    """The ``n`` of every record in ``topic``, read by an independent consumer as admin."""
    records = read_topic(
        cluster.bootstrap_servers,
        topic,
        expected=expected,
        timeout=60,
        idle=0.5,
        config=cluster.client_properties("admin"),
    )
    return sorted(json.loads(r.value)["n"] for r in records)


def publish_and_read_back(
    cluster: LocalKafkaCluster, config: KafkaConfig, topic: str, emitted: Emitted, n: int = 20
) -> None:
    with Publisher(config=config, routes=routes(topic), connect_timeout=CONNECT_TIMEOUT) as pub:
        emitted.add(pub, config, config.redacted())
        handles = [pub.publish(Placed(order_id=f"o{i % 5}", n=i)) for i in range(n)]
        results = [h.result(30) for h in handles]
    emitted.add(*results)
    assert {r.topic for r in results} == {topic}
    assert read_back(cluster, topic, n) == list(range(n))


def start_failure(config: KafkaConfig, topic: str, emitted: Emitted) -> tuple[Exception, float]:
    """Open a publisher that must fail its start-up check; the error and how long it took."""
    began = time.monotonic()
    with pytest.raises(BrokerUnavailableError) as caught:
        Publisher(config=config, routes=routes(topic), connect_timeout=CONNECT_TIMEOUT)
    elapsed = time.monotonic() - began
    emitted.add(config)
    emitted.add_exception(caught.value)
    return caught.value, elapsed


def _b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def unsecured_token(sub: str, lifetime_s: float) -> tuple[str, float]:
    """An ``alg: none`` JWS with ``sub`` and ``exp``, as Kafka's unsecured validator accepts."""
    now = time.time()
    expiry = now + lifetime_s
    # exp to the millisecond: with whole seconds and a lifetime under ~20 s, librdkafka
    # re-authenticates (at 90% of the broker's session) before it refreshes the token
    # (at 80% of the lifetime, on a 1 s timer), and its next re-authentication is refused.
    claims = {"sub": sub, "iat": int(now), "exp": round(expiry, 3)}
    return f"{_b64({'alg': 'none'})}.{_b64(claims)}.", expiry


class TokenProvider:
    """An ``oauth_cb`` that hands out unsecured tokens and records when it was called."""

    def __init__(self, sub: str, lifetime_s: float) -> None:
        self.sub = sub
        self.lifetime_s = lifetime_s
        self.calls: list[float] = []

    def __call__(self, oauthbearer_config: str) -> tuple[str, float]:
        self.calls.append(time.monotonic())
        return unsecured_token(self.sub, self.lifetime_s)


def oauth_config(cluster: LocalKafkaCluster, oauth_cb: Callable[[str], Any]) -> KafkaConfig:
    return KafkaConfig(
        cluster.bootstrap_servers,
        security_protocol="SASL_SSL",
        sasl_mechanism="OAUTHBEARER",
        ssl_ca_location=str(cluster.ca_location),
        overrides={"oauth_cb": oauth_cb},
    )


class TestRightCredentials:
    def test_scram_sha_512_publishes_and_an_independent_consumer_reads_it_back(
        self, kafka_secure_cluster: LocalKafkaCluster, allowed_topic: str, emitted: Emitted
    ) -> None:
        """The producer's SCRAM-SHA-512 config file (KafkaConfig.from_file) publishes 20 events that are all read back."""
        config = KafkaConfig.from_file(kafka_secure_cluster.client_config("producer"))
        publish_and_read_back(kafka_secure_cluster, config, allowed_topic, emitted)

    def test_plain_publishes_and_an_independent_consumer_reads_it_back(
        self, kafka_secure_cluster: LocalKafkaCluster, allowed_topic: str, emitted: Emitted
    ) -> None:
        """The producer over SASL/PLAIN (KafkaConfig built in code) publishes 20 events that are all read back."""
        config = secured(kafka_secure_cluster, sasl_mechanism="PLAIN")
        publish_and_read_back(kafka_secure_cluster, config, allowed_topic, emitted)

    def test_three_nodes_publish_and_read_back(
        self, kafka_secure_cluster3: LocalKafkaCluster, emitted: Emitted
    ) -> None:
        """On 3 secured nodes (inter-broker SASL_SSL), 200 events to an RF-3 topic are all read back."""
        topic = f"{ALLOWED_TOPIC_PREFIX}three-{uuid.uuid4().hex[:8]}"
        kafka_secure_cluster3.create_topic(topic, partitions=3, replication_factor=3)
        assert kafka_secure_cluster3.isr_of(topic, 0) == [1, 2, 3]
        config = KafkaConfig.from_file(kafka_secure_cluster3.client_config("producer"))
        publish_and_read_back(kafka_secure_cluster3, config, topic, emitted, n=200)


class TestConnectionFailures:
    @pytest.mark.parametrize("mechanism", ["SCRAM-SHA-512", "PLAIN"])
    def test_wrong_password_raises_authentication_error_naming_mechanism_and_broker(
        self,
        kafka_secure_cluster: LocalKafkaCluster,
        allowed_topic: str,
        emitted: Emitted,
        mechanism: str,
    ) -> None:
        """A wrong password raises AuthenticationError naming the mechanism and the broker within connect_timeout."""
        config = secured(
            kafka_secure_cluster, sasl_mechanism=mechanism, sasl_password=WRONG_PASSWORD
        )
        exc, elapsed = start_failure(config, allowed_topic, emitted)
        report(f"wrong password, {mechanism}", elapsed, str(exc))
        assert isinstance(exc, AuthenticationError)
        assert elapsed < CONNECT_TIMEOUT
        assert mechanism in str(exc)
        assert kafka_secure_cluster.bootstrap_servers in str(exc)
        assert exc.mechanism == mechanism
        assert exc.username == "producer"

    def test_untrusted_ca_raises_a_tls_error(
        self, kafka_secure_cluster: LocalKafkaCluster, allowed_topic: str, emitted: Emitted
    ) -> None:
        """A client trusting another CA gets a TLSError saying the certificate was not verified."""
        ca = str(kafka_secure_cluster.untrusted_ca_location)
        exc, elapsed = start_failure(
            secured(kafka_secure_cluster, ssl_ca_location=ca), allowed_topic, emitted
        )
        report("untrusted CA", elapsed, str(exc))
        assert isinstance(exc, TLSError)
        assert elapsed < CONNECT_TIMEOUT
        assert "certificate verify failed" in str(exc)
        assert "ssl_ca_location" in str(exc)

    def test_hostname_mismatch_raises_a_tls_error(
        self, kafka_secure_cluster: LocalKafkaCluster, allowed_topic: str, emitted: Emitted
    ) -> None:
        """Connecting by 127.0.0.1 to a certificate that names only localhost gives a TLSError naming that host."""
        bootstrap = kafka_secure_cluster.bootstrap_servers.replace("localhost", "127.0.0.1")
        config = secured(
            kafka_secure_cluster,
            bootstrap_servers=bootstrap,
            overrides={"ssl.endpoint.identification.algorithm": "https"},
        )
        exc, elapsed = start_failure(config, allowed_topic, emitted)
        report("hostname mismatch", elapsed, str(exc))
        assert isinstance(exc, TLSError)
        assert elapsed < CONNECT_TIMEOUT
        assert "127.0.0.1" in str(exc)
        assert "does not name the host" in str(exc)

    @pytest.mark.parametrize("protocol", ["PLAINTEXT", "SASL_PLAINTEXT"])
    def test_plaintext_client_on_the_tls_port_gets_a_clear_error(
        self,
        kafka_secure_cluster: LocalKafkaCluster,
        allowed_topic: str,
        emitted: Emitted,
        protocol: str,
    ) -> None:
        """A client speaking plaintext to the TLS port gets a TLSError that says to use TLS."""
        if protocol == "PLAINTEXT":
            config = KafkaConfig(kafka_secure_cluster.bootstrap_servers)
        else:
            config = secured(kafka_secure_cluster, security_protocol=protocol)
        exc, elapsed = start_failure(config, allowed_topic, emitted)
        report(f"{protocol} client on the TLS port", elapsed, str(exc))
        assert isinstance(exc, TLSError)
        assert elapsed < CONNECT_TIMEOUT
        assert "expects TLS" in str(exc)


class TestAuthorization:
    def _fails_at_once(self, config: KafkaConfig, topic: str, emitted: Emitted, case: str) -> None:
        began = time.monotonic()  # from the publisher's creation: its start-up check included
        pub = Publisher(config=config, routes=routes(topic), connect_timeout=CONNECT_TIMEOUT)
        emitted.add(pub, config)
        try:
            # Refused in the delivery report, or at once by produce() when the producer's
            # metadata already says the topic is not authorized (a timing race): either
            # way a permanent DeliveryError, the same failure.
            with pytest.raises(DeliveryError) as caught:
                pub.publish(Placed(order_id="o1", n=1)).result(30)
            elapsed = time.monotonic() - began
        finally:
            with contextlib.suppress(DeliveryError):
                pub.close(10)
        emitted.add_exception(caught.value)
        report(case, elapsed, str(caught.value))
        (failure,) = caught.value.failures
        assert failure.code == "TOPIC_AUTHORIZATION_FAILED"
        assert failure.error_class is ErrorClass.PERMANENT
        assert "TOPIC_AUTHORIZATION_FAILED" in str(caught.value)
        assert elapsed < 5.0

    def test_topic_outside_the_producers_acl_fails_at_once_as_permanent(
        self, kafka_secure_cluster: LocalKafkaCluster, emitted: Emitted
    ) -> None:
        """An event to a topic outside the producer's prefix ACL fails within 5 s, permanent, TOPIC_AUTHORIZATION_FAILED."""
        topic = kafka_secure_cluster.create_topic(f"denied.{uuid.uuid4().hex[:8]}", partitions=1)
        config = KafkaConfig.from_file(kafka_secure_cluster.client_config("producer"))
        self._fails_at_once(config, topic, emitted, "topic outside the ACL")

    def test_principal_with_no_rights_fails_at_once_as_permanent(
        self, kafka_secure_cluster: LocalKafkaCluster, allowed_topic: str, emitted: Emitted
    ) -> None:
        """A principal with no ACL at all gets the same: fails within 5 s, permanent, TOPIC_AUTHORIZATION_FAILED."""
        config = KafkaConfig.from_file(kafka_secure_cluster.client_config("nobody"))
        self._fails_at_once(config, allowed_topic, emitted, "no rights at all")


class TestOAuthBearer:
    def test_oauth_cb_token_provider_publishes(
        self, kafka_secure_cluster: LocalKafkaCluster, allowed_topic: str, emitted: Emitted
    ) -> None:
        """An oauth_cb handing out unsecured JWS tokens for sub=producer publishes 20 events that are read back."""
        provider = TokenProvider("producer", lifetime_s=300)
        config = oauth_config(kafka_secure_cluster, provider)
        publish_and_read_back(kafka_secure_cluster, config, allowed_topic, emitted)
        assert provider.calls

    def test_expiring_token_is_refreshed_and_publishing_goes_on(
        self, kafka_secure_cluster: LocalKafkaCluster, allowed_topic: str, emitted: Emitted
    ) -> None:
        """An 8-second token is fetched again before it expires, the broker re-authenticates the connection, and publishing goes on without an error."""
        provider = TokenProvider("producer", lifetime_s=8)
        config = oauth_config(kafka_secure_cluster, provider)
        sent = 0
        with Publisher(
            config=config, routes=routes(allowed_topic), connect_timeout=CONNECT_TIMEOUT
        ) as pub:
            emitted.add(pub, config)
            first = provider.calls[0]
            while time.monotonic() - first < 2.5 * provider.lifetime_s:
                pub.publish(Placed(order_id="o1", n=sent)).result(10)
                sent += 1
                time.sleep(0.25)
        offsets = [round(c - first, 1) for c in provider.calls]
        print(f"\n[expiring token] token fetched at {offsets} s; {sent} events published")
        assert len(provider.calls) >= 3
        assert all(b - a < provider.lifetime_s for a, b in itertools.pairwise(offsets))
        assert not [line for line in emitted.logs if "_AUTHENTICATION" in line]
        assert read_back(kafka_secure_cluster, allowed_topic, sent) == list(range(sent))


class TestSecretsStayHidden:
    def test_no_password_in_reprs_exceptions_logs_or_metric_labels(
        self, kafka_secure_cluster: LocalKafkaCluster, allowed_topic: str, emitted: Emitted
    ) -> None:
        """With right and wrong passwords, no password reaches a repr, exception, log line or Prometheus scrape."""
        from eventwire.observability.prometheus import serve_prometheus

        with serve_prometheus(0) as server:
            good = KafkaConfig.from_file(kafka_secure_cluster.client_config("producer"))
            bad = secured(kafka_secure_cluster, sasl_password=WRONG_PASSWORD)
            emitted.add(good, bad, good.redacted(), bad.redacted())
            with Publisher(
                config=good.with_overrides({"statistics.interval.ms": 200}),
                routes=routes(allowed_topic),
                meter_provider=server.meter_provider,
            ) as pub:
                emitted.add(pub)
                pub.publish(Placed(order_id="o1", n=0)).result(30)
                time.sleep(0.5)  # one statistics round: per-broker gauges with labels
            with pytest.raises(AuthenticationError) as caught:
                Publisher(
                    config=bad,
                    routes=routes(allowed_topic),
                    meter_provider=server.meter_provider,
                    connect_timeout=CONNECT_TIMEOUT,
                )
            emitted.add_exception(caught.value)
            with urllib.request.urlopen(server.url, timeout=10) as resp:
                scrape = resp.read().decode()
        emitted.add(scrape)
        assert "eventwire_events_published_total" in scrape


class TestStandaloneRelay:
    def test_cli_relay_with_a_client_config_drains_a_sqlite_outbox(
        self,
        kafka_secure_cluster: LocalKafkaCluster,
        allowed_topic: str,
        emitted: Emitted,
        tmp_path: Path,
    ) -> None:
        """`eventwire outbox relay --config <producer.properties> --once` moves 50 staged events to the secured cluster."""
        db = tmp_path / "outbox.db"
        store = SQLiteOutbox(db)
        config = kafka_secure_cluster.client_config("producer")
        with Publisher(
            config=KafkaConfig.from_file(config),
            outbox=store,
            relay=False,
            routes=routes(allowed_topic),
        ) as pub:
            conn = sqlite3.connect(db)
            with conn:
                for i in range(50):
                    pub.stage(Placed(order_id=f"o{i % 5}", n=i), connection=conn)
            conn.close()
        env = {k: v for k, v in os.environ.items() if not k.startswith("EVENTWIRE_KAFKA_")}
        cli = [sys.executable, "-m", "eventwire.cli", "outbox", "relay"]
        began = time.monotonic()
        run = subprocess.run(
            [*cli, "--config", str(config), "--sqlite", str(db), "--once"],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
            env={**env, "COLUMNS": "250"},
        )
        emitted.add(run.stdout, run.stderr, " ".join(map(str, run.args)))
        print(f"\n[relay] exit {run.returncode} in {time.monotonic() - began:.1f} s")
        assert run.returncode == 0, run.stdout + run.stderr
        assert read_back(kafka_secure_cluster, allowed_topic, 50) == list(range(50))
