"""Authentication and TLS failures surface as typed errors from the Kafka transport.

No secured broker is needed: librdkafka's mock cluster rejects every SASL client
(``_AUTHENTICATION``), loopback socket servers play a plaintext port and a TLS port
(certificates made with the ``openssl`` command), and a fake error object drives the
error callback for the exact texts a real broker produces.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from eventwire import (
    AuthenticationError,
    BrokerUnavailableError,
    KafkaConfig,
    Publisher,
    Secret,
    TLSError,
)
from eventwire.observability.logging import capture_logs
from eventwire.transports._connect_errors import ConnectErrors
from eventwire.transports.kafka import KafkaTransport, classify_connect_error
from eventwire_devkit.librdkafka import LibrdkafkaTestApiUnavailable, MockCluster

PASSWORD = "Sup3r-Secr3t-PW-7f2c"
DEAD = "127.0.0.1:1"
# What librdkafka reports for a wrong SCRAM password (a real broker's answer).
WRONG_PASSWORD = (
    "sasl_ssl://localhost:9093/bootstrap: SASL authentication error: Authentication failed "
    "during authentication due to invalid credentials with SASL mechanism SCRAM-SHA-512 "
    "(after 306ms in state AUTH_REQ)"
)


class _FakeKafkaError:
    """Quacks like confluent_kafka.KafkaError for the error callback."""

    def __init__(self, name: str, text: str) -> None:
        self._name, self._text = name, text

    def name(self) -> str:
        return self._name

    def str(self) -> str:
        return self._text

    def fatal(self) -> bool:
        return False


def sasl_config(bootstrap: str, **overrides: Any) -> KafkaConfig:
    return KafkaConfig(
        bootstrap,
        security_protocol="SASL_PLAINTEXT",
        sasl_mechanism="SCRAM-SHA-512",
        sasl_username="svc-orders",
        sasl_password=Secret(PASSWORD),
        overrides=overrides,
    )


@contextlib.contextmanager
def transport_of(config: KafkaConfig) -> Iterator[KafkaTransport]:
    transport = KafkaTransport(config, connect_timeout=None)
    try:
        yield transport
    finally:
        transport.close(0)


def assert_no_password(exc: BaseException) -> None:
    assert PASSWORD not in str(exc) and PASSWORD not in repr(exc)
    assert PASSWORD not in repr(vars(exc))


class TestClassification:
    @pytest.mark.parametrize(
        ("code", "text", "expected"),
        [
            ("_AUTHENTICATION", WRONG_PASSWORD, ("auth", True)),
            ("_SSL", "ssl://b:9093/1: SSL handshake failed: certificate verify failed", ("tls", True)),
            (
                "_TRANSPORT",
                "ssl://b:9092/1: SSL handshake failed: Disconnected: SSL connection closed by "
                "peer: connecting to a PLAINTEXT broker listener? (after 1ms in state "
                "SSL_HANDSHAKE)",
                ("tls", False),
            ),
            ("_TRANSPORT", "b:9092/1: Connect to ipv4#1.2.3.4:9092 failed: Connection refused", None),
            ("_ALL_BROKERS_DOWN", "1/1 brokers are down", None),
            ("_RESOLVE", "b:9092/bootstrap: Failed to resolve 'b:9092'", None),
        ],
    )  # fmt: skip
    def test_codes_and_texts(self, code: str, text: str, expected: object) -> None:
        """_AUTHENTICATION is auth, _SSL is TLS, a _TRANSPORT TLS hint is a TLS suspect, else None."""
        assert classify_connect_error(code, text) == expected


class TestTheStartupCheck:
    def test_a_rejected_password_raises_authentication_error_at_once(self) -> None:
        """_AUTHENTICATION -> AuthenticationError naming broker, mechanism and user, not the password."""
        with transport_of(sasl_config(DEAD)) as transport:
            transport._on_error(_FakeKafkaError("_AUTHENTICATION", WRONG_PASSWORD + PASSWORD))
            started = time.monotonic()
            with pytest.raises(AuthenticationError) as raised:
                transport.check_connection(30)
            assert time.monotonic() - started < 10  # not the 30 s timeout
        error = raised.value
        assert isinstance(error, BrokerUnavailableError)
        assert error.broker == "sasl_ssl://localhost:9093/bootstrap"
        assert error.mechanism == "SCRAM-SHA-512" and error.username == "svc-orders"
        text = str(error)
        assert text.startswith(
            "Kafka broker sasl_ssl://localhost:9093/bootstrap rejected SASL SCRAM-SHA-512 "
            "authentication as user 'svc-orders': SASL authentication error: Authentication "
            "failed during authentication due to invalid credentials"
        )
        assert "sasl_password" in text  # what to fix
        assert_no_password(error)

    def test_an_untrusted_certificate_raises_tls_error_at_once(self) -> None:
        """_SSL certificate verify failed -> TLSError naming the broker, the CA and the host name."""
        reason = (
            "ssl://b1:9093/bootstrap: SSL handshake failed: error:0A000086:SSL routines::"
            "certificate verify failed: broker certificate could not be verified, verify that "
            "ssl.ca.location is correctly configured (after 2ms in state SSL_HANDSHAKE)"
        )
        with transport_of(KafkaConfig(DEAD, security_protocol="SSL")) as transport:
            transport._on_error(_FakeKafkaError("_SSL", reason))
            with pytest.raises(TLSError) as raised:
                transport.check_connection(30)
        assert raised.value.broker == "ssl://b1:9093/bootstrap"
        assert str(raised.value).startswith("TLS with Kafka broker ssl://b1:9093/bootstrap failed")
        assert "ssl_ca_location" in str(raised.value) and "host name" in str(raised.value)

    def test_a_later_check_ignores_errors_from_before_it(self) -> None:
        """A probe after the password was fixed is not failed by the old _AUTHENTICATION."""
        with transport_of(sasl_config(DEAD)) as transport:
            transport._on_error(_FakeKafkaError("_AUTHENTICATION", WRONG_PASSWORD))
            with pytest.raises(AuthenticationError):
                transport.check_connection(5)
            with pytest.raises(BrokerUnavailableError) as later:
                transport.check_connection(0.5)
        assert type(later.value) is BrokerUnavailableError

    def test_a_broker_hanging_up_on_a_client_without_sasl_says_sasl_is_required(self) -> None:
        """Closed right after each connection came UP: at the timeout, AuthenticationError naming SASL."""
        line = (
            "FAIL [eventwire#producer-1] [thrd:ssl://b1:9093/bootstrap]: ssl://b1:9093/bootstrap:"
            " Disconnected: SSL connection closed by peer (after 0ms in state UP)"
        )
        errors = ConnectErrors(KafkaConfig(DEAD, security_protocol="SSL").to_librdkafka())
        for _ in range(3):
            errors.note_fail_line(line)
        assert errors.failure(errors.created_at, DEAD, final=False) is None  # not before the end
        raised = errors.failure(errors.created_at, DEAD, final=True)
        assert isinstance(raised, AuthenticationError)
        assert raised.mechanism is None and raised.broker == "ssl://b1:9093/bootstrap"
        assert "most likely requires SASL authentication" in str(raised)
        assert "Set security_protocol to SASL_SSL" in str(raised)

    def test_an_unreachable_broker_is_still_broker_unavailable(self) -> None:
        """Nothing listening: the plain BrokerUnavailableError after the timeout."""
        with transport_of(KafkaConfig(DEAD)) as transport:
            with pytest.raises(BrokerUnavailableError) as raised:
                transport.check_connection(1)
        assert type(raised.value) is BrokerUnavailableError
        assert "no Kafka broker at '127.0.0.1:1' answered within 1s" in str(raised.value)


class TestWhilePublishing:
    def test_auth_errors_reach_the_listeners_and_are_logged_once(self) -> None:
        """After start, each _AUTHENTICATION goes to the error listeners; the log has one line."""
        heard: list[tuple[str, str]] = []
        with transport_of(sasl_config(DEAD)) as transport, capture_logs() as logs:
            transport.on_error(lambda code, reason: heard.append((code, reason)))
            for _ in range(5):
                transport._on_error(_FakeKafkaError("_AUTHENTICATION", WRONG_PASSWORD + PASSWORD))
        # (the dead address adds its own _TRANSPORT errors)
        auth = [reason for code, reason in heard if code == "_AUTHENTICATION"]
        assert len(auth) == 5
        assert all(PASSWORD not in reason for reason in auth)
        lines = [e for e in logs if e["event"] == "kafka_error" and e["code"] == "_AUTHENTICATION"]
        assert len(lines) == 1 and PASSWORD not in lines[0]["reason"]


# -- against real librdkafka connections -------------------------------------------------


def test_the_mock_cluster_rejecting_sasl_raises_authentication_error() -> None:
    """A SASL client against librdkafka's mock cluster: Publisher() raises AuthenticationError."""
    try:
        mock = MockCluster()
    except LibrdkafkaTestApiUnavailable as exc:
        pytest.skip(f"librdkafka's test API is unavailable: {exc}")
    with mock:
        bootstrap = mock.bootstrap_servers
        started = time.monotonic()
        with pytest.raises(AuthenticationError) as raised:
            Publisher(config=sasl_config(bootstrap), connect_timeout=30)
        assert time.monotonic() - started < 10  # well within connect_timeout
    assert raised.value.mechanism == "SCRAM-SHA-512"
    assert "as user 'svc-orders'" in str(raised.value)
    assert raised.value.broker == f"sasl_plaintext://{bootstrap}/bootstrap"
    assert_no_password(raised.value)


@contextlib.contextmanager
def loopback_server(handle: Any) -> Iterator[int]:
    """A TCP server on 127.0.0.1 calling ``handle(conn)`` per connection; yields its port."""
    server = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except OSError:
                return
            threading.Thread(target=_guarded, args=(handle, conn), daemon=True).start()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield server.getsockname()[1]
    finally:
        stop.set()
        server.close()


def _guarded(handle: Any, conn: socket.socket) -> None:
    with contextlib.suppress(OSError), conn:
        handle(conn)


def read_then_close(conn: socket.socket) -> None:
    """A port that is not what the client expects: it reads the first bytes and hangs up."""
    conn.recv(4096)
    conn.shutdown(socket.SHUT_RDWR)


class TestLoopbackListeners:
    def test_a_tls_client_on_a_plaintext_port_raises_tls_error(self) -> None:
        """security_protocol=SSL against a port that does not speak TLS: TLSError, fast."""
        with loopback_server(read_then_close) as port:
            started = time.monotonic()
            with pytest.raises(TLSError) as raised:
                KafkaTransport(KafkaConfig(f"127.0.0.1:{port}", security_protocol="SSL"))
            assert time.monotonic() - started < 8  # not the 10 s connect_timeout
        assert "PLAINTEXT broker listener?" in raised.value.reason
        assert "use the broker's TLS port" in str(raised.value)

    def test_a_plaintext_client_on_a_port_that_hangs_up_raises_tls_error(self) -> None:
        """Plaintext against a port that drops every first request (a TLS port): TLSError."""
        with loopback_server(read_then_close) as port:
            with pytest.raises(TLSError) as raised:
                KafkaTransport(KafkaConfig(f"127.0.0.1:{port}"), connect_timeout=5)
        assert "in state APIVERSION_QUERY" in raised.value.reason
        assert "expects TLS" in str(raised.value) and "SASL_SSL" in str(raised.value)


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A CA and a server certificate for ``localhost`` only, made with the openssl command."""
    if shutil.which("openssl") is None:
        pytest.skip("the openssl command is not installed")
    d = tmp_path_factory.mktemp("tls")

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=d, check=True, capture_output=True)

    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key",
            "-out", "ca.pem", "-days", "2", "-subj", "/CN=eventwire-test-ca")  # fmt: skip
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key",
            "-out", "server.csr", "-subj", "/CN=localhost")  # fmt: skip
    (d / "ext.cnf").write_text("subjectAltName=DNS:localhost\n")
    openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
            "-CAcreateserial", "-out", "server.pem", "-days", "2", "-extfile", "ext.cnf")  # fmt: skip
    return d


@pytest.fixture
def tls_port(certificates: Path) -> Iterator[int]:
    """A TLS server (certificate for localhost, signed by the test CA) that says nothing."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(certificates / "server.pem", certificates / "server.key")

    def handshake(conn: socket.socket) -> None:
        with context.wrap_socket(conn, server_side=True) as tls:
            tls.recv(100)

    with loopback_server(handshake) as port:
        yield port


class TestATLSListener:
    def test_an_untrusted_ca_raises_tls_error(self, tls_port: int) -> None:
        """The broker's CA is not trusted: TLSError naming ssl_ca_location."""
        with pytest.raises(TLSError) as raised:
            KafkaTransport(KafkaConfig(f"localhost:{tls_port}", security_protocol="SSL"))
        assert "certificate verify failed" in raised.value.reason
        assert "ssl_ca_location" in str(raised.value)

    def test_a_hostname_mismatch_raises_tls_error(self, tls_port: int, certificates: Path) -> None:
        """Trusted CA, but the certificate does not name 127.0.0.1: TLSError naming the host."""
        config = KafkaConfig(
            f"127.0.0.1:{tls_port}",
            security_protocol="SSL",
            ssl_ca_location=str(certificates / "ca.pem"),
        )
        with pytest.raises(TLSError) as raised:
            KafkaTransport(config)
        assert "certificate verify failed" in raised.value.reason
        assert "does not name the host in bootstrap_servers" in str(raised.value)

    def test_the_right_ca_and_host_get_past_tls(self, tls_port: int, certificates: Path) -> None:
        """Control: trusted CA and matching host raise no TLSError (the server is not Kafka)."""
        config = KafkaConfig(
            f"localhost:{tls_port}",
            security_protocol="SSL",
            ssl_ca_location=str(certificates / "ca.pem"),
        )
        with pytest.raises(BrokerUnavailableError) as raised:
            KafkaTransport(config, connect_timeout=2)
        assert not isinstance(raised.value, TLSError | AuthenticationError)

    def test_a_plaintext_client_on_the_tls_port_raises_tls_error(self, tls_port: int) -> None:
        """Plaintext against the TLS port: TLSError saying the port expects TLS."""
        with pytest.raises(TLSError) as raised:
            KafkaTransport(KafkaConfig(f"127.0.0.1:{tls_port}"), connect_timeout=5)
        assert "expects TLS" in str(raised.value)
