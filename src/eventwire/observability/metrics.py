"""OpenTelemetry metrics for publishers, and the list of every eventwire instrument.

A publisher (or an :class:`~eventwire.outbox.OutboxRelay`) reports metrics when it
is given a ``meter_provider=`` or when the global MeterProvider is a real one (an
SDK) at the time it is created. With neither, it does no metrics work at all. A
publisher with an outbox hands its MeterProvider to its relay.

Every eventwire instrument (OpenTelemetry name -> Prometheus name; the Prometheus
names are a contract, kept in :data:`PROMETHEUS_NAMES`):

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
``eventwire.outbox.relay_errors``       ``eventwire_outbox_relay_errors_total``         counter:
                                                                                        step
======================================= =============================================== ============

This module makes the publisher's instruments (the first seven):

* ``outcome`` of ``eventwire.events.published`` is ``delivered`` or ``failed`` when
  an event settles (the broker's answer, a sweep at close or a fatal error, a
  synchronous rejection, or the outbox relay's ack or giving up), and ``retried``
  for an event re-sent through a replacement producer after a fatal error
  (counted at the re-send; the event is counted again, as ``delivered`` or
  ``failed``, when it settles). :meth:`PublisherMetrics.count` also accepts
  ``dead_lettered``, which eventwire itself never records here: the outbox relay
  counts its retries and dead letters in ``eventwire.outbox.relayed`` instead.
* With an outbox, a publisher adds 0 to ``in_flight_events`` and nothing to the
  queue and librdkafka-statistics gauges (its events wait in the store, and the
  relay's producer is not measured): ``eventwire.outbox.pending_events`` and
  ``eventwire.outbox.oldest_pending_age`` show the backlog.
* ``publish_duration`` is from ``publish()`` to the broker's acknowledgement, for
  delivered events. It has no labels: the SDK's ``Histogram.record`` costs several
  microseconds per call and about twice that with attributes.
* The queue gauge counts records in librdkafka's queues, read when collected.
* ``queue_bytes``, ``rtt`` and ``tx_errors`` come from librdkafka's statistics
  (``statistics.interval.ms``, 15 s by default when metrics are on; set it in
  ``overrides`` to change it, 0 to disable), so they appear only once the first
  statistics arrived: the bytes in the producer's queues, the average broker
  round-trip time of the last window, and each broker's cumulative transmission
  errors (which restart at 0 with a new producer, hence a gauge).

The circuit-breaker and outbox instruments, and what they promise, live in
:mod:`eventwire.observability.relay_metrics`; the ``/metrics`` endpoint
(:func:`serve_prometheus`, re-exported here) in :mod:`eventwire.observability.prometheus`.

Per event, a publisher with metrics adds one locked increment of a plain ``int`` (the
counter is read only at collection time) and, for a delivered event, one histogram
``record`` -- by far the larger cost, paid only with a real MeterProvider.
"""

from __future__ import annotations

import contextlib
import threading
import time
import weakref
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Literal

import msgspec
from opentelemetry.metrics import CallbackOptions, MeterProvider, Observation

from eventwire.observability import instrumentation_version
from eventwire.observability._provider import bound, resolve
from eventwire.observability.prometheus import PrometheusServer, serve_prometheus
from eventwire.observability.relay_metrics import BreakerWatch, watch_breaker

if TYPE_CHECKING:
    from eventwire._breaker import CircuitBreaker
    from eventwire._errors import DeliveryFailure
    from eventwire._handle import DeliveryHandle

__all__ = [
    "OUTCOMES",
    "PROMETHEUS_NAMES",
    "Outcome",
    "PrometheusServer",
    "PublisherMetrics",
    "make_metrics",
    "serve_prometheus",
]

Outcome = Literal["delivered", "failed", "dead_lettered", "retried"]
OUTCOMES: tuple[Outcome, ...] = ("delivered", "failed", "dead_lettered", "retried")

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
    "eventwire.outbox.relay_errors": "eventwire_outbox_relay_errors_total",
}

# Publish-to-ack seconds: from sub-millisecond (linger 0, local broker) to
# librdkafka's default message.timeout.ms (300 s).
_DURATION_BUCKETS = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
)  # fmt: skip
_time_ns = time.time_ns


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
        self._queue_len: Callable[[], int | None] | None = None
        #: The latest librdkafka statistics, if any arrived.
        self.stats: _Stats | None = None
        instruments.members.add(self)

    def watch_breaker(self, breaker: CircuitBreaker) -> None:
        """Report ``breaker``'s state and transitions (see :func:`watch_breaker`)."""
        if self.meter_provider is not None:
            self._breaker = watch_breaker(self.meter_provider, breaker)

    def track_queue(self, queue_len: Callable[[], int | None]) -> None:
        """Report ``queue_len()`` (records in the transport's queues; None: unknown) as a gauge."""
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
        # wall clock (the handle's send time is the event's ce_time): a step back
        # of the clock would make it negative, which a histogram refuses
        self._record(max(0.0, (_time_ns() - handle.sent_at_ns) / 1e9))

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

    def count_in_flight(self, count: Callable[[], int]) -> None:
        """Read ``eventwire.in_flight_events`` from ``count`` (e.g. with a backlog too)."""
        self._in_flight = count

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


def make_metrics(
    meter_provider: MeterProvider | None,
    in_flight: Callable[[], int],
) -> PublisherMetrics | None:
    """A publisher's metrics hook, or None when there is no real MeterProvider."""
    provider = resolve(meter_provider)
    if provider is None:
        return None
    return PublisherMetrics(bound(provider, _Instruments), in_flight, provider)
