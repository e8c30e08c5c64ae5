"""The publisher core: the composition root and the record factory of both façades.

:class:`PublisherCore` builds the router, codec, in-flight ledger, tracing,
metrics and (without an outbox) the producer from one :class:`Options`, and
turns an event into a :class:`Record`. Where the record goes is the sink's
business: the producer (direct) or the outbox. Every event's state after that
lives in the ledger (:mod:`eventwire._inflight`).
"""

from __future__ import annotations

import os
import time
import weakref
from collections.abc import Callable, Iterable, Sequence
from typing import Any, ClassVar

from eventwire import _unclosed
from eventwire._breaker import BreakerState, CircuitBreaker, connection_probe
from eventwire._cloudevents import CE_HEADER_COUNT, check_event_id, check_extra_headers
from eventwire._cloudevents import uuid7 as _uuid7
from eventwire._codec import (
    ENCODE_ERRORS,
    Codec,
    SerializationContext,
    TopicCodec,
    resolve_codec,
)
from eventwire._config import KafkaConfig
from eventwire._errors import (
    ConfigurationError,
    DeliveryFailure,
    ProducerFatalError,
    PublisherStateError,
    RoutingError,
    SerializationError,
)
from eventwire._handle import DeliveryHandle
from eventwire._inflight import CLOSED_REASON, InFlight
from eventwire._options import Options
from eventwire._producer import Producer
from eventwire._record import Record
from eventwire._router import Router
from eventwire.observability.metrics import Outcome, PublisherMetrics, make_metrics
from eventwire.observability.tracing import BatchSpan, Tracing, current_context, make_tracing
from eventwire.transports.base import BaseTransport

__all__ = ["PublisherCore"]

_time_ns = time.time_ns


class _ForkWatch:
    """Counts forks, so a publisher can tell it is running in a forked child."""

    generation = 0
    cores: ClassVar[weakref.WeakSet[PublisherCore]] = weakref.WeakSet()

    @classmethod
    def bump(cls) -> None:
        cls.generation += 1
        for core in list(cls.cores):
            core.unusable = True


os.register_at_fork(after_in_child=_ForkWatch.bump)


class PublisherCore:
    """Builds one publisher's parts from its options and turns events into records.

    Args:
        options: the publisher's resolved options.
        direct: True to publish through a producer (no outbox); False for outbox
            mode, where the outbox sink and its relay own the Kafka side.

    Raises:
        ConfigurationError: a bad option (no bootstrap servers, a bad config key ...).
        BrokerUnavailableError: no broker answered within ``connect_timeout``
            (direct mode, Kafka transport).
    """

    def __init__(self, options: Options, *, direct: bool = True) -> None:
        self.options = options
        codec = resolve_codec(options.codec)
        #: A codec told each value's topic (None: a plain Codec, the fast path).
        self._topic_codec = codec if isinstance(codec, TopicCodec) else None
        self._codec = codec
        # The router binds each class's encoder to its route: when the codec is ours,
        # the bare encoder of that class (msgspec's, or pydantic's serializer for a
        # model; one call less per event) and the codec's per-type check of what it
        # cannot carry (JSON: NaN, infinity).
        encoder_for = getattr(codec, "encoder_for", None)
        encoder: Callable[[type], Callable[[Any], bytes]] | None = None
        if self._topic_codec is None:
            plain = codec.encode if isinstance(codec, Codec) else _topic_codec_only
            encoder = encoder_for or (lambda _cls: plain)
        self._router = Router(
            options.routes,
            source=options.source,
            content_type=self._codec.content_type,
            value_check=getattr(self._codec, "finite_check", None) if encoder_for else None,
            encoder=encoder,
        )
        self._routes = self._router.cache  # hot path: one dict lookup per event
        #: The single owner of every enqueued, unacknowledged event.
        self.ledger = InFlight()
        #: True once closing, closed, fatal, forked or the circuit is open: the hot
        #: path tests this one flag.
        self.unusable = False
        self._closing = False
        #: A close() was cut short (KeyboardInterrupt, SystemExit): the next one finishes it.
        self.close_interrupted = False
        self._fork_generation = _ForkWatch.generation
        _ForkWatch.cores.add(self)
        #: The Kafka configuration (None with a custom transport).
        self.config = _build_config(options)
        #: Spans and trace propagation (always present: without an SDK it only propagates).
        self.tracing: Tracing = make_tracing(
            options.tracer_provider,
            options.propagator,
            create_spans=options.trace_create_spans,
        )
        #: None unless a real MeterProvider is configured.
        self.metrics: PublisherMetrics | None = make_metrics(
            options.meter_provider, self.ledger.__len__
        )
        if self.metrics is not None:
            self.ledger.on_settle(self.metrics.settled, abandoned=True)
        self.breaker: CircuitBreaker | None = None
        #: The producer (direct mode only).
        self.producer: Producer | None = self._make_producer() if direct else None
        # Events keep what a re-send needs only when a replacement is possible.
        self._keeps_records = self.producer is not None and self.producer.keeps_records
        #: Events a façade holds outside the ledger (AsyncPublisher's backlog, the async
        #: outbox's queue), for the exit check of a publisher never closed.
        self.held_elsewhere: Callable[[], int] = _nothing_held
        _unclosed.track(self)  # until its closing ends (see eventwire._unclosed)

    def _make_producer(self) -> Producer:
        options = self.options
        transport = options.transport
        if transport is None:
            transport = self.kafka_transport(connect_timeout=options.connect_timeout)
        producer = Producer(
            transport,
            self.ledger,
            restarts=options.producer_restarts,
            enqueue_timeout=options.enqueue_timeout,
            template_for=self._router.template_for,
            on_fatal=self._went_fatal,
            on_resent=self._count_resent,
        )
        if self.metrics is not None:
            self.metrics.track_queue(producer.queue_length)
        return producer

    def kafka_transport(
        self, *, connect_timeout: float | None, measured: bool = True
    ) -> BaseTransport:
        """A new Kafka transport for this publisher's configuration.

        ``measured``: its librdkafka statistics feed this publisher's gauges (the
        producer's own; not an outbox relay's, whose backlog the outbox gauges show).
        """
        from eventwire.transports.kafka import KafkaTransport  # noqa: PLC0415

        config = self.config
        if config is None:  # pragma: no cover - _build_config refuses this
            raise ConfigurationError("no Kafka configuration")
        metrics = self.metrics if measured else None
        on_stats = metrics.on_stats if metrics is not None else None
        return KafkaTransport(config, connect_timeout=connect_timeout, on_stats=on_stats)

    # -- state ------------------------------------------------------------------------------
    def check_usable(self) -> None:
        """Raise unless new events may be published."""
        if self._fork_generation != _ForkWatch.generation:
            raise PublisherStateError(
                "this publisher was created before os.fork() and cannot be used in the "
                "child process (librdkafka's threads do not survive a fork). Create the "
                "publisher in the child, e.g. in a post-fork hook."
            )
        if self._closing or self.ledger.closed:
            raise PublisherStateError(CLOSED_REASON)
        if self.producer is not None and self.producer.fatal is not None:
            raise self.producer.fatal
        breaker = self.breaker
        if breaker is not None and not breaker.allow():
            raise breaker.open_error("the event")

    def _on_breaker(self, state: BreakerState) -> None:
        """An open circuit raises the hot path's flag; closing lowers it unless closed/fatal."""
        if state is BreakerState.CLOSED:
            self.unusable = (
                self._closing
                or self.ledger.closed
                or (self.producer is not None and self.producer.fatal is not None)
                or self._fork_generation != _ForkWatch.generation
            )
        else:
            self.unusable = True

    def _went_fatal(self, _error: ProducerFatalError) -> None:
        self.unusable = True

    def use_breaker(self, breaker: CircuitBreaker | bool) -> None:
        """Fail fast while ``breaker`` is open; feed it errors and deliveries.

        ``True`` makes a default breaker whose half-open probe is a Metadata request.
        An unnamed breaker is named ``"publisher"`` (in logs and metrics).
        """
        producer = self.producer
        if breaker is False or producer is None:
            return
        if breaker is True:
            breaker = CircuitBreaker(probe=connection_probe(lambda: producer.transport))
        self.breaker = breaker
        breaker.name = breaker.name or "publisher"
        if self.metrics is not None:
            self.metrics.watch_breaker(breaker)
        breaker.observe(self._on_breaker)
        producer.add_error_listener(breaker.record_failure)
        self.ledger.on_settle(_feed(breaker))

    # -- building records ----------------------------------------------------------------
    def is_event(self, obj: object) -> bool:
        """Whether ``obj`` is an event this publisher can route (a list or tuple never is)."""
        cls = type(obj)
        if cls is list or cls is tuple:
            return False
        try:
            self._router.resolve(cls)  # (cached once bound)
        except RoutingError:
            return False
        return True

    def prepare(
        self,
        event: Any,
        event_id: str | None,
        headers: Sequence[tuple[str, bytes]] | None,
        traced: bool = True,
    ) -> Record:
        """Route, key, encode and stamp one event; raise before anything is enqueued.

        With ``traced`` (the default) the event's span starts here and the trace
        context is added to its headers; otherwise call :meth:`trace` before sending.

        Raises:
            RoutingError: no route, or a key that is missing or not valid text.
            SerializationError: the value cannot be encoded (or holds a NaN/infinity
                JSON cannot carry), a bad ``event_id``, or a bad or reserved header.
        """
        route = self._routes.get(type(event)) or self._router.resolve(type(event))
        field = route.key_field
        if field is None:
            key = route.key_of(event)
        else:  # route.key_of, inlined for a key field holding text (hot path)
            try:
                text = field(event)
                key = text.encode() if type(text) is str else route.key_of(event)
            except Exception:
                key = route.key_of(event)  # raises the RoutingError that explains
        if headers:
            headers = check_extra_headers(headers)
        if self._topic_codec is None:
            try:
                value = route.encode(event)
            except ENCODE_ERRORS:
                value = self._explain_encode_error(event)
            if route.check_value is not None:
                route.check_value(event)
        else:
            value, headers = self._encode_for(self._topic_codec, route.topic, event, headers)
        now_ns = _time_ns()
        eid = str(_uuid7()) if event_id is None else check_event_id(event_id)
        record_headers = route.headers.build(eid, now_ns // 1_000_000, headers)
        handle = DeliveryHandle(self.ledger, eid, route.type_name, route.topic, now_ns)
        if traced:  # (the body of trace(), inlined: this runs once per event)
            tracing = self.tracing
            # Without an SDK, only a caller's context is passed on: skip the call when
            # there is none (an empty Context).
            if tracing.spans or current_context():
                tracing.start(handle, key, record_headers, len(value))
            if self._keeps_records:  # (_keep_for_resend, inlined)
                handle._key = key
                handle._value = value
                if len(record_headers) > CE_HEADER_COUNT:
                    handle._extra = tuple(record_headers[CE_HEADER_COUNT:])
        return Record(route.topic, key, value, record_headers, handle)

    def _encode_plain(self, event: Any) -> bytes:
        assert isinstance(self._codec, Codec)
        return self._codec.encode(event)

    @staticmethod
    def _encode_for(
        codec: TopicCodec,
        topic: str,
        event: Any,
        headers: Sequence[tuple[str, bytes]] | None,
    ) -> tuple[bytes, Sequence[tuple[str, bytes]] | None]:
        """Encode with a TopicCodec; its headers go first among the extra ones."""
        ctx = SerializationContext(topic)
        try:
            value = codec.encode_for(event, ctx)
        except SerializationError:
            raise
        except Exception as exc:  # a codec of the caller's that raised something else
            raise SerializationError(
                f"cannot encode {type(event).__qualname__} for topic {topic!r} with "
                f"{type(codec).__qualname__}: {exc!r}"
            ) from exc
        if not isinstance(value, bytes):
            raise SerializationError(
                f"{type(codec).__qualname__}.encode_for returned {type(value).__name__} for "
                f"a {type(event).__qualname__}, not bytes"
            )
        if ctx.headers:
            headers = [*ctx.headers, *(headers or ())]
        return value, headers

    def _explain_encode_error(self, event: Any) -> bytes:
        """Raise the SerializationError that explains why the bare encoder failed.

        Returns the value if the codec encodes it this time after all.
        """
        try:
            value = self._encode_plain(event)  # ours raises the SerializationError
        except SerializationError:
            raise
        except Exception as again:  # a Codec of the caller's that raised something else
            raise SerializationError(
                f"cannot encode {type(event).__qualname__} with "
                f"{type(self._codec).__qualname__}: {again!r}"
            ) from again
        return value

    def trace(self, record: Record) -> None:
        """Start the span of a record prepared with ``traced=False``; keep what a re-send needs."""
        self.tracing.start(record.handle, record.key, record.headers, len(record.value))
        if self._keeps_records:
            _keep_for_resend(record)

    def trace_batch(self, records: list[Record]) -> BatchSpan | None:
        """One ``send`` span for records prepared with ``traced=False`` (``publish_many``).

        Every record carries the batch's trace context (or its own ``create`` span's);
        keeps what a re-send needs. Returns the batch span's tracker (tell it of the
        records never sent), or None when nothing records.
        """
        batch = (
            self.tracing.start_batch(records) if self.tracing.spans or current_context() else None
        )
        if self._keeps_records:
            for record in records:
                _keep_for_resend(record)
        return batch

    def count_outcome(self, topic: str, outcome: Outcome, n: int = 1) -> None:
        """Count ``n`` events of ``topic`` with ``outcome`` (no-op without metrics)."""
        if self.metrics is not None:
            self.metrics.count(topic, outcome, n)

    def _count_resent(self, handles: list[DeliveryHandle]) -> None:
        for topic, n in _count_by_topic(handles).items():
            self.count_outcome(topic, "retried", n)

    # -- flush and close ---------------------------------------------------------------------
    def flush(self, timeout: float) -> None:
        """Wait up to ``timeout`` s; raise DeliveryError for any failure or straggler.

        Raises:
            PublisherStateError: called from a delivery callback of a transport that
                cannot be re-entered there (Kafka): it would abort the process.
        """
        if self._fork_generation != _ForkWatch.generation:
            self.check_usable()
        self._refuse_inside_a_callback("flush()")
        if self.close_interrupted:
            raise PublisherStateError(
                f"flush({timeout:g}): close() was cut short (an interrupt or exit during it), "
                f"so {self.in_flight} event(s) may still be unreported and the producer may "
                "still run: call close() again to finish closing and report them"
            )
        timed_out = False
        if self.producer is not None and not self.ledger.closed:
            timed_out = self.producer.flush(timeout)
        error = self.ledger.failures_error(timed_out, f"flush({timeout:g})")
        if error is not None:
            raise error

    def close(self, timeout: float) -> None:
        """Flush up to ``timeout`` s, drop and report the rest, destroy the producer.

        From the moment this begins every send is refused (PublisherStateError,
        nothing enqueued); the sends already under way finish first, so their
        events are flushed, or dropped and reported, with the rest.
        """
        if self.begin_close(timeout):
            self.finish_close(timeout)

    def begin_close(self, timeout: float) -> bool:
        """Shut the close gate and wait for the sends already past it (bounded).

        Returns False if the publisher was already closed (or is a forked child's
        copy, which must not touch the parent's producer): nothing left to do.

        Raises:
            PublisherStateError: called from a delivery callback of a transport that
                cannot be re-entered there (Kafka); nothing was closed.
        """
        self._refuse_inside_a_callback("close()")
        self.refuse_publishing()
        if not self.ledger.shut(timeout):
            return False
        return self._fork_generation == _ForkWatch.generation

    def _refuse_inside_a_callback(self, what: str) -> None:
        producer = self.producer
        if producer is not None and producer.transport.in_report_callback():
            raise PublisherStateError(
                f"{what} cannot run inside a delivery callback (a done-callback): the "
                "Kafka client cannot be re-entered there. Call it from your own thread, "
                "e.g. after the callback has signalled it."
            )

    def refuse_publishing(self) -> None:
        """From now on every new publish raises PublisherStateError (``close()`` began).

        Sends already accepted are not affected: the close gate (:meth:`begin_close`)
        waits for them. AsyncPublisher calls this first, then drains its backlog.
        """
        self._closing = True
        self.unusable = True

    def finish_close(self, timeout: float) -> None:
        """After :meth:`begin_close`: flush, drop and report the rest, destroy the producer."""
        try:
            if self.producer is not None:
                self.producer.close(timeout)
            self.ledger.fail_all("_NOT_REPORTED", "no delivery report arrived before close")
            _unclosed.forget(self)  # closed (not when cut short: the next close() ends it)
        finally:
            if self.metrics is not None:
                self.metrics.close()
        error = self.ledger.failures_error(False, f"close({timeout:g})")
        if error is not None:
            raise error

    @property
    def closed(self) -> bool:
        """True once close() has started."""
        return self.ledger.closed

    @property
    def in_flight(self) -> int:
        """Events published but not yet settled."""
        return len(self.ledger)


def _nothing_held() -> int:
    return 0


def _topic_codec_only(event: Any) -> bytes:
    raise AssertionError("a TopicCodec is called with encode_for")  # pragma: no cover


def _feed(breaker: CircuitBreaker) -> Callable[[DeliveryHandle, DeliveryFailure | None], None]:
    """A settle hook telling ``breaker`` of each delivery and connectivity failure."""

    def hook(_handle: DeliveryHandle, failure: DeliveryFailure | None) -> None:
        if failure is None:
            if breaker.failing:
                breaker.record_success()
        else:
            breaker.record_failure(failure.code, failure.reason)

    return hook


def _build_config(options: Options) -> KafkaConfig | None:
    if options.config is not None:
        if options.bootstrap_servers is not None or options.overrides:
            raise ConfigurationError(
                "pass either config=KafkaConfig(...) or bootstrap_servers/overrides, not both"
            )
        return options.config
    bootstrap = options.bootstrap_servers
    if bootstrap is None:
        if options.transport is not None:
            return None
        raise ConfigurationError(
            "no bootstrap_servers: pass e.g. Publisher('localhost:9092'), "
            "a config=, or a transport="
        )
    if not isinstance(bootstrap, str):
        entries: list[object] = list(bootstrap) if isinstance(bootstrap, Iterable) else [bootstrap]
        texts = [entry for entry in entries if isinstance(entry, str)]
        if len(texts) != len(entries):
            kinds = ", ".join(sorted({type(entry).__name__ for entry in entries}))
            raise ConfigurationError(
                "bootstrap_servers must be 'host:port[,host:port...]' or a list of "
                f"'host:port' str, not a {type(bootstrap).__name__} of {kinds}"
            )
        bootstrap = ",".join(texts)
    return KafkaConfig(bootstrap, profile=options.profile, overrides=dict(options.overrides or {}))


def _keep_for_resend(record: Record) -> None:
    """Keep on the handle what a re-send needs: key, value, non-CloudEvents headers.

    The CloudEvents headers are rebuilt from the handle (id, type, time) instead of
    kept: holding every in-flight event's header list costs more garbage-collector
    and allocator work per event than rebuilding the six headers on a re-send.
    """
    handle, headers = record.handle, record.headers
    handle._key = record.key
    handle._value = record.value
    if len(headers) > CE_HEADER_COUNT:
        handle._extra = tuple(headers[CE_HEADER_COUNT:])


def _count_by_topic(handles: list[DeliveryHandle]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for handle in handles:
        counts[handle.topic] = counts.get(handle.topic, 0) + 1
    return counts
