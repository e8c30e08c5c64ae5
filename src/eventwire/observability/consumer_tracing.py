"""OpenTelemetry tracing on the consuming side: one CONSUMER ``process`` span per record.

Used by :meth:`eventwire.Decoder.process`. Following the messaging semantic
conventions (push-style processing, no "Receive" span):

* the span is named ``process <topic>``, kind CONSUMER;
* its parent is the caller's current context (usually none in a consumer loop: a
  new trace per record), and it has a **span link** to the message's creation
  context -- the producer's ``send <topic>`` span, whose ``traceparent`` eventwire's
  publisher wrote into the record headers. A link, not a parent: a record may be
  processed hours after it was sent, and by many consumer groups;
* attributes ``messaging.system=kafka``, ``messaging.operation.name=process``,
  ``messaging.operation.type=process``, ``messaging.destination.name``,
  ``messaging.destination.partition.id`` (a string), ``messaging.kafka.offset``,
  ``messaging.message.id`` (the ``ce_id``), ``messaging.kafka.message.key``,
  ``messaging.message.body.size``, ``messaging.consumer.group.name`` (if given),
  and ``cloudevents.event_type`` / ``cloudevents.event_source`` once decoded;
* an exception in the handler (or a DecodeError) ends it with status ERROR,
  ``error.type`` = the exception's class and an exception event.

The span is current inside the block, so the handler's spans are its children and
an event the handler publishes carries its trace context onwards.

Providers are resolved when the decoder is created, like the publisher's. Without an
SDK (the API's proxy or no-op provider) no span is made and nothing is attached.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import (
    Link,
    NoOpTracerProvider,
    ProxyTracerProvider,
    SpanKind,
    Status,
    StatusCode,
    TracerProvider,
)
from opentelemetry.util.types import AttributeValue

from eventwire.observability import instrumentation_version

if TYPE_CHECKING:
    from opentelemetry.context import Context
    from opentelemetry.trace import Span

__all__ = ["ProcessTracing", "error_type", "make_process_tracing"]


def error_type(exc: BaseException) -> str:
    """The ``error.type`` of an exception: its class, fully qualified (``eventwire.X`` for ours)."""
    cls = type(exc)
    module = cls.__module__
    if module == "builtins":
        return cls.__qualname__
    if module.startswith("eventwire."):
        module = "eventwire"
    return f"{module}.{cls.__qualname__}"


class ProcessTracing:
    """Makes the ``process`` spans of one decoder (or nothing, without an SDK)."""

    __slots__ = ("_consumer_group", "_names", "_tracer", "spans")

    def __init__(self, tracer: trace.Tracer | None, *, consumer_group: str | None) -> None:
        self._tracer = tracer
        self._consumer_group = consumer_group
        self._names: dict[str | None, str] = {}
        #: False when no SDK is configured: :meth:`span` must not be used.
        self.spans = tracer is not None

    @contextmanager
    def span(
        self,
        *,
        topic: str | None,
        partition: int | None,
        offset: int | None,
        key: bytes | None,
        body_size: int | None,
        event_id: str | None,
        producer_context: Context | None,
    ) -> Iterator[Span]:
        """A current CONSUMER span for one record, linked to ``producer_context``'s span."""
        tracer = self._tracer
        assert tracer is not None
        name = self._names.get(topic)
        if name is None:
            name = self._names[topic] = f"process {topic}" if topic else "process"
        attributes = _attributes(
            topic=topic,
            partition=partition,
            offset=offset,
            key=key,
            body_size=body_size,
            event_id=event_id,
        )
        if self._consumer_group is not None:
            attributes["messaging.consumer.group.name"] = self._consumer_group
        links: list[Link] = []
        if producer_context is not None:
            linked = trace.get_current_span(producer_context).get_span_context()
            if linked.is_valid:
                links.append(Link(linked))
        span = tracer.start_span(name, kind=SpanKind.CONSUMER, attributes=attributes, links=links)
        token = otel_context.attach(trace.set_span_in_context(span))
        try:
            yield span
        except Exception as exc:
            if span.is_recording():
                span.set_attribute("error.type", error_type(exc))
                span.record_exception(exc)
                span.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}"))
            raise
        finally:
            otel_context.detach(token)
            span.end()


def _attributes(
    *,
    topic: str | None,
    partition: int | None,
    offset: int | None,
    key: bytes | None,
    body_size: int | None,
    event_id: str | None,
) -> dict[str, AttributeValue]:
    attributes: dict[str, AttributeValue] = {
        "messaging.system": "kafka",
        "messaging.operation.name": "process",
        "messaging.operation.type": "process",
    }
    if topic is not None:
        attributes["messaging.destination.name"] = topic
    if partition is not None:
        attributes["messaging.destination.partition.id"] = str(partition)
    if offset is not None:
        attributes["messaging.kafka.offset"] = offset
    if event_id is not None:
        attributes["messaging.message.id"] = event_id
        attributes["cloudevents.event_id"] = event_id
    if key is not None:
        attributes["messaging.kafka.message.key"] = key.decode("utf-8", "replace")
    if body_size is not None:
        attributes["messaging.message.body.size"] = body_size
    return attributes


def make_process_tracing(
    tracer_provider: TracerProvider | None, *, consumer_group: str | None = None
) -> ProcessTracing:
    """Build a decoder's span hooks from its arguments (or the global provider)."""
    provider = tracer_provider if tracer_provider is not None else trace.get_tracer_provider()
    if isinstance(provider, ProxyTracerProvider | NoOpTracerProvider):
        return ProcessTracing(None, consumer_group=consumer_group)
    tracer = provider.get_tracer("eventwire", instrumentation_version())
    if isinstance(tracer, trace.NoOpTracer):
        return ProcessTracing(None, consumer_group=consumer_group)
    return ProcessTracing(tracer, consumer_group=consumer_group)
