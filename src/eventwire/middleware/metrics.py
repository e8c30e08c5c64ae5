"""OpenTelemetry metrics for publishers and outbox relays, and a Prometheus ``/metrics`` endpoint.

A publisher (or an :class:`~eventwire.outbox.OutboxRelay`) reports metrics when it
is given a ``meter_provider=`` or when the global MeterProvider is a real one (an
SDK) at the time it is created. With neither, it does no metrics work at all. A
publisher with an outbox hands its MeterProvider to its relay.

Instruments (OpenTelemetry name -> Prometheus name; the Prometheus names are a contract):

======================================= =============================================== ============
``eventwire.events.published``          ``eventwire_events_published_total``            counter:
                                                                                        topic,
                                                                                        outcome
``eventwire.publish.duration``          ``eventwire_publish_duration_seconds``          histogram
``eventwire.in_flight_events``          ``eventwire_in_flight_events``                  gauge
``eventwire.producer.queue_messages``   ``eventwire_producer_queue_messages``           gauge
``eventwire.producer.queue_bytes``      ``eventwire_producer_queue_bytes``              gauge:
                                                                                        producer
``eventwire.broker.rtt``                ``eventwire_broker_rtt_seconds``                gauge:
                                                                                        producer,
                                                                                        broker
``eventwire.broker.tx_errors``          ``eventwire_broker_tx_errors``                  gauge:
                                                                                        producer,
                                                                                        broker
``eventwire.circuit.state``             ``eventwire_circuit_state``                     gauge:
                                                                                        breaker
``eventwire.circuit.transitions``       ``eventwire_circuit_transitions_total``         counter:
                                                                                        breaker,
                                                                                        state
``eventwire.outbox.relayed``            ``eventwire_outbox_relayed_total``              counter:
                                                                                        topic,
                                                                                        outcome
``eventwire.outbox.pending_events``     ``eventwire_outbox_pending_events``             gauge
``eventwire.outbox.oldest_pending_age`` ``eventwire_outbox_oldest_pending_age_seconds`` gauge
======================================= =============================================== ============

* ``outcome`` of ``eventwire.events.published`` is ``delivered`` or ``failed`` (the
  broker's answer, a sweep at close or a fatal error, or a synchronous rejection).
  :meth:`PublisherMetrics.count` also accepts ``retried`` / ``dead_lettered`` for
  code of your own; eventwire's outbox relay counts its retries and dead letters
  in ``eventwire.outbox.relayed`` instead, so that an event published through an
  outbox (whose handle the relay settles) is never counted twice in one counter.
* ``publish_duration`` is from ``publish()`` to the broker's acknowledgement, for
  delivered events. It has no labels: the SDK's ``Histogram.record`` costs several
  microseconds per call and about twice that with attributes.
* The queue gauge counts records in librdkafka's queues, read when collected.
* ``queue_bytes``, ``rtt`` and ``tx_errors`` come from librdkafka's statistics
  (``statistics.interval.ms``, 15 s by default when metrics are on; set it in
  ``overrides`` to change it, 0 to disable): the bytes in the producer's queues, the
  average broker round-trip time of the last window, and each broker's cumulative
  transmission errors (which restart at 0 with a new producer, hence a gauge).
* ``eventwire.circuit.state`` is 0 closed, 1 half-open, 2 open, per ``breaker``
  (the breaker's name: ``publisher`` for ``Publisher(circuit_breaker=...)``,
  ``relay`` for the outbox relay's; the worst state if several share a name).
  ``eventwire.circuit.transitions`` counts entries into each ``state``
  (``closed``, ``half_open``, ``open``). A publisher or relay without a breaker
  reports neither.
* ``eventwire.outbox.relayed`` counts the relay's outcomes per entry and attempt,
  by original ``topic``: ``delivered`` (acknowledged, marked sent), ``retried``
  (failed, scheduled for another attempt), ``dead_lettered`` (given up on, sent to
  the dead-letter topic) and ``parked`` (given up on, kept in the outbox).
* The two outbox gauges are read from the store (``OutboxStore.status()``, as
  ``eventwire outbox status`` shows) when collected, once per collection for both,
  and summed (depth) or maxed (age) over the distinct stores of running relays.
  ``oldest_pending_age`` is absent while nothing is pending. A store that cannot
  answer is logged (``outbox_status_failed``) and reports nothing that time.

Per event, a publisher with metrics adds one locked increment of a plain ``int`` (the
counter is read only at collection time) and, for a delivered event, one histogram
``record`` -- by far the larger cost, paid only with a real MeterProvider. A relay
adds one locked pass over each round's topics per outcome; the store is queried only
by the collector, never on the relay's path.
"""

from __future__ import annotations

import contextlib
import threading
import time
import weakref
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, Literal, TypeVar

import msgspec
import structlog
from opentelemetry.metrics import CallbackOptions, MeterProvider, NoOpMeterProvider, Observation

from eventwire.middleware import instrumentation_version

if TYPE_CHECKING:
    from eventwire._breaker import BreakerState, CircuitBreaker
    from eventwire._errors import DeliveryFailure
    from eventwire._handle import DeliveryHandle
    from eventwire.outbox.base import OutboxStatus, OutboxStore

__all__ = [
    "CIRCUIT_STATES",
    "OUTCOMES",
    "PROMETHEUS_NAMES",
    "RELAY_OUTCOMES",
    "BreakerWatch",
    "Outcome",
    "PrometheusServer",
    "PublisherMetrics",
    "RelayMetrics",
    "RelayOutcome",
    "make_metrics",
    "make_relay_metrics",
    "serve_prometheus",
    "watch_breaker",
]

_log = structlog.get_logger("eventwire.outbox")

Outcome = Literal["delivered", "failed", "dead_lettered", "retried"]
OUTCOMES: tuple[Outcome, ...] = ("delivered", "failed", "dead_lettered", "retried")
RelayOutcome = Literal["delivered", "retried", "dead_lettered", "parked"]
RELAY_OUTCOMES: tuple[RelayOutcome, ...] = ("delivered", "retried", "dead_lettered", "parked")
#: ``BreakerState.value`` -> the value of ``eventwire.circuit.state``.
CIRCUIT_STATES = {"closed": 0, "half_open": 1, "open": 2}

#: OpenTelemetry instrument name -> the name a Prometheus exporter gives it.
PROMETHEUS_NAMES = {
    "eventwire.events.published": "eventwire_events_published_total",
    "eventwire.publish.duration": "eventwire_publish_duration_seconds",
    "eventwire.in_flight_events": "eventwire_in_flight_events",
    "eventwire.producer.queue_messages": "eventwire_producer_queue_messages",
    "eventwire.producer.queue_bytes": "eventwire_producer_queue_bytes",
    "eventwire.broker.rtt": "eventwire_broker_rtt_seconds",
    "eventwire.broker.tx_errors": "eventwire_broker_tx_errors",
    "eventwire.circuit.state": "eventwire_circuit_state",
    "eventwire.circuit.transitions": "eventwire_circuit_transitions_total",
    "eventwire.outbox.relayed": "eventwire_outbox_relayed_total",
    "eventwire.outbox.pending_events": "eventwire_outbox_pending_events",
    "eventwire.outbox.oldest_pending_age": "eventwire_outbox_oldest_pending_age_seconds",
}

# Publish-to-ack seconds: from sub-millisecond (linger 0, local broker) to
# librdkafka's default message.timeout.ms (300 s).
_DURATION_BUCKETS = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
)  # fmt: skip
_time_ns = time.time_ns
_G = TypeVar("_G")


# -- librdkafka statistics (only the fields used; msgspec skips the rest fast) ---------
class _Window(msgspec.Struct):
    avg: int = 0
    cnt: int = 0


class _BrokerStats(msgspec.Struct):
    name: str = ""
    nodeid: int = -1
    txerrs: int = 0
    rtt: _Window = msgspec.field(default_factory=_Window)


class _Stats(msgspec.Struct):
    name: str = ""
    msg_cnt: int = 0
    msg_size: int = 0
    brokers: dict[str, _BrokerStats] = msgspec.field(default_factory=dict)


_decode_stats = msgspec.json.Decoder(_Stats).decode


class PublisherMetrics:
    """One publisher's view of its MeterProvider's eventwire instruments.

    Publishers sharing a MeterProvider share the instruments and the counters, so
    a closed publisher's counts are never lost.
    """

    __slots__ = (
        "__weakref__",
        "_breaker",
        "_counts",
        "_delivered",
        "_in_flight",
        "_instruments",
        "_lock",
        "_queue_len",
        "_record",
        "meter_provider",
        "stats",
    )

    def __init__(
        self,
        instruments: _Instruments,
        in_flight: Callable[[], int],
        meter_provider: MeterProvider | None = None,
    ) -> None:
        #: The (real) MeterProvider these metrics report to.
        self.meter_provider = meter_provider
        self._breaker: BreakerWatch | None = None
        self._instruments = instruments
        self._counts = instruments.counts
        self._delivered = instruments.counts["delivered"]
        self._lock = instruments.lock
        self._record = instruments.duration.record
        self._in_flight = in_flight
        self._queue_len: Callable[[], int] | None = None
        #: The latest librdkafka statistics, if any arrived.
        self.stats: _Stats | None = None
        instruments.members.add(self)

    def watch_breaker(self, breaker: CircuitBreaker) -> None:
        """Report ``breaker``'s state and transitions (see :func:`watch_breaker`)."""
        if self.meter_provider is not None:
            self._breaker = watch_breaker(self.meter_provider, breaker)

    def track_queue(self, queue_len: Callable[[], int]) -> None:
        """Report ``queue_len()`` (records in the transport's queues) as a gauge."""
        self._queue_len = queue_len

    def settled(self, handle: DeliveryHandle, failure: DeliveryFailure | None) -> None:
        """Count one settled event; record the publish-to-ack time of a delivered one."""
        topic = handle.topic
        if failure is not None:
            self.count(topic, "failed")
            return
        delivered = self._delivered
        with self._lock:
            delivered[topic] = delivered.get(topic, 0) + 1
        self._record((_time_ns() - handle.sent_at_ns) / 1e9)

    def count(self, topic: str, outcome: Outcome, n: int = 1) -> None:
        """Add ``n`` events with ``outcome`` to ``eventwire_events_published_total``.

        Raises:
            ValueError: ``outcome`` is not one of :data:`OUTCOMES`.
        """
        counts = self._counts.get(outcome)
        if counts is None:
            raise ValueError(f"outcome {outcome!r} is not one of {', '.join(OUTCOMES)}")
        with self._lock:
            counts[topic] = counts.get(topic, 0) + n

    def on_stats(self, stats_json: str) -> None:
        """Keep the latest librdkafka statistics (called by the transport, never raises)."""
        with contextlib.suppress(msgspec.DecodeError, ValueError):
            self.stats = _decode_stats(stats_json)

    def close(self) -> None:
        """Stop reporting this publisher's gauges (its counts stay in the counters)."""
        self._instruments.members.discard(self)
        if self._breaker is not None:
            self._breaker.close()

    def in_flight(self) -> int:
        """Events published and not yet settled."""
        return self._in_flight()

    def queue_messages(self) -> int | None:
        """Records in the transport's queues, if it can tell."""
        return self._queue_len() if self._queue_len is not None else None


class _Instruments:
    """The eventwire instruments of one MeterProvider, shared by its publishers."""

    def __init__(self, provider: MeterProvider) -> None:
        self.lock = threading.Lock()
        #: outcome -> topic -> count, read by the observable counter when collected.
        self.counts: dict[str, dict[str, int]] = {outcome: {} for outcome in OUTCOMES}
        self.members: weakref.WeakSet[PublisherMetrics] = weakref.WeakSet()
        meter = provider.get_meter("eventwire", instrumentation_version())
        meter.create_observable_counter(
            "eventwire.events.published",
            [self._published],
            unit="{event}",
            description="Events that reached a final outcome, by topic and outcome",
        )
        self.duration = meter.create_histogram(
            "eventwire.publish.duration",
            unit="s",
            description="Time from publish() to the broker's acknowledgement",
            explicit_bucket_boundaries_advisory=_DURATION_BUCKETS,
        )
        gauges: list[tuple[str, Callable[[CallbackOptions], Iterable[Observation]], str, str]] = [
            ("eventwire.in_flight_events", self._in_flight, "{event}",
             "Events published and not yet acknowledged or failed"),
            ("eventwire.producer.queue_messages", self._queue_messages, "{message}",
             "Records in the Kafka producer's queues"),
            ("eventwire.producer.queue_bytes", self._queue_bytes, "By",
             "Bytes of records in the Kafka producer's queues (librdkafka statistics)"),
            ("eventwire.broker.rtt", self._rtt, "s",
             "Average broker round-trip time in the last statistics window"),
            ("eventwire.broker.tx_errors", self._tx_errors, "{error}",
             "Transmission errors per broker since the producer started"),
        ]  # fmt: skip
        for name, callback, unit, description in gauges:
            meter.create_observable_gauge(name, [callback], unit=unit, description=description)

    # -- collection-time callbacks ---------------------------------------------------
    def _published(self, _options: CallbackOptions) -> Iterable[Observation]:
        with self.lock:
            counts = [(o, t, n) for o, by_topic in self.counts.items() for t, n in by_topic.items()]
        return [Observation(n, {"topic": t, "outcome": o}) for o, t, n in counts]

    def _in_flight(self, _options: CallbackOptions) -> Iterable[Observation]:
        return [Observation(sum(m.in_flight() for m in list(self.members)))]

    def _queue_messages(self, _options: CallbackOptions) -> Iterable[Observation]:
        sizes = [m.queue_messages() for m in list(self.members)]
        known = [s for s in sizes if s is not None]
        return [Observation(sum(known))] if known else []

    def _snapshots(self) -> list[_Stats]:
        return [s for s in (m.stats for m in list(self.members)) if s is not None]

    def _queue_bytes(self, _options: CallbackOptions) -> Iterable[Observation]:
        return [Observation(s.msg_size, {"producer": s.name}) for s in self._snapshots()]

    def _rtt(self, _options: CallbackOptions) -> Iterable[Observation]:
        return [
            Observation(b.rtt.avg / 1e6, {"producer": s.name, "broker": b.name})
            for s in self._snapshots()
            for b in s.brokers.values()
            if b.nodeid >= 0 and b.rtt.cnt > 0
        ]

    def _tx_errors(self, _options: CallbackOptions) -> Iterable[Observation]:
        return [
            Observation(b.txerrs, {"producer": s.name, "broker": b.name})
            for s in self._snapshots()
            for b in s.brokers.values()
            if b.nodeid >= 0
        ]


# -- circuit breakers ------------------------------------------------------------------
class BreakerWatch:
    """Reports one circuit breaker: told each transition (under the breaker's lock)."""

    __slots__ = ("__weakref__", "_group", "name", "value")

    def __init__(self, group: _CircuitInstruments, name: str) -> None:
        self._group = group
        self.name = name
        #: The breaker's state as ``eventwire.circuit.state`` reports it.
        self.value = 0

    def __call__(self, state: BreakerState) -> None:
        """Record a transition into ``state``."""
        self.value = CIRCUIT_STATES[state.value]
        group = self._group
        series = (self.name, state.value)
        with group.lock:
            group.transitions[series] = group.transitions.get(series, 0) + 1

    def close(self) -> None:
        """Stop reporting the state (its transitions stay in the counter)."""
        self._group.members.discard(self)


class _CircuitInstruments:
    """The circuit-breaker instruments of one MeterProvider."""

    def __init__(self, provider: MeterProvider) -> None:
        self.lock = threading.Lock()
        #: (breaker name, state entered) -> count.
        self.transitions: dict[tuple[str, str], int] = {}
        self.members: weakref.WeakSet[BreakerWatch] = weakref.WeakSet()
        meter = provider.get_meter("eventwire", instrumentation_version())
        meter.create_observable_gauge(
            "eventwire.circuit.state",
            [self._state],
            unit="{state}",
            description="Circuit breaker state: 0 closed, 1 half-open, 2 open",
        )
        meter.create_observable_counter(
            "eventwire.circuit.transitions",
            [self._transitions],
            unit="{transition}",
            description="Circuit breaker transitions, by breaker and state entered",
        )

    def _state(self, _options: CallbackOptions) -> Iterable[Observation]:
        worst: dict[str, int] = {}
        for watch in list(self.members):
            worst[watch.name] = max(worst.get(watch.name, 0), watch.value)
        return [Observation(v, {"breaker": name}) for name, v in worst.items()]

    def _transitions(self, _options: CallbackOptions) -> Iterable[Observation]:
        with self.lock:
            counts = list(self.transitions.items())
        return [Observation(n, {"breaker": b, "state": st}) for (b, st), n in counts]


def watch_breaker(provider: MeterProvider, breaker: CircuitBreaker) -> BreakerWatch:
    """Report ``breaker`` (labelled with its ``name``) on ``provider``, a real one."""
    watch = BreakerWatch(_bound(provider, _CircuitInstruments), breaker.name or "circuit")
    breaker.observe(watch)
    watch.value = CIRCUIT_STATES[breaker.state.value]
    watch._group.members.add(watch)
    return watch


# -- the outbox relay -------------------------------------------------------------------
class RelayMetrics:
    """One relay's view of its MeterProvider's outbox instruments.

    Relays sharing a MeterProvider share the ``eventwire.outbox.relayed`` counts.
    """

    __slots__ = ("__weakref__", "_breaker", "_counts", "_group", "_lock", "meter_provider", "store")

    def __init__(self, group: _OutboxInstruments, store: OutboxStore, provider: MeterProvider):
        self._group = group
        self._counts = group.counts
        self._lock = group.lock
        self._breaker: BreakerWatch | None = None
        #: The store whose depth and oldest pending age are reported.
        self.store = store
        self.meter_provider = provider
        group.members.add(self)

    def count(self, outcome: RelayOutcome, topics: Iterable[str]) -> None:
        """Add one ``outcome`` per item of ``topics`` (the entries' original topics)."""
        counts = self._counts[outcome]
        with self._lock:
            for topic in topics:
                counts[topic] = counts.get(topic, 0) + 1

    def watch_breaker(self, breaker: CircuitBreaker) -> None:
        """Report the relay's breaker's state and transitions."""
        self._breaker = watch_breaker(self.meter_provider, breaker)

    def close(self) -> None:
        """Stop reading the store and reporting the breaker (counts stay)."""
        self._group.members.discard(self)
        if self._breaker is not None:
            self._breaker.close()


class _OutboxInstruments:
    """The outbox relay's instruments of one MeterProvider, shared by its relays."""

    #: A status read serves the other gauge of the same collection if this fresh.
    _SHARE_S = 1.0

    def __init__(self, provider: MeterProvider) -> None:
        self.lock = threading.Lock()
        #: outcome -> topic -> count, read by the observable counter when collected.
        self.counts: dict[str, dict[str, int]] = {outcome: {} for outcome in RELAY_OUTCOMES}
        self.members: weakref.WeakSet[RelayMetrics] = weakref.WeakSet()
        self._read_lock = threading.Lock()
        self._unread: tuple[float, list[OutboxStatus]] | None = None
        meter = provider.get_meter("eventwire", instrumentation_version())
        meter.create_observable_counter(
            "eventwire.outbox.relayed",
            [self._relayed],
            unit="{event}",
            description="Outbox entries the relay handled, by topic and outcome",
        )
        meter.create_observable_gauge(
            "eventwire.outbox.pending_events",
            [self._pending],
            unit="{event}",
            description="Events committed to the outbox and not yet sent or given up on",
        )
        meter.create_observable_gauge(
            "eventwire.outbox.oldest_pending_age",
            [self._oldest_age],
            unit="s",
            description="Age of the oldest pending outbox event",
        )

    def _relayed(self, _options: CallbackOptions) -> Iterable[Observation]:
        with self.lock:
            counts = [(o, t, n) for o, by_topic in self.counts.items() for t, n in by_topic.items()]
        return [Observation(n, {"topic": t, "outcome": o}) for o, t, n in counts]

    def _statuses(self) -> list[OutboxStatus] | None:
        """Each distinct store's status, read once for both gauges; None if no relay runs."""
        stores = list({id(m.store): m.store for m in list(self.members)}.values())
        if not stores:
            return None
        with self._read_lock:
            unread, self._unread = self._unread, None
            if unread is not None and time.monotonic() - unread[0] < self._SHARE_S:
                return unread[1]
            statuses = []
            for store in stores:
                try:
                    statuses.append(store.status())
                except Exception as exc:  # a gauge callback must never raise
                    _log.warning(
                        "outbox_status_failed", store=type(store).__name__, error=repr(exc)
                    )
            self._unread = (time.monotonic(), statuses)
            return statuses

    def _pending(self, _options: CallbackOptions) -> Iterable[Observation]:
        statuses = self._statuses()
        if not statuses:
            return []
        return [Observation(sum(s.pending for s in statuses))]

    def _oldest_age(self, _options: CallbackOptions) -> Iterable[Observation]:
        ages = [s.oldest_pending_age_s for s in self._statuses() or ()]
        known = [a for a in ages if a is not None]
        return [Observation(max(known))] if known else []


def make_relay_metrics(
    meter_provider: MeterProvider | None, store: OutboxStore
) -> RelayMetrics | None:
    """A relay's metrics hook, or None when there is no real MeterProvider."""
    provider = _resolve(meter_provider)
    if provider is None:
        return None
    return RelayMetrics(_bound(provider, _OutboxInstruments), store, provider)


_BOUND: weakref.WeakKeyDictionary[MeterProvider, dict[Any, Any]] = weakref.WeakKeyDictionary()
_BOUND_LOCK = threading.Lock()


def _bound(provider: MeterProvider, group: Callable[[MeterProvider], _G]) -> _G:
    """The provider's one instance of an instrument group (instruments are made once)."""
    with _BOUND_LOCK:
        groups = _BOUND.get(provider)
        if groups is None:
            groups = _BOUND[provider] = {}
        found = groups.get(group)
        if found is None:
            found = groups[group] = group(provider)
        return found


def _resolve(meter_provider: MeterProvider | None) -> MeterProvider | None:
    """``meter_provider`` or the global one, if it is a real (SDK) provider; else None."""
    if meter_provider is None:
        from opentelemetry.metrics import get_meter_provider  # noqa: PLC0415

        meter_provider = get_meter_provider()
    return meter_provider if is_real_provider(meter_provider) else None


def is_real_provider(provider: MeterProvider) -> bool:
    """False for the API's no-op and proxy providers (no SDK configured)."""
    if isinstance(provider, NoOpMeterProvider):
        return False
    return not type(provider).__module__.startswith("opentelemetry.metrics")


def make_metrics(
    meter_provider: MeterProvider | None,
    in_flight: Callable[[], int],
) -> PublisherMetrics | None:
    """A publisher's metrics hook, or None when there is no real MeterProvider."""
    provider = _resolve(meter_provider)
    if provider is None:
        return None
    return PublisherMetrics(_bound(provider, _Instruments), in_flight, provider)


# -- Prometheus exposition -------------------------------------------------------------
class PrometheusServer:
    """A running ``/metrics`` endpoint and the MeterProvider that feeds it.

    Pass :attr:`meter_provider` to publishers (``Publisher(meter_provider=...)``) or
    make it the global provider. :meth:`close` stops the server and the provider.
    """

    def __init__(self, server: Any, thread: threading.Thread, meter_provider: Any, registry: Any):
        self._server = server
        self._thread = thread
        #: An SDK MeterProvider whose only reader is the Prometheus bridge.
        self.meter_provider: MeterProvider = meter_provider
        #: The prometheus_client registry served at ``/metrics``.
        self.registry = registry
        self.addr: str = server.server_address[0]
        self.port: int = int(server.server_port)

    @property
    def url(self) -> str:
        """``http://addr:port/metrics``."""
        return f"http://{self.addr}:{self.port}/metrics"

    def close(self) -> None:
        """Stop serving and shut the MeterProvider down. Idempotent."""
        if self._server is None:
            return
        server, self._server = self._server, None
        server.shutdown()
        server.server_close()
        self._thread.join(timeout=5)
        self.meter_provider.shutdown()  # type: ignore[attr-defined]

    def __enter__(self) -> PrometheusServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<PrometheusServer {self.url}{'' if self._server else ' closed'}>"


def serve_prometheus(
    port: int, addr: str = "127.0.0.1", *, registry: Any = None
) -> PrometheusServer:
    """Serve eventwire's metrics at ``http://addr:port/metrics`` (port 0 picks a free one).

    It builds an OpenTelemetry SDK ``MeterProvider`` with the Prometheus bridge
    (``opentelemetry-exporter-prometheus``'s ``PrometheusMetricReader``) writing to
    ``registry`` (a new private ``prometheus_client.CollectorRegistry`` by default),
    without scope labels or ``target_info``, so the exposition shows exactly the names
    and labels of the table above. Example::

        server = serve_prometheus(9464)
        with Publisher("localhost:9092", meter_provider=server.meter_provider) as pub:
            ...
        server.close()

    Raises:
        ImportError: the ``prometheus`` extra is not installed, or its exporter is
            older than 0.66b0 (``pip install -U 'eventwire[prometheus]'``).
        OSError: the port cannot be bound.
    """
    try:
        from opentelemetry.exporter.prometheus import (  # noqa: PLC0415
            PrometheusMetricReader,
        )
        from opentelemetry.sdk.metrics import MeterProvider as SdkMeterProvider  # noqa: PLC0415
        from prometheus_client import CollectorRegistry, start_http_server  # noqa: PLC0415
    except ModuleNotFoundError as exc:
        raise ModuleNotFoundError(
            f"serve_prometheus needs {exc.name}: pip install 'eventwire[prometheus]'",
            name=exc.name,
        ) from exc
    if registry is None:
        registry = CollectorRegistry(auto_describe=True)
    try:
        reader = PrometheusMetricReader(
            disable_target_info=True, scope_info_enabled=False, registry=registry
        )
    except TypeError as exc:  # registry= and scope_info_enabled= came in 0.66b0
        raise ImportError(
            "serve_prometheus needs opentelemetry-exporter-prometheus>=0.66b0 "
            f"(PrometheusMetricReader with registry= and scope_info_enabled=): {exc}. "
            "Upgrade it: pip install -U 'eventwire[prometheus]'",
            name="opentelemetry.exporter.prometheus",
        ) from exc
    provider = SdkMeterProvider(metric_readers=[reader])
    try:
        server, thread = start_http_server(port, addr=addr, registry=registry)
    except OSError:
        provider.shutdown()
        raise
    return PrometheusServer(server, thread, provider, registry)
