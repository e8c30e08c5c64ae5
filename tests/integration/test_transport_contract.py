"""The transport contract: one set of cases, run on MemoryTransport and on KafkaTransport.

Every case states a promise of :class:`~eventwire.transports.base.BaseTransport` and
runs unchanged on both backends; a backend only says *how* to reach a state (a record
that stays outstanding, a full local queue, a fatal error). The Kafka backend talks to
the real broker (``kafka_bootstrap``), except for the fatal-error case, which needs
librdkafka's in-process mock cluster to inject one.

How the Kafka backend makes things deterministic, without sleeps:

* *Outstanding records*: its producers set ``allow.auto.create.topics=false``, so a
  record sent to a topic that does not exist waits in the local queue for metadata
  (``topic.metadata.propagation.max.ms``, raised to 10 min) and is never sent.
* *A full queue*: ``queue.buffering.max.messages=1`` plus one such outstanding record.
* *Too large*: ``message.max.bytes=1000`` (librdkafka refuses in ``produce()``).

Where a promise cannot be exercised on one backend, the case is skipped there with
the reason (never a case that asserts nothing).
"""

from __future__ import annotations

import abc
import contextlib
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from eventwire import BrokerUnavailableError
from eventwire._policy import is_possibly_written
from eventwire.transports.base import (
    BaseTransport,
    SendRejected,
    TransportQueueFull,
)
from eventwire.transports.memory import MemoryTransport

PARTITIONS = 3


@dataclass(frozen=True)
class Report:
    """One delivery report as the callback got it."""

    code: str | None
    topic: str | None
    partition: int | None
    offset: int | None


class Reports:
    """A delivery callback that records every call (thread-safe)."""

    def __init__(self) -> None:
        self.calls: list[Report] = []
        self._lock = threading.Lock()

    def __call__(self, err: Any, msg: Any) -> None:
        report = Report(err.name() if err else None, msg.topic(), msg.partition(), msg.offset())
        with self._lock:
            self.calls.append(report)

    def codes(self) -> list[str | None]:
        with self._lock:
            return [r.code for r in self.calls]


@dataclass(frozen=True)
class Stored:
    """A record as an independent reader finds it in the log."""

    partition: int
    offset: int
    key: bytes | None
    value: bytes
    headers: tuple[tuple[str, bytes], ...]


class Backend(abc.ABC):
    """How to make transports of one kind, reach states, and read their log back."""

    name: str
    #: An existing topic with :data:`PARTITIONS` partitions, empty at the start.
    topic: str

    def __init__(self) -> None:
        self._made: list[BaseTransport] = []

    def transport(self, **limits: int) -> BaseTransport:
        """A healthy transport (closed at teardown); ``max_bytes``/``queue_max`` limit it."""
        made = self._make(**limits)
        self._made.append(made)
        return made

    def track(self, transport: BaseTransport) -> BaseTransport:
        """Close ``transport`` at teardown too (e.g. one made by ``recreate()``)."""
        self._made.append(transport)
        return transport

    def teardown(self) -> None:
        for made in self._made:
            with contextlib.suppress(Exception):
                made.close(0)

    @abc.abstractmethod
    def _make(self, *, max_bytes: int | None = None, queue_max: int | None = None) -> Any: ...

    @abc.abstractmethod
    def read(self, topic: str, expected: int) -> list[Stored]:
        """Every record of ``topic`` in the log, by partition then offset."""

    @abc.abstractmethod
    def hold(self, transport: Any) -> str:
        """A topic where records sent through ``transport`` stay outstanding until close."""

    @abc.abstractmethod
    def fill(self, transport: Any) -> None:
        """Make ``transport``'s next send find the local queue full."""

    @abc.abstractmethod
    @contextlib.contextmanager
    def fatal_setup(self) -> Iterator[tuple[BaseTransport, str, Callable[[], None]]]:
        """Yield a transport, a topic, and a function that puts the transport in a fatal
        state (it may need a send to the topic to surface)."""

    @abc.abstractmethod
    def unreachable(self) -> BaseTransport:
        """A transport whose log does not answer."""

    @abc.abstractmethod
    def no_auto_create(self) -> BaseTransport:
        """A transport whose sends to a topic that does not exist fail (soon)."""


class MemoryBackend(Backend):
    name = "memory"

    def __init__(self) -> None:
        super().__init__()
        self.topic = "contract"

    def _make(self, *, max_bytes: int | None = None, queue_max: int | None = None) -> Any:
        return MemoryTransport(partitions=PARTITIONS, max_message_bytes=max_bytes or 1_000_000)

    def read(self, topic: str, expected: int) -> list[Stored]:
        assert self._made, "no transport made yet"
        first = self._made[0]
        assert isinstance(first, MemoryTransport)
        # Every transport of this backend reads the log of the first (recreate() shares it).
        return [
            Stored(r.partition, r.offset, r.key, r.value, r.headers) for r in first.records(topic)
        ]

    def hold(self, transport: Any) -> str:
        transport.pause()
        return self.topic

    def fill(self, transport: Any) -> None:
        transport.queue_full_next(1)

    @contextlib.contextmanager
    def fatal_setup(self) -> Iterator[tuple[BaseTransport, str, Callable[[], None]]]:
        transport = self.transport()
        yield transport, self.topic, transport.set_fatal

    def unreachable(self) -> BaseTransport:
        raise AssertionError("an in-process log cannot be unreachable")

    def no_auto_create(self) -> BaseTransport:
        made = MemoryTransport(partitions=PARTITIONS, auto_create_topics=False)
        self._made.append(made)
        return made


class KafkaBackend(Backend):
    name = "kafka"

    def __init__(self, bootstrap: str, topic: str) -> None:
        super().__init__()
        self.bootstrap = bootstrap
        self.topic = topic

    @staticmethod
    def _config(bootstrap: str, **overrides: Any) -> Any:
        from eventwire import KafkaConfig

        return KafkaConfig(
            bootstrap,
            profile="low_latency",
            client_id="eventwire-contract",
            overrides={
                "allow.auto.create.topics": False,
                "topic.metadata.propagation.max.ms": 600_000,
                **overrides,
            },
        )

    def _make(self, *, max_bytes: int | None = None, queue_max: int | None = None) -> Any:
        from eventwire.transports.kafka import KafkaTransport

        overrides: dict[str, Any] = {}
        if max_bytes is not None:
            overrides["message.max.bytes"] = max_bytes
        if queue_max is not None:
            overrides["queue.buffering.max.messages"] = queue_max
        return KafkaTransport(self._config(self.bootstrap, **overrides), connect_timeout=10)

    def read(self, topic: str, expected: int) -> list[Stored]:
        from eventwire_devkit.consume import read_topic

        records = read_topic(self.bootstrap, topic, expected=expected or None, timeout=60, idle=0.5)
        return sorted(
            (Stored(r.partition, r.offset, r.key, r.value, r.headers) for r in records),
            key=lambda s: (s.partition, s.offset),
        )

    def hold(self, transport: Any) -> str:
        return f"absent-{uuid.uuid4().hex}"  # never created: its records wait for metadata

    def fill(self, transport: Any) -> None:
        # A transport made with queue_max=1: one outstanding record fills the queue.
        transport.send(self.hold(transport), None, b"filler", [], Reports())

    @contextlib.contextmanager
    def fatal_setup(self) -> Iterator[tuple[BaseTransport, str, Callable[[], None]]]:
        from eventwire.transports.kafka import KafkaTransport
        from eventwire_devkit.librdkafka import (
            ApiKey,
            ErrorCode,
            LibrdkafkaTestApiUnavailable,
            MockCluster,
        )
        from eventwire_devkit.pytest_plugin import unavailable

        try:
            mock = MockCluster()
        except LibrdkafkaTestApiUnavailable as exc:
            unavailable(f"librdkafka's mock cluster is unavailable: {exc}")
        with mock:
            mock.create_topic("fatal", partitions=1)
            transport = KafkaTransport(self._config(mock.bootstrap_servers), connect_timeout=10)
            self._made.append(transport)

            def trigger() -> None:
                # The next Produce request breaks the idempotent sequence: a fatal error.
                mock.push_request_errors(ApiKey.PRODUCE, ErrorCode.OUT_OF_ORDER_SEQUENCE_NUMBER)

            try:
                yield transport, "fatal", trigger
            finally:
                transport.close(0)  # before the mock cluster goes

    def unreachable(self) -> BaseTransport:
        from eventwire.transports.kafka import KafkaTransport

        made = KafkaTransport(self._config("127.0.0.1:1"), connect_timeout=None)
        self._made.append(made)
        return made

    def no_auto_create(self) -> BaseTransport:
        from eventwire.transports.kafka import KafkaTransport

        # Producers here never ask for auto-creation; a missing topic's records fail once
        # the metadata wait (default 30 s) is over.
        config = self._config(self.bootstrap, **{"topic.metadata.propagation.max.ms": 1000})
        made = KafkaTransport(config, connect_timeout=10)
        self._made.append(made)
        return made


def on_both(
    *, skip: dict[str, str] | None = None, xfail: dict[str, str] | None = None
) -> pytest.MarkDecorator:
    """Run a case on both backends; ``skip``/``xfail`` map a backend name to the reason."""
    skip, xfail = skip or {}, xfail or {}
    params = []
    for name in ("memory", "kafka"):
        marks: list[pytest.MarkDecorator] = [pytest.mark.kafka] if name == "kafka" else []
        if name in skip:
            marks.append(pytest.mark.skip(reason=skip[name]))
        if name in xfail:
            marks.append(pytest.mark.xfail(strict=True, reason=xfail[name]))
        params.append(pytest.param(name, marks=marks, id=name))
    return pytest.mark.parametrize("backend", params, indirect=True)


@pytest.fixture
def backend(request: pytest.FixtureRequest) -> Iterator[Backend]:
    """The backend named by the case's parameter; every transport it made is closed after."""
    made: Backend
    if request.param == "memory":
        made = MemoryBackend()
    else:
        made = KafkaBackend(
            request.getfixturevalue("kafka_bootstrap"), request.getfixturevalue("kafka_topic")
        )
    yield made
    made.teardown()


def _wait(event: threading.Event) -> None:
    assert event.wait(30), "no delivery report within 30 s"


class TestDelivery:
    @on_both()
    def test_a_sent_record_is_reported_exactly_once_with_its_position(
        self, backend: Backend
    ) -> None:
        """A sent record gets one successful report naming the topic, partition and offset
        where the log holds it, and no other report, even after flush and close."""
        transport = backend.transport()
        reports = Reports()
        transport.send(backend.topic, b"k-1", b"value-1", [("h", b"v")], reports)
        assert transport.flush(30) == 0
        transport.close(5)
        [report] = reports.calls
        assert report.code is None
        assert report.topic == backend.topic
        assert report.partition in range(PARTITIONS)
        [stored] = backend.read(backend.topic, expected=1)
        assert (stored.partition, stored.offset) == (report.partition, report.offset)
        assert (stored.key, stored.value) == (b"k-1", b"value-1")
        assert stored.headers == (("h", b"v"),)

    @on_both()
    def test_records_of_one_key_land_in_send_order(self, backend: Backend) -> None:
        """Records with the same key go to one partition, at offsets in the order they were sent."""
        transport = backend.transport()
        reports = Reports()
        for n in range(60):
            key = b"same" if n % 2 == 0 else f"other-{n % 5}".encode()
            transport.send(backend.topic, key, str(n).encode(), [], reports)
        assert transport.flush(30) == 0
        same = [s for s in backend.read(backend.topic, expected=60) if s.key == b"same"]
        assert len({s.partition for s in same}) == 1
        in_log = [int(s.value) for s in sorted(same, key=lambda s: s.offset)]
        assert in_log == list(range(0, 60, 2))

    @on_both()
    def test_flush_returns_zero_once_every_record_is_reported(self, backend: Backend) -> None:
        """flush() returns 0 only after the callback of every sent record has run."""
        transport = backend.transport()
        reports = Reports()
        for n in range(200):
            transport.send(backend.topic, f"k{n % 7}".encode(), b"v", [], reports)
        assert transport.flush(30) == 0
        assert reports.codes() == [None] * 200

    @on_both()
    def test_flush_returns_how_many_are_still_outstanding(self, backend: Backend) -> None:
        """flush() whose timeout ends first returns the number of records not yet reported."""
        transport = backend.transport()
        topic = backend.hold(transport)
        reports = Reports()
        for _ in range(3):
            transport.send(topic, b"k", b"v", [], reports)
        assert transport.flush(0.2) == 3
        assert reports.calls == []


class TestClose:
    @on_both()
    def test_close_reports_every_outstanding_record_as_purged_before_it_returns(
        self, backend: Backend
    ) -> None:
        """close() gives every record still outstanding one failed _PURGE_* report before it
        returns, and returns their number."""
        transport = backend.transport()
        topic = backend.hold(transport)
        reports = Reports()
        for _ in range(4):
            transport.send(topic, b"k", b"v", [], reports)
        assert transport.close(0) == 4
        codes = reports.codes()
        assert len(codes) == 4
        assert all(code in {"_PURGE_QUEUE", "_PURGE_INFLIGHT"} for code in codes), codes

    @on_both()
    def test_nothing_is_sent_after_close(self, backend: Backend) -> None:
        """After close(), send() raises SendRejected, never reports, and writes nothing."""
        transport = backend.transport()
        transport.close(5)
        reports = Reports()
        with pytest.raises(SendRejected):
            transport.send(backend.topic, b"k", b"after-close", [], reports)
        assert reports.calls == []
        assert transport.queue_length() in (0, None)
        assert backend.read(backend.topic, expected=0) == []

    @on_both()
    def test_a_record_close_reports_as_never_written_is_not_in_the_log(
        self, backend: Backend
    ) -> None:
        """A held record that close() reports as not possibly written (_PURGE_QUEUE) is
        absent from the log; one that is in the log is reported possibly written
        (_PURGE_INFLIGHT: the memory log stores a record at send)."""
        transport = backend.transport()
        topic = backend.hold(transport)
        reports = Reports()
        transport.send(topic, b"k", b"held", [], reports)
        transport.close(0)
        [code] = reports.codes()
        in_log = [s.value for s in backend.read(topic, expected=0)]
        if code == "_PURGE_QUEUE":
            assert in_log == []
        else:
            assert code == "_PURGE_INFLIGHT"
            assert is_possibly_written(code)
        assert code == {"memory": "_PURGE_INFLIGHT", "kafka": "_PURGE_QUEUE"}[backend.name]


class TestRefusals:
    @on_both()
    def test_a_full_queue_raises_transport_queue_full_without_enqueueing(
        self, backend: Backend
    ) -> None:
        """A send that finds the local queue full raises TransportQueueFull and the record is
        neither queued, nor reported, nor written."""
        transport = backend.transport(queue_max=1)
        backend.fill(transport)
        queued = transport.queue_length()
        refused = Reports()
        with pytest.raises(TransportQueueFull):
            transport.send(backend.topic, b"k", b"refused", [], refused)
        assert transport.queue_length() == queued
        transport.close(0)
        assert refused.calls == []
        assert backend.read(backend.topic, expected=0) == []

    @on_both()
    def test_a_record_over_the_size_limit_is_rejected_at_send(self, backend: Backend) -> None:
        """A record larger than the size limit raises SendRejected(MSG_SIZE_TOO_LARGE), not
        fatal, is never reported, and the transport goes on sending smaller ones."""
        transport = backend.transport(max_bytes=1000)
        refused, accepted = Reports(), Reports()
        with pytest.raises(SendRejected) as info:
            transport.send(backend.topic, b"k", b"x" * 2000, [], refused)
        assert info.value.code == "MSG_SIZE_TOO_LARGE"
        assert info.value.fatal is False
        transport.send(backend.topic, b"k", b"small", [], accepted)
        assert transport.flush(30) == 0
        assert refused.calls == []
        assert accepted.codes() == [None]
        assert [s.value for s in backend.read(backend.topic, expected=1)] == [b"small"]

    @on_both()
    def test_the_size_limit_counts_headers_and_the_records_overhead_as_librdkafka_does(
        self, backend: Backend
    ) -> None:
        """A record whose headers push it past the limit is refused like a large value: the
        in-memory transport must not deliver in tests what Kafka refuses. The largest
        value that fits is the same on both, to the byte."""
        transport = backend.transport(max_bytes=1000)
        headers = [("ce_id", b"i" * 36), ("h" * 70, b"y" * 200)]
        fits = 1000 - 36 - 1 - (2 + 5 + 1 + 36) - (1 + 70 + 2 + 200)  # overhead, key, headers
        with pytest.raises(SendRejected) as info:
            transport.send(backend.topic, b"k", b"x" * (fits + 1), headers, Reports())
        assert info.value.code == "MSG_SIZE_TOO_LARGE"
        accepted = Reports()
        transport.send(backend.topic, b"k", b"x" * fits, headers, accepted)
        assert transport.flush(30) == 0
        assert accepted.codes() == [None]
        transport.close(5)


class TestUnknownTopic:
    @on_both()
    def test_a_topic_that_does_not_exist_fails_with_kafkas_code(self, backend: Backend) -> None:
        """Without auto-creation a send to a missing topic is reported as failed with
        UNKNOWN_TOPIC_OR_PART, the code librdkafka gives (the memory transport said
        _UNKNOWN_TOPIC, so a unit test's assertion on the code failed in production), and
        the record is permanently failed: never written."""
        transport = backend.no_auto_create()
        reports = Reports()
        transport.send(f"absent-{uuid.uuid4().hex}", b"k", b"v", [], reports)
        assert transport.flush(30) == 0
        assert reports.codes() == ["UNKNOWN_TOPIC_OR_PART"]
        assert not is_possibly_written("UNKNOWN_TOPIC_OR_PART")


class TestRecreate:
    @on_both()
    def test_recreate_returns_a_working_transport_to_the_same_log(self, backend: Backend) -> None:
        """recreate() returns a new transport that keeps working after the original is closed
        and writes to the same log (for Kafka: the same cluster)."""
        original = backend.transport()
        first = Reports()
        original.send(backend.topic, b"k", b"before", [], first)
        assert original.flush(30) == 0
        fresh = original.recreate()
        assert fresh is not None and fresh is not original
        backend.track(fresh)
        original.close(5)
        second = Reports()
        fresh.send(backend.topic, b"k", b"after", [], second)
        assert fresh.flush(30) == 0
        assert first.codes() == second.codes() == [None]
        stored = backend.read(backend.topic, expected=2)
        assert [s.value for s in sorted(stored, key=lambda s: s.offset)] == [b"before", b"after"]


class TestFatal:
    @on_both()
    def test_fatal_listeners_are_told_once_and_later_sends_are_refused(
        self, backend: Backend
    ) -> None:
        """A fatal error calls every on_fatal listener exactly once with its code; later
        sends raise SendRejected(fatal=True)."""
        with backend.fatal_setup() as (transport, topic, trigger):
            told: list[tuple[str, str]] = []
            also_told: list[str] = []
            fired = threading.Event()
            transport.on_fatal(lambda code, reason: (told.append((code, reason)), fired.set()))
            transport.on_fatal(lambda code, _reason: also_told.append(code))
            healthy = Reports()
            transport.send(topic, b"k", b"before", [], healthy)
            assert transport.flush(30) == 0
            trigger()
            with contextlib.suppress(SendRejected):  # the send that meets the error
                transport.send(topic, b"k", b"meets-the-error", [], Reports())
            _wait(fired)
            with pytest.raises(SendRejected) as info:
                transport.send(topic, b"k", b"after", [], Reports())
            assert info.value.fatal is True
            transport.flush(1)
            transport.close(1)
            [(code, reason)] = told
            assert code == "OUT_OF_ORDER_SEQUENCE_NUMBER"
            assert reason
            assert also_told == [code]
            assert healthy.codes() == [None]

    @on_both()
    def test_recreate_after_a_fatal_error_gives_a_healthy_transport(self, backend: Backend) -> None:
        """A transport in a fatal state re-creates a healthy one that delivers."""
        with backend.fatal_setup() as (transport, topic, trigger):
            fired = threading.Event()
            transport.on_fatal(lambda _code, _reason: fired.set())
            transport.send(topic, b"k", b"warm-up", [], Reports())
            assert transport.flush(30) == 0
            trigger()
            with contextlib.suppress(SendRejected):
                transport.send(topic, b"k", b"meets-the-error", [], Reports())
            _wait(fired)
            fresh = transport.recreate()
            assert fresh is not None
            backend.track(fresh)
            reports = Reports()
            fresh.send(topic, b"k", b"after", [], reports)
            assert fresh.flush(30) == 0
            assert reports.codes() == [None]
            fresh.close(1)


class TestIntrospection:
    @on_both()
    def test_queue_length_counts_outstanding_records(self, backend: Backend) -> None:
        """queue_length() is the number of records sent and not yet reported; 0 after close."""
        transport = backend.transport()
        assert transport.queue_length() == 0
        topic = backend.hold(transport)
        for _ in range(3):
            transport.send(topic, b"k", b"v", [], Reports())
        assert transport.queue_length() == 3
        transport.close(0)
        assert transport.queue_length() == 0

    @on_both()
    def test_queue_length_is_zero_after_a_complete_flush(self, backend: Backend) -> None:
        """Once flush() returned 0, queue_length() is 0."""
        transport = backend.transport()
        for n in range(10):
            transport.send(backend.topic, str(n).encode(), b"v", [], Reports())
        assert transport.flush(30) == 0
        assert transport.queue_length() == 0

    @on_both()
    def test_check_connection_returns_when_the_log_answers(self, backend: Backend) -> None:
        """check_connection() returns without raising while the log is reachable."""
        transport = backend.transport()
        assert transport.check_connection(10) is None

    @on_both(skip={"memory": "an in-process log is always reachable: nothing can be down"})
    def test_check_connection_raises_when_no_broker_answers(self, backend: Backend) -> None:
        """check_connection() raises BrokerUnavailableError when nothing answers at the address."""
        transport = backend.unreachable()
        with pytest.raises(BrokerUnavailableError, match="127.0.0.1:1"):
            transport.check_connection(1)
