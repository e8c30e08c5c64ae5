"""OpenTelemetry tracing: a PRODUCER span per event (or per batch), ended by the broker's answer.

eventwire uses the OpenTelemetry *API* only, and only its public functions: which
SDK (if any) records spans, how it samples and how it draws ids are the
application's choice, made through ``Publisher(tracer_provider=..., propagator=...)``
or the global provider and propagator. Both are resolved when the publisher is
created, so configure OpenTelemetry before creating publishers. eventwire reads
no SDK attribute and replaces nothing of the provider's (sampler, id generator):
every span is asked of ``Tracer.start_span``, which lets the application's
sampler decide.

What a traced ``publish()`` gets (messaging semantic conventions, Kafka flavour):

* a span named ``send <topic>``, kind PRODUCER, whose parent is the caller's current
  context, with ``messaging.system=kafka``, ``messaging.operation.name=send``,
  ``messaging.operation.type=send``, ``messaging.destination.name``,
  ``messaging.message.id`` (the ``ce_id``), ``messaging.kafka.message.key`` and
  ``messaging.message.body.size`` (given to ``start_span``, so samplers see them);
* on the broker's ack, ``messaging.destination.partition.id`` (a string) and
  ``messaging.kafka.offset``; on failure, status ERROR with the failure's description,
  ``error.type`` = the Kafka error name (``MSG_SIZE_TOO_LARGE``, ``_MSG_TIMED_OUT``...)
  and an exception event;
* W3C ``traceparent``/``tracestate`` (and ``baggage``) record headers, written by the
  propagator after the CloudEvents headers.

The span starts in ``publish()`` and ends exactly once, when the event settles: its
delivery report, a fatal-error or ``close()`` sweep, or a synchronous rejection
(too large, queue full past ``enqueue_timeout``, fatal producer).

``publish_many()`` makes ONE span for the batch, as the conventions ask of a batch
send: ``send <topic>`` (``send`` when the batch spans several topics), with
``messaging.batch.message_count`` and, for one topic, ``messaging.destination.name``.
Each record carries the batch span's context as its traceparent. It ends when the
last event of the batch settles; status ERROR (``error.type`` of the first failure,
``eventwire.batch.failed_count``) if any failed. With ``trace_create_spans=True``
each event also gets a ``create <topic>`` span (kind PRODUCER, operation ``create``,
ended at once) whose context its record carries; the send span is then of kind
CLIENT and links to every create span.

Without an SDK nothing is done per event beyond reading the current context.

**A sampled-out root (choice):** when the caller has no valid span context and the
span is not sampled, **nothing is injected**. There is no trace to continue: the
trace id would exist nowhere else, and a ``...-00`` traceparent would only make
parent-based consumers drop their own traces. When the caller *does* have a valid
(sampled or not) span context, it is always propagated.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, Final

from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.propagators.textmap import Setter, TextMapPropagator
from opentelemetry.trace import (
    Link,
    NoOpTracerProvider,
    ProxyTracerProvider,
    SpanKind,
    Status,
    StatusCode,
    TracerProvider,
)

from eventwire._errors import ErrorClass
from eventwire.observability import instrumentation_version

if TYPE_CHECKING:
    from opentelemetry.context import Context
    from opentelemetry.trace import Span

    from eventwire._errors import DeliveryFailure
    from eventwire._handle import DeliveryHandle
    from eventwire._record import Record
    from eventwire.transports.base import ReportMessage

__all__ = [
    "BatchSpan",
    "HeaderSetter",
    "Tracing",
    "current_context",
    "finish_span",
    "make_tracing",
]

#: ``opentelemetry.context.get_current`` (the public API; whatever runtime context
#: the application chose).
current_context: Final = otel_context.get_current
_get_current_span = trace.get_current_span
_set_span_in_context = trace.set_span_in_context
_PRODUCER = SpanKind.PRODUCER
_CLIENT = SpanKind.CLIENT


class HeaderSetter(Setter[list[tuple[str, bytes]]]):
    """Writes propagation fields into Kafka headers, as ``(str, bytes)`` tuples appended."""

    def set(self, carrier: list[tuple[str, bytes]], key: str, value: str) -> None:
        """Append header ``key`` with ``value`` encoded as UTF-8."""
        carrier.append((key, value.encode()))


_SETTER: Final = HeaderSetter()


def _has_parent(ctx: Context) -> bool:
    """True if ``ctx`` holds a valid span context (a trace to continue)."""
    return bool(ctx) and _get_current_span(ctx).get_span_context().is_valid


class Tracing:
    """The tracing hooks of one publisher: propagation only, or spans as well.

    ``start`` runs in ``publish()`` after the record is built; :func:`finish_span`
    runs once when the event settles, only for recording spans (``handle._on_end``).

    Args:
        tracer: the application's tracer; None without an SDK (propagation only).
        propagator: the propagator; None for the global one (read per inject, so
            one set later is used).
        create_spans: in ``publish_many``, a ``create`` span per event as well as
            the batch's ``send`` span.
    """

    __slots__ = ("_create_spans", "_propagator", "_topics", "_tracer", "spans")

    def __init__(
        self,
        tracer: trace.Tracer | None,
        propagator: TextMapPropagator | None,
        *,
        create_spans: bool = False,
    ) -> None:
        self._tracer = tracer
        self._propagator = propagator
        self._create_spans = create_spans
        #: Per topic: the span name and the attributes every span of it shares.
        self._topics: dict[str, tuple[str, dict[str, str | int]]] = {}
        #: False when no SDK is configured: the publisher only propagates.
        self.spans = tracer is not None

    def _topic(self, topic: str) -> tuple[str, dict[str, str | int]]:
        shared = self._topics.get(topic)
        if shared is None:
            shared = self._topics[topic] = (
                f"send {topic}",
                {
                    "messaging.system": "kafka",
                    "messaging.operation.name": "send",
                    "messaging.operation.type": "send",
                    "messaging.destination.name": topic,
                },
            )
        return shared

    # -- publish ---------------------------------------------------------------------
    def start(
        self, handle: DeliveryHandle, key: bytes | None, headers: list[tuple[str, bytes]], size: int
    ) -> None:
        """Start the event's span (the sampler decides) and inject its context into ``headers``."""
        ctx = current_context()
        tracer = self._tracer
        if tracer is None:  # no SDK: pass a caller's trace on, unchanged
            if _has_parent(ctx):
                self._inject(headers, ctx)
            return
        name, shared = self._topics.get(handle.topic) or self._topic(handle.topic)
        attributes = shared.copy()
        attributes["messaging.message.id"] = handle.event_id
        attributes["messaging.message.body.size"] = size
        if key is not None:
            attributes["messaging.kafka.message.key"] = key.decode("utf-8", "replace")
        span = tracer.start_span(name, ctx, _PRODUCER, attributes)
        if span.is_recording():
            handle._on_end = functools.partial(finish_span, span)
        elif not _has_parent(ctx):
            return  # a sampled-out root: nothing to continue (see the module docstring)
        self._inject(headers, _set_span_in_context(span, ctx))

    def start_batch(self, records: Sequence[Record]) -> BatchSpan | None:
        """One ``send`` span for ``records`` (and ``create`` spans if asked); inject contexts.

        Returns the batch's span tracker (tell it of records never sent), or None
        when nothing records.
        """
        if not records:
            return None
        ctx = current_context()
        tracer = self._tracer
        if tracer is None:
            if _has_parent(ctx):
                self._inject_all(records, ctx)
            return None
        topics = {r.topic for r in records}
        topic = next(iter(topics)) if len(topics) == 1 else None
        if topic is not None:
            name, shared = self._topics.get(topic) or self._topic(topic)
            attributes = shared.copy()
        else:
            name, attributes = (
                "send",
                {
                    "messaging.system": "kafka",
                    "messaging.operation.name": "send",
                    "messaging.operation.type": "send",
                },
            )
        attributes["messaging.batch.message_count"] = len(records)
        made: list[tuple[Span, bool]] | None = None
        links: list[Link] | None = None
        kind = _PRODUCER
        if self._create_spans:
            made = [self._create(tracer, ctx, r) for r in records]
            links = [Link(span.get_span_context()) for span, recording in made if recording]
            kind = _CLIENT  # the create spans are the messages' creation contexts
        span = tracer.start_span(name, ctx, kind, attributes, links)
        batch: BatchSpan | None = None
        if span.is_recording():
            batch = BatchSpan(span, len(records))
            for record in records:
                record.handle._on_end = batch.settled
        if made is not None:
            for record, (create, recording) in zip(records, made, strict=True):
                if recording or _has_parent(ctx):
                    self._inject(record.headers, _set_span_in_context(create, ctx))
        elif batch is not None or _has_parent(ctx):
            self._inject_all(records, _set_span_in_context(span, ctx))
        return batch

    @staticmethod
    def _create(tracer: trace.Tracer, ctx: Context, record: Record) -> tuple[Span, bool]:
        """A ``create`` span for one record of a batch, ended at once; and if it recorded."""
        attributes: dict[str, str | int] = {
            "messaging.system": "kafka",
            "messaging.operation.name": "create",
            "messaging.operation.type": "create",
            "messaging.destination.name": record.topic,
            "messaging.message.id": record.handle.event_id,
            "messaging.message.body.size": len(record.value),
        }
        if record.key is not None:
            attributes["messaging.kafka.message.key"] = record.key.decode("utf-8", "replace")
        span = tracer.start_span(f"create {record.topic}", ctx, _PRODUCER, attributes)
        recording = span.is_recording()
        span.end()
        return span, recording

    def _inject_all(self, records: Sequence[Record], ctx: Context) -> None:
        """Inject one context into every record (computed once, copied to each)."""
        fields: list[tuple[str, bytes]] = []
        self._inject(fields, ctx)
        for record in records:
            record.headers.extend(fields)

    def _inject(self, headers: list[tuple[str, bytes]], ctx: Context) -> None:
        propagator = self._propagator or propagate.get_global_textmap()
        propagator.inject(headers, ctx, _SETTER)


#: ``eventwire.outcome`` of a span whose event was left, durable, in the outbox at close.
_IN_OUTBOX_OUTCOME: Final = "in_outbox"


def finish_span(span: Span, msg: ReportMessage | None, failure: DeliveryFailure | None) -> None:
    """End a recording span with the broker's answer (called exactly once per span)."""
    if failure is None:
        if msg is not None:
            # Only what Kafka told: no offset with acks=0, and -1 for a row another
            # process's relay shipped (that relay saw where it went).
            partition, offset = msg.partition(), msg.offset()
            if partition is not None and partition >= 0 and offset is not None and offset >= 0:
                span.set_attributes(  # the common case: one call into the SDK
                    {
                        "messaging.destination.partition.id": str(partition),
                        "messaging.kafka.offset": offset,
                    }
                )
            elif partition is not None and partition >= 0:
                span.set_attribute("messaging.destination.partition.id", str(partition))
    elif failure.error_class is ErrorClass.DEFERRED:
        _defer(span, failure)
    else:
        _fail(span, failure)
    span.end()


def _defer(span: Span, failure: DeliveryFailure) -> None:
    """Not a failure (``_IN_OUTBOX``): the event is durable and the next relay sends it.

    The span ends with its status unset and says so in ``eventwire.outcome``.
    """
    span.set_attribute("eventwire.outcome", _IN_OUTBOX_OUTCOME)
    span.add_event("deferred", {"eventwire.reason": failure.describe()})


def _fail(span: Span, failure: DeliveryFailure) -> None:
    description = failure.describe()
    span.set_attribute("error.type", failure.code)
    span.add_event(
        "exception",
        {"exception.type": "eventwire.DeliveryError", "exception.message": description},
    )
    span.set_status(Status(StatusCode.ERROR, description))


class BatchSpan:
    """The ``send`` span of one ``publish_many`` batch: ends when its last event settles.

    Each event's settlement calls :meth:`settled` once (it is every handle's
    ``_on_end``); events of the batch that were never sent are counted off with
    :meth:`unsent`. Reports may arrive on several threads: a lock guards the count.
    The span fails (``eventwire.batch.failed_count``) if any event failed; events
    only left in the outbox at close (``_IN_OUTBOX``) are no failure.
    """

    __slots__ = ("_deferred", "_failed", "_first", "_left", "_lock", "_span")

    def __init__(self, span: Span, count: int) -> None:
        self._span = span
        self._left = count
        self._failed = 0
        self._first: DeliveryFailure | None = None  # the first real failure
        self._deferred: DeliveryFailure | None = None  # the first _IN_OUTBOX
        self._lock = threading.Lock()

    def settled(self, _msg: ReportMessage | None, failure: DeliveryFailure | None) -> None:
        """One event of the batch settled (``failure`` None: acknowledged)."""
        with self._lock:
            if failure is not None and failure.error_class is ErrorClass.DEFERRED:
                self._deferred = self._deferred or failure
            elif failure is not None:
                self._failed += 1
                self._first = self._first or failure
            self._left -= 1
            done = self._left == 0
        if done:
            self._end()

    def unsent(self, count: int) -> None:
        """``count`` events of the batch were never sent (and will never settle)."""
        if count <= 0:
            return
        with self._lock:
            self._left -= count
            done = self._left <= 0
        if done:
            self._end()

    def _end(self) -> None:
        span = self._span
        if self._first is not None:
            span.set_attribute("eventwire.batch.failed_count", self._failed)
            _fail(span, self._first)
        elif self._deferred is not None:
            _defer(span, self._deferred)
        span.end()


def make_tracing(
    tracer_provider: TracerProvider | None,
    propagator: TextMapPropagator | None,
    *,
    create_spans: bool = False,
) -> Tracing:
    """Build the hooks for a publisher from its arguments (or the global provider)."""
    provider = tracer_provider if tracer_provider is not None else trace.get_tracer_provider()
    if isinstance(provider, ProxyTracerProvider | NoOpTracerProvider):
        return Tracing(None, propagator, create_spans=create_spans)
    tracer = provider.get_tracer("eventwire", instrumentation_version())
    if isinstance(tracer, trace.NoOpTracer):  # e.g. an SDK disabled by OTEL_SDK_DISABLED
        return Tracing(None, propagator, create_spans=create_spans)
    return Tracing(tracer, propagator, create_spans=create_spans)
