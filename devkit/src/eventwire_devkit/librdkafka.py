"""Fault injection through the bundled librdkafka's test-only C API (ctypes).

confluent-kafka offers no way to make a broker fail on purpose. The librdkafka
its wheel bundles (``confluent_kafka.libs/librdkafka*.so*``) does: an in-process
mock Kafka cluster (``rd_kafka_mock_*``) whose brokers can return chosen error
codes, go down, or answer slowly, and ``rd_kafka_test_fatal_error()``, which
raises a real fatal error in a running producer. This module binds the few
functions eventwire's tests need::

    with MockCluster() as mock:
        mock.create_topic("orders", partitions=1)
        mock.push_request_errors(ApiKey.PRODUCE, ErrorCode.NOT_ENOUGH_REPLICAS)
        with Publisher(mock.bootstrap_servers) as publisher:
            publisher.publish(order).result(5)  # librdkafka retried it

Promises:
    * It never imports ``confluent_kafka``. It loads the very file that
      confluent-kafka's ``cimpl`` extension loaded, so the dynamic loader hands
      back the same library instance, and pointers can pass between the two.
    * The mock cluster listens on loopback only and lives in this process.
    * Before anything is called, the symbols are checked to exist and
      ``rd_kafka_version()`` to be a version listed in :data:`TESTED_VERSIONS`.
      Otherwise :class:`LibrdkafkaTestApiUnavailable` is raised, with the reason,
      so a test suite can skip cleanly instead of crashing.
    * :func:`inject_fatal_error` checks the producer's type and its
      ``rd_kafka_name()`` before it touches the handle.

Caveat: the ``rd_kafka_mock_*`` API is experimental, with *no* API or ABI
promise from librdkafka, and the producer handle is reached through
confluent-kafka's private C struct layout. A wrong signature here means a
crash, not an exception. That is why the version is pinned: when confluent-kafka
upgrades librdkafka, re-run ``tests/unit/test_librdkafka_mock.py`` and add the
version to :data:`TESTED_VERSIONS`. Only Linux wheels (the ``.libs`` directory
made by auditwheel) are supported. This is test tooling: never use it in
production code.
"""

from __future__ import annotations

import ctypes
import enum
import functools
import importlib.util
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

from eventwire import EventwireError

if TYPE_CHECKING:
    from eventwire import AsyncPublisher, Publisher

__all__ = [
    "TESTED_VERSIONS",
    "ApiKey",
    "ErrorCode",
    "LibrdkafkaCallError",
    "LibrdkafkaTestApiUnavailable",
    "MockCluster",
    "inject_fatal_error",
    "librdkafka_version",
]

#: (major, minor) librdkafka versions this binding's signatures were checked against.
TESTED_VERSIONS: frozenset[tuple[int, int]] = frozenset({(2, 13), (2, 16)})

_RD_KAFKA_PRODUCER = 0
_CONF_OK = 0
_ERRSTR_SIZE = 512
_c_int_p = ctypes.POINTER(ctypes.c_int)

# name -> (restype, argtypes). Every function used below must be listed here:
# its presence is checked before anything is called.
_SIGNATURES: dict[str, tuple[Any, list[Any]]] = {
    "rd_kafka_version": (ctypes.c_int, []),
    "rd_kafka_version_str": (ctypes.c_char_p, []),
    "rd_kafka_err2name": (ctypes.c_char_p, [ctypes.c_int]),
    "rd_kafka_conf_new": (ctypes.c_void_p, []),
    "rd_kafka_conf_destroy": (None, [ctypes.c_void_p]),
    "rd_kafka_conf_set": (
        ctypes.c_int,
        [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_size_t],
    ),
    "rd_kafka_new": (
        ctypes.c_void_p,
        [ctypes.c_int, ctypes.c_void_p, ctypes.c_char_p, ctypes.c_size_t],
    ),
    "rd_kafka_destroy": (None, [ctypes.c_void_p]),
    "rd_kafka_name": (ctypes.c_char_p, [ctypes.c_void_p]),
    "rd_kafka_test_fatal_error": (ctypes.c_int, [ctypes.c_void_p, ctypes.c_int, ctypes.c_char_p]),
    "rd_kafka_mock_cluster_new": (ctypes.c_void_p, [ctypes.c_void_p, ctypes.c_int]),
    "rd_kafka_mock_cluster_destroy": (None, [ctypes.c_void_p]),
    "rd_kafka_mock_cluster_bootstraps": (ctypes.c_char_p, [ctypes.c_void_p]),
    # The array form of the variadic rd_kafka_mock_push_request_errors(): same
    # effect, without relying on ctypes passing C varargs correctly per platform.
    "rd_kafka_mock_push_request_errors_array": (
        None,
        [ctypes.c_void_p, ctypes.c_int16, ctypes.c_size_t, _c_int_p],
    ),
    "rd_kafka_mock_clear_request_errors": (None, [ctypes.c_void_p, ctypes.c_int16]),
    "rd_kafka_mock_broker_set_down": (ctypes.c_int, [ctypes.c_void_p, ctypes.c_int32]),
    "rd_kafka_mock_broker_set_up": (ctypes.c_int, [ctypes.c_void_p, ctypes.c_int32]),
    "rd_kafka_mock_broker_set_rtt": (
        ctypes.c_int,
        [ctypes.c_void_p, ctypes.c_int32, ctypes.c_int],
    ),
    "rd_kafka_mock_topic_create": (
        ctypes.c_int,
        [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int, ctypes.c_int],
    ),
    "rd_kafka_mock_start_request_tracking": (None, [ctypes.c_void_p]),
    "rd_kafka_mock_get_requests": (
        ctypes.POINTER(ctypes.c_void_p),
        [ctypes.c_void_p, ctypes.POINTER(ctypes.c_size_t)],
    ),
    "rd_kafka_mock_request_api_key": (ctypes.c_int16, [ctypes.c_void_p]),
    # Frees each request and the array itself.
    "rd_kafka_mock_request_destroy_array": (
        None,
        [ctypes.POINTER(ctypes.c_void_p), ctypes.c_size_t],
    ),
}


class LibrdkafkaTestApiUnavailable(EventwireError, RuntimeError):
    """librdkafka's test API cannot be used safely here; the message says why.

    Raised when confluent-kafka's bundled librdkafka is not found, lacks a
    symbol, is not a version in :data:`TESTED_VERSIONS`, or when a publisher's
    producer handle does not look as expected. Tests should skip on it.
    """


class LibrdkafkaCallError(EventwireError, RuntimeError):
    """A librdkafka test API call returned an error code (named in the message)."""

    def __init__(self, call: str, code: int) -> None:
        self.call = call
        self.code = code
        super().__init__(f"{call} failed: {_api().err2name(code)} ({code})")


class ApiKey(enum.IntEnum):
    """Kafka protocol request types (``ApiKey``), for :meth:`MockCluster.push_request_errors`."""

    PRODUCE = 0
    METADATA = 3
    INIT_PRODUCER_ID = 22


class ErrorCode(enum.IntEnum):
    """Kafka protocol error codes; each name equals ``rd_kafka_err2name()`` of its value."""

    INVALID_MSG = 2
    #: Kafka's name for 2; librdkafka (and so eventwire's error policy) sees INVALID_MSG.
    CORRUPT_MESSAGE = 2
    LEADER_NOT_AVAILABLE = 5
    NOT_LEADER_FOR_PARTITION = 6
    REQUEST_TIMED_OUT = 7
    MSG_SIZE_TOO_LARGE = 10
    NOT_ENOUGH_REPLICAS = 19
    NOT_ENOUGH_REPLICAS_AFTER_APPEND = 20
    INVALID_REQUIRED_ACKS = 21
    TOPIC_AUTHORIZATION_FAILED = 29
    CLUSTER_AUTHORIZATION_FAILED = 31
    OUT_OF_ORDER_SEQUENCE_NUMBER = 45


class _Api:
    """The typed subset of librdkafka's C API used here."""

    def __init__(self, lib: ctypes.CDLL, path: Path) -> None:
        missing = [name for name in _SIGNATURES if not hasattr(lib, name)]
        if missing:
            raise LibrdkafkaTestApiUnavailable(
                f"{path.name} lacks the test API symbols {', '.join(missing)}"
            )
        for name, (restype, argtypes) in _SIGNATURES.items():
            fn = getattr(lib, name)
            fn.restype, fn.argtypes = restype, argtypes
        self.lib = lib
        self.path = path

    def version(self) -> tuple[int, int, int]:
        v = int(self.lib.rd_kafka_version())
        return (v >> 24) & 0xFF, (v >> 16) & 0xFF, (v >> 8) & 0xFF

    def err2name(self, code: int) -> str:
        return _text(self.lib.rd_kafka_err2name(code))

    def name(self, rk: int) -> str:
        return _text(self.lib.rd_kafka_name(rk))

    def call(self, fn: str, *args: Any) -> None:
        """Call ``fn`` (which returns an rd_kafka_resp_err_t) and raise unless it is 0."""
        err = int(getattr(self.lib, fn)(*args))
        if err:
            raise LibrdkafkaCallError(fn, err)


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else ""


def _library_path() -> Path:
    spec = importlib.util.find_spec("confluent_kafka")  # locates; does not import
    if spec is None or not spec.submodule_search_locations:
        raise LibrdkafkaTestApiUnavailable("confluent_kafka is not installed")
    package = Path(next(iter(spec.submodule_search_locations)))
    libs = package.parent / "confluent_kafka.libs"
    found = sorted(libs.glob("librdkafka*.so*"))
    if len(found) != 1:
        raise LibrdkafkaTestApiUnavailable(
            f"expected one bundled librdkafka in {libs}, found {len(found)} "
            "(only the Linux wheel of confluent-kafka bundles one there)"
        )
    return found[0]


@functools.cache
def _api() -> _Api:
    path = _library_path()
    try:
        lib = ctypes.CDLL(str(path))
    except OSError as exc:
        raise LibrdkafkaTestApiUnavailable(f"cannot load {path}: {exc}") from None
    api = _Api(lib, path)
    major, minor, _ = api.version()
    if (major, minor) not in TESTED_VERSIONS:
        tested = ", ".join(f"{a}.{b}.x" for a, b in sorted(TESTED_VERSIONS))
        raise LibrdkafkaTestApiUnavailable(
            f"librdkafka {_text(lib.rd_kafka_version_str())} has an experimental test API "
            f"with no ABI promise, and this binding was checked against {tested} only: "
            "re-run tests/unit/test_librdkafka_mock.py and extend TESTED_VERSIONS"
        )
    wrong = [c.name for c in ErrorCode if api.err2name(c) != c.name]
    if wrong:
        raise LibrdkafkaTestApiUnavailable(f"error code numbers disagree with librdkafka: {wrong}")
    return api


def librdkafka_version() -> str:
    """The bundled librdkafka's version, e.g. ``"2.16.0"``.

    Raises:
        LibrdkafkaTestApiUnavailable: see the module docstring.
    """
    return ".".join(map(str, _api().version()))


class MockCluster:
    """An in-process mock Kafka cluster on loopback, with fault injection.

    Every request the brokers receive is recorded (see :meth:`request_count`).
    Its Produce responses carry a fixed LogAppendTime (1234 ms in 2.16), so a
    delivered event's ``timestamp_ms`` is 1234: assert nothing about timestamps.
    Broker ids run from 1 to ``brokers``; ``-1`` means every broker where a
    method takes a ``broker_id``. Close every client of the cluster before the
    cluster itself (nest the ``with`` blocks).

    Raises:
        LibrdkafkaTestApiUnavailable: see the module docstring.
        LibrdkafkaCallError: librdkafka refused a call (unknown broker id ...).
    """

    def __init__(self, brokers: int = 1) -> None:
        if brokers < 1:
            raise ValueError("a mock cluster needs at least one broker")
        self._api = api = _api()
        self._rk = _new_producer_handle(api)
        mcluster = api.lib.rd_kafka_mock_cluster_new(self._rk, brokers)
        if not mcluster:
            api.lib.rd_kafka_destroy(self._rk)
            raise LibrdkafkaTestApiUnavailable("rd_kafka_mock_cluster_new() returned NULL")
        self._mcluster: int | None = int(mcluster)
        self.brokers = brokers
        api.lib.rd_kafka_mock_start_request_tracking(mcluster)

    @property
    def bootstrap_servers(self) -> str:
        """``"127.0.0.1:port,..."``: the brokers' loopback listeners."""
        return _text(self._api.lib.rd_kafka_mock_cluster_bootstraps(self._handle()))

    def create_topic(self, name: str, partitions: int = 1, replication: int = 1) -> None:
        """Create ``name`` (the mock has no CreateTopics; producers may also auto-create)."""
        self._api.call(
            "rd_kafka_mock_topic_create", self._handle(), name.encode(), partitions, replication
        )

    def push_request_errors(self, api_key: int, *error_codes: int) -> None:
        """Make the next ``len(error_codes)`` requests of ``api_key`` fail, in order.

        A code of 0 lets that request through. The stack is cluster-wide and
        shared by all clients of the cluster, retries included.
        """
        errors = (ctypes.c_int * len(error_codes))(*error_codes)
        self._api.lib.rd_kafka_mock_push_request_errors_array(
            self._handle(), api_key, len(error_codes), errors
        )

    def clear_request_errors(self, api_key: int) -> None:
        """Drop the errors still stacked for ``api_key``."""
        self._api.lib.rd_kafka_mock_clear_request_errors(self._handle(), api_key)

    def request_count(self, api_key: int) -> int:
        """How many ``api_key`` requests the brokers received so far, failed ones included."""
        count = ctypes.c_size_t(0)
        requests = self._api.lib.rd_kafka_mock_get_requests(self._handle(), ctypes.byref(count))
        if not requests:
            return 0
        try:
            get_key = self._api.lib.rd_kafka_mock_request_api_key
            return sum(1 for i in range(count.value) if get_key(requests[i]) == api_key)
        finally:
            self._api.lib.rd_kafka_mock_request_destroy_array(requests, count.value)

    def broker_down(self, broker_id: int) -> None:
        """Disconnect the broker's clients and refuse new connections (no leader change)."""
        self._api.call("rd_kafka_mock_broker_set_down", self._handle(), broker_id)

    def broker_up(self, broker_id: int) -> None:
        """Accept connections on the broker again."""
        self._api.call("rd_kafka_mock_broker_set_up", self._handle(), broker_id)

    def set_rtt(self, broker_id: int, ms: int) -> None:
        """Delay every response of the broker by ``ms`` milliseconds (0 to stop)."""
        self._api.call("rd_kafka_mock_broker_set_rtt", self._handle(), broker_id, ms)

    def close(self) -> None:
        """Destroy the cluster and its handle; calling it again does nothing."""
        mcluster, self._mcluster = self._mcluster, None
        if mcluster is not None:
            self._api.lib.rd_kafka_mock_cluster_destroy(mcluster)
            self._api.lib.rd_kafka_destroy(self._rk)

    def _handle(self) -> int:
        if self._mcluster is None:
            raise RuntimeError("the mock cluster is closed")
        return self._mcluster

    def __enter__(self) -> MockCluster:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def _new_producer_handle(api: _Api) -> int:
    errstr = ctypes.create_string_buffer(_ERRSTR_SIZE)
    conf = api.lib.rd_kafka_conf_new()
    # No bootstrap servers is normal here: the handle only owns the mock cluster.
    # log_level 4 keeps librdkafka's notice about that off stderr.
    for key, value in (("client.id", "eventwire-mock-cluster"), ("log_level", "4")):
        if api.lib.rd_kafka_conf_set(conf, key.encode(), value.encode(), errstr, _ERRSTR_SIZE):
            api.lib.rd_kafka_conf_destroy(conf)
            raise LibrdkafkaTestApiUnavailable(f"rd_kafka_conf_set({key}): {_text(errstr.value)}")
    rk = api.lib.rd_kafka_new(_RD_KAFKA_PRODUCER, conf, errstr, _ERRSTR_SIZE)
    if not rk:
        api.lib.rd_kafka_conf_destroy(conf)  # rd_kafka_new() frees it only on success
        raise LibrdkafkaTestApiUnavailable(f"rd_kafka_new() failed: {_text(errstr.value)}")
    return int(rk)


def inject_fatal_error(publisher: Publisher | AsyncPublisher, code: int, reason: str) -> None:
    """Raise a real librdkafka fatal error ``code`` in ``publisher``'s producer.

    librdkafka then treats it as a broker-caused one: ``poll()``/``flush()`` raise
    a fatal error carrying ``code`` and the reason ``"test_fatal_error: <reason>"``,
    and every later ``produce()`` on that producer is refused with ``_FATAL``.

    Raises:
        LibrdkafkaTestApiUnavailable: the publisher has no confluent-kafka producer,
            or its handle does not name the expected ``client.id``.
        LibrdkafkaCallError: librdkafka refused (``_PREV_IN_PROGRESS`` when the
            producer already has a fatal error).
    """
    api = _api()
    producer = _producer_of(publisher)
    rk = _rk_of(producer)
    config = publisher.config
    client_id = str(config.to_librdkafka().get("client.id", "")) if config else ""
    name = api.name(rk)
    if not client_id or not name.startswith(f"{client_id}#producer-"):
        raise LibrdkafkaTestApiUnavailable(
            f"the producer handle names itself {name!r}, expected '{client_id}#producer-N': "
            "confluent-kafka's Handle layout may have changed"
        )
    api.call("rd_kafka_test_fatal_error", rk, code, reason.encode())


def _producer_of(publisher: Publisher | AsyncPublisher) -> object:
    """The confluent_kafka.Producer behind ``publisher`` (KafkaTransport keeps it here)."""
    # A test tool reaching into eventwire's internals on purpose: the Producer, its
    # current transport (KafkaTransport), and the confluent_kafka.Producer it owns.
    eventwire_producer = publisher._core.producer
    transport = eventwire_producer.transport if eventwire_producer is not None else None
    producer = getattr(transport, "_producer", None)
    if producer is None:
        raise LibrdkafkaTestApiUnavailable(
            "the publisher has no confluent-kafka producer at ._core.producer.transport."
            "_producer (an outbox publisher, another transport, or a renamed attribute)"
        )
    return producer


def _rk_of(producer: object) -> int:
    # confluent-kafka's C ``Handle`` struct (src/confluent_kafka/src/confluent_kafka.h)
    # is PyObject_HEAD followed by ``rd_kafka_t *rk``, so rk sits right after the
    # object header, whose size is object.__basicsize__.
    cimpl = any(
        cls.__name__ == "Producer" and cls.__module__ in {"cimpl", "confluent_kafka.cimpl"}
        for cls in type(producer).__mro__
    )
    offset = object.__basicsize__
    if not cimpl or type(producer).__basicsize__ < offset + ctypes.sizeof(ctypes.c_void_p):
        raise LibrdkafkaTestApiUnavailable(
            f"{type(producer).__qualname__} is not confluent-kafka's C Producer"
        )
    rk = ctypes.c_void_p.from_address(id(producer) + offset).value
    if not rk:
        raise LibrdkafkaTestApiUnavailable("the producer has no rd_kafka_t (closed?)")
    return rk
