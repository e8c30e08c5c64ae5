"""The synchronous publisher."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from types import TracebackType
from typing import Any

from opentelemetry.metrics import MeterProvider
from opentelemetry.propagators.textmap import TextMapPropagator
from opentelemetry.trace import TracerProvider

from eventwire._breaker import CircuitBreaker
from eventwire._codec import Codec
from eventwire._config import KafkaConfig, Profile
from eventwire._core import PublisherCore
from eventwire._errors import (
    BatchPublishError,
    ConfigurationError,
    EventwireError,
    PublisherStateError,
)
from eventwire._event import Route
from eventwire._handle import DeliveryHandle
from eventwire._outbox_mode import NoDirectTransport, OutboxMode
from eventwire.outbox.base import OutboxStore
from eventwire.transports.base import Transport

__all__ = ["Publisher"]


class Publisher:
    """Publish msgspec Struct events to Kafka, thread-safely and without blocking.

    Example::

        with Publisher("localhost:9092") as publisher:
            handle = publisher.publish(OrderPlaced(order_id="o-1", ...))
        # leaving the block flushes; undelivered events raise DeliveryError

    Promises:
        * ``publish()`` returns once the event is in the local queue; the broker's
          answer arrives in the returned :class:`DeliveryHandle`. Nobody needs to
          call ``poll()``: a background thread serves delivery reports.
        * Every event ends delivered or reported: ``flush()`` and ``close()`` raise
          :class:`DeliveryError` naming each event that failed or did not finish.
        * A full local queue is waited on for at most ``enqueue_timeout`` seconds,
          then :class:`BackpressureError` is raised; no event is dropped.
        * Keys go to the same partition as with Kafka's Java clients.

    Args:
        bootstrap_servers: ``"host:port[,host:port]"`` or a list of them.
        config: a full :class:`KafkaConfig` instead of ``bootstrap_servers``.
        profile: ``"reliable"`` (default), ``"low_latency"`` or ``"high_throughput"``.
        overrides: raw librdkafka properties, applied last.
        routes: routes for Struct classes not decorated with ``@event``.
        source: the CloudEvents ``ce_source`` of every event.
        codec: ``"json"`` (default), ``"msgpack"`` or a :class:`Codec`.
        transport: a transport to use instead of Kafka (e.g. ``MemoryTransport()``).
        enqueue_timeout: the longest ``publish()`` waits for room in a full queue.
        close_timeout: how long leaving the ``with`` block waits for deliveries.
        connect_timeout: seconds to wait at start for a broker to answer, raising
            :class:`BrokerUnavailableError` otherwise; None skips the check.
        tracer_provider: the OpenTelemetry TracerProvider for the per-event PRODUCER
            spans; default: the global one. Without an SDK no span is made, but a
            valid current trace context is still propagated in the headers.
        propagator: writes the trace context into the record headers; default: the
            global propagator (W3C ``traceparent``/``tracestate`` and ``baggage``).
        meter_provider: the OpenTelemetry MeterProvider for eventwire's metrics
            (see :mod:`eventwire.middleware.metrics`); default: the global one, and
            no metrics work at all if that is not an SDK provider.
        outbox: a durable store (:class:`~eventwire.outbox.SQLiteOutbox`,
            :class:`~eventwire.outbox.postgres.PostgresOutbox`). Then ``publish()``
            returns once the event is committed there, and a relay ships it; see
            :mod:`eventwire._outbox_mode`. No broker check runs at start.
        relay: run the outbox relay in a background thread (default). False when a
            separate ``eventwire outbox relay`` process ships the events; the
            returned handles then never get the broker's answer: no done-callback
            runs before ``close()``, ``flush()`` returns at once, and ``close()``
            settles them as ``_IN_OUTBOX``. Follow delivery with ``eventwire
            outbox status`` or the relay process's outbox gauges.
        relay_options: keyword arguments for :class:`~eventwire.outbox.OutboxRelay`
            (``batch_size``, ``dead_letter``, ``max_attempts`` ...). Not ``breaker``:
            the in-process relay's circuit breaker is fixed (CircuitBreaker's
            defaults; passing one raises TypeError).
        circuit_breaker: ``True`` or a :class:`CircuitBreaker`: once Kafka has been
            unreachable for a while (see its ``open_after_s``), ``publish()`` raises
            :class:`CircuitOpenError` at once instead of queueing, until a probe finds
            a broker again. Off by default: librdkafka's queue rides out short
            outages. Ignored with an outbox: the relay has its own breaker and
            publishes keep committing.
        producer_restarts: how many times in any 10 minutes a producer that hit a
            fatal librdkafka error (e.g. an idempotence sequence error) is replaced
            by a new one, with every unacknowledged event re-sent through it (same
            ``ce_id``; one already written may then appear twice). Beyond that, or
            with 0, or with a custom ``transport``, the fatal error fails the
            in-flight events and every later ``publish()`` raises
            :class:`ProducerFatalError`.

    Raises:
        ConfigurationError: a bad configuration key or value (named).
        BrokerUnavailableError: no broker answered within ``connect_timeout``.
    """

    def __init__(
        self,
        bootstrap_servers: str | Sequence[str] | None = None,
        *,
        config: KafkaConfig | None = None,
        profile: Profile = "reliable",
        overrides: Mapping[str, Any] | None = None,
        routes: Mapping[Any, Route] | None = None,
        source: str = "eventwire",
        codec: Codec | str = "json",
        transport: Transport | None = None,
        enqueue_timeout: float = 30.0,
        close_timeout: float = 30.0,
        connect_timeout: float | None = 10.0,
        tracer_provider: TracerProvider | None = None,
        propagator: TextMapPropagator | None = None,
        meter_provider: MeterProvider | None = None,
        circuit_breaker: CircuitBreaker | bool = False,
        producer_restarts: int = 3,
        outbox: OutboxStore | None = None,
        relay: bool = True,
        relay_options: Mapping[str, Any] | None = None,
    ) -> None:
        self._core = PublisherCore(
            bootstrap_servers,
            config=config,
            profile=profile,
            overrides=overrides,
            routes=routes,
            source=source,
            codec=codec,
            transport=transport if outbox is None else NoDirectTransport(),
            enqueue_timeout=enqueue_timeout,
            tracer_provider=tracer_provider,
            propagator=propagator,
            meter_provider=meter_provider,
            producer_restarts=producer_restarts,
            connect_timeout=connect_timeout if outbox is None else None,
        )
        self._close_timeout = close_timeout
        if outbox is None:
            self._core.use_breaker(circuit_breaker)
        self._outbox: OutboxMode | None = None
        if outbox is not None:
            self._outbox = OutboxMode(
                self._core,
                outbox,
                relay_transport=transport,
                start_relay=relay,
                relay_options=relay_options,
            )

    @property
    def config(self) -> KafkaConfig | None:
        """The Kafka configuration (None with a custom transport). Its repr hides secrets."""
        return self._core.config

    @property
    def in_flight(self) -> int:
        """Events published and not yet acknowledged or failed.

        With an outbox: those whose handles are still held (the rest wait on disk;
        see ``eventwire outbox status`` or the ``eventwire_outbox_pending_events`` gauge).
        """
        if self._outbox is not None:
            return self._outbox.waiting
        return self._core.in_flight

    def publish(
        self,
        event: Any,
        *,
        event_id: str | None = None,
        headers: Sequence[tuple[str, bytes]] | None = None,
    ) -> DeliveryHandle:
        """Enqueue ``event`` and return its delivery handle.

        Args:
            event: a msgspec Struct instance with a route.
            event_id: the ``ce_id`` to use (e.g. when re-sending); a new UUIDv7 if None.
            headers: extra Kafka headers, appended after the CloudEvents ones.

        Raises:
            RoutingError: not a Struct, no route, or a missing/unencodable key.
            SerializationError: the value cannot be encoded.
            DeliveryError: Kafka refused it at once (e.g. larger than message.max.bytes).
            BackpressureError: the queue stayed full for ``enqueue_timeout``.
            PublisherStateError: the publisher is closed or was inherited by fork.
            ProducerFatalError: the producer hit a fatal error earlier.
        """
        core = self._core
        if core.unusable:
            core.check_usable()
        if self._outbox is not None:
            with core.gate():  # a publish racing close() commits nothing, or is settled
                return self._outbox.publish(event, event_id, headers)
        topic, key, value, hdrs, handle = core.prepare(event, event_id, headers)
        if not core.try_send(topic, key, value, hdrs, handle):
            core.send_blocking(topic, key, value, hdrs, handle)
        return handle

    def publish_many(
        self, events: Iterable[Any], *, event_ids: Sequence[str] | None = None
    ) -> list[DeliveryHandle]:
        """Publish several events, in order; return their handles.

        Every event is routed and encoded first, so an invalid event raises
        (RoutingError, SerializationError) before *any* of them is enqueued.
        Delivery failures are per event, in the handles.

        Without an outbox the events are then enqueued one by one, and a queue
        is not all-or-nothing: if event ``k`` cannot be enqueued (the queue stayed
        full for ``enqueue_timeout``, it was refused as too large, the publisher
        began closing), :class:`BatchPublishError` is raised with the handles of
        events ``0..k-1`` (enqueued; they are reported as usual) and the ce_id of
        every event, for a re-send of the rest with ``event_ids=``. With an outbox
        the batch is one transaction: all of it is committed, or none.

        Args:
            events: the events, in publish order.
            event_ids: the ``ce_id`` of each event (e.g. to re-send a batch under
                the ids it was first given); new UUIDv7s if None.

        Raises:
            BatchPublishError: see above (``__cause__`` is the event's own error).
            ValueError: ``event_ids`` does not have one id per event.
            and the errors of :meth:`publish` raised before anything is enqueued.
        """
        core = self._core
        core.check_usable()
        batch = list(events)
        ids: Sequence[str | None] = [None] * len(batch) if event_ids is None else event_ids
        if len(ids) != len(batch):
            raise ConfigurationError(
                f"publish_many got {len(batch)} events but {len(ids)} event_ids; "
                "pass one id per event, in the same order"
            )
        if self._outbox is not None:
            with core.gate():  # one transaction, one fsync: all or nothing
                return self._outbox.publish_many(batch, ids)
        prepared = [core.prepare(e, i, None, traced=False) for e, i in zip(batch, ids, strict=True)]
        for n, (topic, key, value, hdrs, handle) in enumerate(prepared):
            core.trace(key, value, hdrs, handle)  # a span only for an event really sent
            try:
                core.send_blocking(topic, key, value, hdrs, handle)
            except EventwireError as exc:
                handles = [p[4] for p in prepared]
                ids_given = [h.event_id for h in handles]
                raise BatchPublishError(handles[:n], ids_given, n, exc) from exc
        return [p[4] for p in prepared]

    def stage(
        self,
        event: Any,
        *,
        connection: Any,
        event_id: str | None = None,
        headers: Sequence[tuple[str, bytes]] | None = None,
    ) -> str:
        """Add ``event`` to the outbox inside *your* open transaction; return its ce_id.

        ``connection`` is the sqlite3 / psycopg connection (or SQLAlchemy Session)
        of your domain write: the event is sent if and only if you commit it.

        Raises:
            PublisherStateError: the publisher has no outbox.
            RoutingError, SerializationError: as :meth:`publish`, before anything is written.
        """
        if self._outbox is None:
            raise PublisherStateError(
                "stage() needs an outbox: create the publisher with outbox=SQLiteOutbox(...) "
                "or PostgresOutbox(...)"
            )
        self._core.check_usable()
        return self._outbox.stage(event, connection, event_id, headers)

    def flush(self, timeout: float = 30.0) -> None:
        """Wait up to ``timeout`` s for every outstanding event.

        With an outbox it waits for the events this publisher published and still
        tracks (not staged ones), and raises only for events given up on
        (dead-lettered or parked), or when the relay cannot run; see
        :mod:`eventwire._outbox_mode`.

        Raises:
            DeliveryError: listing every event that failed since the last flush,
                and every event still unacknowledged when the timeout ran out
                (code ``_FLUSH_TIMEOUT``; those remain queued and may still land).
            RelayFailingError: (outbox) events still wait and the in-process relay
                cannot run (its thread died, or its rounds keep failing); the
                message says why. The events are safe on disk.
        """
        if self._outbox is not None:
            self._outbox.flush(timeout)
            return
        self._core.flush(timeout)

    def close(self, timeout: float | None = None) -> None:
        """Flush for up to ``timeout`` s (default ``close_timeout``), then stop.

        From the moment ``close()`` begins, ``publish()`` on any thread raises
        :class:`PublisherStateError` without enqueueing (or committing) the event;
        publishes already under way finish first and are covered by this close.
        Events still queued after the timeout are dropped *and reported*:
        DeliveryError lists them (``_PURGE_QUEUE``/``_PURGE_INFLIGHT``) with every
        other failure. The producer is destroyed before this returns, so nothing
        is sent afterwards. Closing twice is a no-op.

        With an outbox nothing is dropped: handles still waiting settle with
        ``_IN_OUTBOX`` (the event is durable and the next relay sends it; do not
        re-send it), and only events given up on raise (or RelayFailingError, as
        for :meth:`flush`).
        """
        timeout = self._close_timeout if timeout is None else timeout
        if self._outbox is None:
            self._core.close(timeout)
        elif self._core.begin_close(timeout):  # no publish gets past this any more
            try:
                self._outbox.close(timeout)
            finally:
                self._core.finish_close(0)

    def __enter__(self) -> Publisher:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._core.closed else f"in_flight={self.in_flight}"
        return f"<Publisher {self.config!r} {state}>"
