"""Typed decode for consumers: a Kafka record -> an :class:`Envelope` holding the typed event.

A :class:`Decoder` reads what eventwire's publisher writes -- the CloudEvents 1.0 Kafka
binding in binary mode (``ce_specversion``, ``ce_id``, ``ce_type``, ``ce_source``,
``ce_time``, ``content-type``) -- from a record of any Kafka client, and picks the
event class by ``ce_type`` through the same routes the publisher uses (``@event``
declarations, or ``routes={Struct: Route(...)}``)::

    decoder = Decoder(types=[OrderPlaced, OrderCancelled])
    envelope = decoder.decode(message)  # a confluent_kafka.Message, an aiokafka ConsumerRecord
    match envelope.event:
        case OrderPlaced(): ...

Records are duck-typed, so eventwire imports no consumer library here: a
``confluent_kafka.Message`` (methods ``topic()``, ``value()``, ``headers()``...), an
aiokafka ``ConsumerRecord`` (attributes ``topic``, ``value``, ``headers``...), and
eventwire's own ``MemoryRecord`` all work.

Anything that is not a well-formed event of a known type raises :class:`DecodeError`,
a typed error naming the record (topic, partition, offset) and what to do; it never
escapes as a crash of another kind. :meth:`Decoder.decode_or_none` returns None
instead (and hands the error to ``on_error``, e.g. to dead-letter the record), so one
poison record cannot stop a consumer's loop.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import functools
import inspect
import re
import sys
from collections.abc import (
    AsyncIterator,
    Awaitable,
    Callable,
    Coroutine,
    Iterable,
    Iterator,
    Mapping,
    Sequence,
)
from contextlib import asynccontextmanager, contextmanager
from typing import Any, Generic, Literal, TypeVar

import msgspec
from opentelemetry.context import Context
from opentelemetry.propagators.textmap import TextMapPropagator
from opentelemetry.trace import SpanContext, TracerProvider, get_current_span

from eventwire._codec import Codec, SerializationContext, TopicCodec, resolve_codec
from eventwire._errors import ConfigurationError, EventwireError, RoutingError, SerializationError
from eventwire._event import ROUTE_ATTRIBUTE, Route
from eventwire._shapes import check_event_class
from eventwire._text import first_unsafe
from eventwire._type_name import default_type_name
from eventwire.observability.consumer_tracing import ProcessTracing, make_process_tracing
from eventwire.observability.logging import get_logger

__all__ = ["DecodeError", "DecodeErrorKind", "Decoder", "Envelope", "decode"]

E = TypeVar("E")
R = TypeVar("R")

_log = get_logger("eventwire.consumer")

#: Why a record could not be decoded (``DecodeError.kind``).
DecodeErrorKind = Literal[
    "kafka_error",
    "no_value",
    "missing_header",
    "bad_header",
    "unknown_type",
    "content_type",
    "malformed_value",
    "registry_unavailable",
]

#: The kinds that are not the record's fault: decode the same record again later.
_RETRIABLE: frozenset[str] = frozenset({"registry_unavailable"})

_ADVICE: dict[str, str] = {
    "kafka_error": (
        "This is an error event from the consumer, not a record: check message.error() "
        "before decoding (a partition EOF is harmless; others need the client's attention)."
    ),
    "no_value": (
        "A record without a value is a tombstone (a compacted topic's delete marker), not "
        "an event: skip it and commit past it."
    ),
    "missing_header": (
        "The record was not written by a CloudEvents binary-mode producer (eventwire "
        "writes ce_specversion, ce_id, ce_type, ce_source). Dead-letter it (the raw record "
        "is err.record) and commit past it; decoding it again fails the same way."
    ),
    "bad_header": (
        "A CloudEvents header is not valid. Dead-letter the record (err.record) and commit "
        "past it; decoding it again fails the same way."
    ),
    "unknown_type": (
        "Pass its class in types= (or routes=) if this consumer should handle it; if not "
        "(e.g. a type added by a newer producer), skip it and commit past it."
    ),
    "content_type": (
        "Pass a codec for that content type (codec=[..., ...] takes several), or "
        "dead-letter the record (err.record) and commit past it."
    ),
    "malformed_value": (
        "The value does not fit the event class: a producer broke the schema contract. "
        "Dead-letter the record (err.record) and commit past it; decoding it again fails "
        "the same way."
    ),
    "registry_unavailable": (
        "The record is not at fault: the Schema Registry did not give its writer's schema "
        "(err.__cause__ is the registry's error). Do not dead-letter it and do not commit "
        "past it: decode the same record again once the registry answers (wait and retry, "
        "or stop and let the consumer resume from its last commit)."
    ),
}


class DecodeError(EventwireError, ValueError):
    """A consumed record could not be decoded into a typed event.

    Attributes:
        topic, partition, offset: where the record is (None if the client gave none,
            e.g. for an error event).
        reason: what is wrong, in one sentence.
        kind: the class of problem (:data:`DecodeErrorKind`), for routing or metrics.
        retriable: True when the record is not at fault (``registry_unavailable``):
            decode it again later; never dead-letter it or commit past it.
        event_id, event_type: the ``ce_id`` / ``ce_type`` if they could be read (cut to
            200 characters: they are logged).
        record: the record as given to :meth:`Decoder.decode`, for dead-lettering.
    """

    def __init__(
        self,
        *,
        topic: str | None,
        partition: int | None,
        offset: int | None,
        reason: str,
        kind: DecodeErrorKind,
        event_id: str | None = None,
        event_type: str | None = None,
        record: object = None,
    ) -> None:
        self.topic = topic
        self.partition = partition
        self.offset = offset
        self.reason = reason
        self.kind: DecodeErrorKind = kind
        self.event_id = event_id
        self.event_type = event_type
        self.record = record
        where = f"the record at {topic}[{partition}]@{offset}" if topic is not None else "a record"
        super().__init__(f"cannot decode {where}: {reason}. {_ADVICE[kind]}")

    @property
    def retriable(self) -> bool:
        """True when the record is not at fault: decode it again later, do not skip it."""
        return self.kind in _RETRIABLE

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild_decode_error, (self.__dict__,))


def _rebuild_decode_error(state: dict[str, Any]) -> DecodeError:
    return DecodeError(**state)


@dataclasses.dataclass(frozen=True, slots=True)
class Envelope(Generic[E]):
    """One decoded record: the typed event, its CloudEvents attributes, where it was read.

    Attributes:
        event: the decoded event, an instance of the class its ``ce_type`` names.
        id: ``ce_id``: unique per event and unchanged on re-sends: de-duplicate on it.
        type: ``ce_type``.
        source: ``ce_source``.
        specversion: ``ce_specversion`` (``"1.0"``).
        time: ``ce_time`` as an aware datetime, or None if the record has none (a leap
            second, ``23:59:60``, which a datetime cannot hold, is ``23:59:59.999999``).
        datacontenttype: the ``content-type`` header, or None if absent.
        dataschema: ``ce_dataschema``, or None.
        subject: ``ce_subject``, or None.
        extensions: every other ``ce_*`` header, by name without the prefix.
        topic, partition, offset: where the record was read.
        key: the record's key (bytes), or None.
        timestamp: the record's Kafka timestamp (aware, UTC), or None if it has none
            (or one out of datetime's range, which any producer can set).
        headers: every header of the record, in order, as received.
        trace_context: the producer's trace context (W3C ``traceparent``) extracted
            from the headers, or None if the record carries none. Link to it, or use it
            as a parent: ``tracer.start_span(..., links=[Link(span_context)])``.
    """

    event: E
    id: str
    type: str
    source: str
    specversion: str
    time: _dt.datetime | None
    datacontenttype: str | None
    dataschema: str | None
    subject: str | None
    extensions: Mapping[str, str]
    topic: str
    partition: int
    offset: int
    key: bytes | None
    timestamp: _dt.datetime | None
    headers: tuple[tuple[str, bytes | None], ...]
    trace_context: Context | None = None

    def header(self, name: str) -> bytes | None:
        """The value of the last header called ``name``, or None."""
        found: bytes | None = None
        for key, value in self.headers:
            if key == name:
                found = value
        return found

    @property
    def span_context(self) -> SpanContext | None:
        """The producer's ``SpanContext`` from :attr:`trace_context`, or None if not valid."""
        if self.trace_context is None:
            return None
        span_context = get_current_span(self.trace_context).get_span_context()
        return span_context if span_context.is_valid else None


@dataclasses.dataclass(slots=True)
class _Raw:
    """A record's fields, read once from whichever client's message shape."""

    record: object
    topic: str | None
    partition: int | None
    offset: int | None
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes | None], ...]
    timestamp_ms: int | None
    error: object

    def fail(
        self,
        kind: DecodeErrorKind,
        reason: str,
        *,
        event_id: str | None = None,
        event_type: str | None = None,
    ) -> DecodeError:
        # Clipped once here: both go into the decode_failed log line, and any producer
        # can write a 1 MB ce_id.
        return DecodeError(
            topic=self.topic,
            partition=self.partition,
            offset=self.offset,
            reason=reason,
            kind=kind,
            event_id=_clip(event_id),
            event_type=_clip(event_type),
            record=self.record,
        )


def _as_bytes(value: object) -> bytes | None:
    if value is None or type(value) is bytes:
        return value
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value)
    if isinstance(value, str):  # a consumer configured with a string deserializer
        return value.encode()
    raise TypeError(f"expected bytes, got {type(value).__name__}")


def _read(message: object) -> _Raw:
    """Read a confluent-kafka ``Message`` (methods) or an aiokafka-style record (attributes)."""
    topic_attr = getattr(message, "topic", None)
    if callable(topic_attr):  # confluent_kafka.Message
        m: Any = message
        error_fn = getattr(m, "error", None)
        error = error_fn() if callable(error_fn) else None
        stamp = m.timestamp() if callable(getattr(m, "timestamp", None)) else None
        # (TIMESTAMP_NOT_AVAILABLE=0, ms) / (CREATE_TIME=1 | LOG_APPEND_TIME=2, ms)
        timestamp_ms = stamp[1] if stamp and stamp[0] else None
        topic, partition, offset = m.topic(), m.partition(), m.offset()
        key, value, headers = m.key(), m.value(), m.headers()
    elif topic_attr is not None:  # aiokafka ConsumerRecord, MemoryRecord, ConsumedRecord
        m = message
        error = None
        timestamp_ms = getattr(m, "timestamp", None)
        if timestamp_ms is None:
            timestamp_ms = getattr(m, "timestamp_ms", None)
        if isinstance(timestamp_ms, int) and timestamp_ms < 0:  # aiokafka: -1 = none
            timestamp_ms = None
        topic, partition, offset = topic_attr, m.partition, m.offset
        key, value, headers = m.key, m.value, getattr(m, "headers", None)
    else:
        raise TypeError(
            f"cannot decode a {type(message).__qualname__}: pass a Kafka record, e.g. a "
            "confluent_kafka.Message (from Consumer.poll/consume) or an aiokafka "
            "ConsumerRecord (from AIOKafkaConsumer.getone/getmany)"
        )
    raw = _Raw(
        record=message,
        topic=topic if isinstance(topic, str) else None,
        partition=partition if isinstance(partition, int) else None,
        offset=offset if isinstance(offset, int) else None,
        key=None,
        value=None,
        headers=(),
        timestamp_ms=timestamp_ms if isinstance(timestamp_ms, int) else None,
        error=error,
    )
    if error is not None:
        return raw
    try:
        raw.key = _as_bytes(key)
        raw.value = _as_bytes(value)
        raw.headers = tuple((str(name), _as_bytes(data)) for name, data in headers or ())
    except (TypeError, ValueError) as exc:
        raise raw.fail(
            "bad_header", f"the record's key, value or headers are unreadable ({exc})"
        ) from exc
    return raw


_REQUIRED = ("ce_specversion", "ce_id", "ce_type", "ce_source")
_SPECVERSION = re.compile(r"1\.[0-9]+")
#: How much of a header's text an error message quotes.
_CLIP = 200


def _clip(text: str | None) -> str | None:
    """``text``, cut to :data:`_CLIP` characters for a message (a header may be 1 MB)."""
    if text is None or len(text) <= _CLIP:
        return text
    return f"{text[:_CLIP]}... ({len(text)} characters)"


def _kafka_time(timestamp_ms: int | None) -> _dt.datetime | None:
    """The record's Kafka timestamp, or None if it has none or one no datetime can hold.

    Any producer sets it, and the broker keeps any int64 by default.
    """
    if timestamp_ms is None:
        return None
    try:
        return _dt.datetime.fromtimestamp(timestamp_ms / 1000, _dt.UTC)
    except (ValueError, OverflowError, OSError):
        return None


_KNOWN = frozenset({*_REQUIRED, "ce_time", "ce_dataschema", "ce_subject", "content-type"})
_TRACE_HEADERS = frozenset({"traceparent", "tracestate", "baggage"})


def _media_type(content_type: str) -> str:
    return content_type.split(";", 1)[0].strip().lower()


def _is_structured(media_type: str) -> bool:
    """CloudEvents structured mode (``application/cloudevents+json``, its batch form ...)."""
    return media_type.startswith("application/cloudevents")


def _identity(raw: _Raw) -> tuple[str | None, str | None]:
    """``ce_id`` and ``ce_type`` as far as they can be read, to name a record in an error.

    Never raises: invalid UTF-8 is replaced, and the first of repeated copies counts.
    """
    found: dict[str, str] = {}
    for name, data in raw.headers:
        folded = name.lower()
        if folded in {"ce_id", "ce_type"} and data and folded not in found:
            found[folded] = data.decode("utf-8", "replace")
    return found.get("ce_id"), found.get("ce_type")


def _attributes(raw: _Raw) -> tuple[dict[str, str], dict[str, str], bool]:
    """The CloudEvents attributes (``ce_*`` and ``content-type``) as text, and extensions.

    Names are matched case-insensitively. A header repeated with the same value is
    fine; repeated with different values it is ambiguous (readers disagree on which
    copy counts) and refused. The third item says whether a trace header is present.
    """
    attrs: dict[str, str] = {}
    extensions: dict[str, str] = {}
    traced = False
    for name, data in raw.headers:
        folded = name.lower()
        if folded in _TRACE_HEADERS:
            traced = True
            continue
        if not (folded.startswith("ce_") or folded == "content-type"):
            continue
        if data is None:
            text = ""
        else:
            try:
                text = data.decode()
            except UnicodeDecodeError:
                # An extension's value is arbitrary metadata (a token, a tenant, personal
                # data): only the known attributes' bytes are quoted, and only a few.
                shown = f"{data[:40]!r}" if folded in _KNOWN else f"{len(data)} bytes, not shown"
                raise raw.fail(
                    "bad_header",
                    f"header {_clip(name)!r} is not valid UTF-8 text ({shown})",
                    event_id=attrs.get("ce_id"),
                ) from None
        target = attrs if folded in _KNOWN else extensions
        attr = folded if target is attrs else folded[3:]
        previous = target.get(attr)
        if previous is not None and previous != text:
            shown = f"{_clip(previous)!r}, {_clip(text)!r}" if target is attrs else "not shown"
            raise raw.fail(
                "bad_header",
                f"header {_clip(name)!r} appears twice with different values ({shown}); "
                "readers disagree on which copy counts",
                event_id=attrs.get("ce_id"),
            )
        target[attr] = text
    return attrs, extensions, traced


#: A leap second (RFC 3339 ``time-second`` 60): the seconds and fraction, then the offset.
_LEAP_SECOND = re.compile(r"(?<=:)60(?:\.[0-9]+)?(?=(?:[Zz]|[+-][0-9]{2}:[0-9]{2})$)")


def _parse_time(raw: _Raw, text: str, event_id: str, event_type: str) -> _dt.datetime:
    try:
        parsed = msgspec.convert(text, _dt.datetime)
    except msgspec.ValidationError:
        parsed = None
        # RFC 3339 allows second 60 (a leap second, e.g. 2016-12-31T23:59:60Z), which a
        # datetime cannot hold: read it as the last microsecond before the next minute,
        # the nearest instant a datetime has (order is kept: it sorts before :00).
        clamped, leap = _LEAP_SECOND.subn("59.999999", text)
        if leap:
            try:
                parsed = msgspec.convert(clamped, _dt.datetime)
            except msgspec.ValidationError:
                parsed = None
    if parsed is None or parsed.tzinfo is None:
        raise raw.fail(
            "bad_header",
            f"ce_time {_clip(text)!r} is not an RFC 3339 timestamp with an offset "
            "(e.g. 2026-11-27T05:42:35.123Z)",
            event_id=event_id,
            event_type=event_type,
        )
    return parsed


def _not_the_records_fault(exc: Exception) -> bool:
    """A codec's failure to reach its schema registry, not a fault of the record.

    Any :class:`~eventwire.schema_registry.RegistryError` but a not-found (the record
    names a schema id the registry does not have), and a ``ConnectionError`` or
    ``TimeoutError`` (``SchemaRegistryUnavailableError`` is one; a custom codec's may be).
    """
    if isinstance(exc, ConnectionError | TimeoutError):
        return True
    errors = sys.modules.get("eventwire.schema_registry._errors")  # loaded by its codecs
    return (
        errors is not None
        and isinstance(exc, errors.RegistryError)
        and not isinstance(exc, errors.SchemaNotFoundError)
    )


def _type_name(cls: type, route: Route | None) -> str:
    if route is not None and route.type_name:
        return route.type_name
    return default_type_name(cls)


class _CodecCall:
    """One codec, its kind decided once (a runtime Protocol check costs ~10 us per call)."""

    __slots__ = ("codec", "plain", "topic_codec")

    def __init__(self, codec: Codec | TopicCodec) -> None:
        self.codec = codec
        self.topic_codec: TopicCodec | None = None
        self.plain: Codec | None = None
        if isinstance(codec, TopicCodec):
            self.topic_codec = codec
        else:
            self.plain = codec

    def decode(self, data: bytes, cls: type[E], topic: str) -> E:
        if self.plain is not None:
            return self.plain.decode(data, cls)
        assert self.topic_codec is not None
        return self.topic_codec.decode_from(data, cls, SerializationContext(topic))


CodecArg = Codec | TopicCodec | str
OnError = Callable[[DecodeError], None]


class Decoder(Generic[E]):
    """Decodes consumed Kafka records into typed :class:`Envelope` s.

    Build one per consumer and reuse it (it caches a msgspec decoder per class).

    Args:
        types: the event classes this consumer handles: msgspec Structs, dataclasses,
            attrs classes or pydantic models (as the publisher takes).
            Each is matched by its ``ce_type``: the ``type_name`` of its ``@event``
            route, or ``module.QualName`` -- exactly what the publisher writes.
        routes: ``{Struct: Route(...)}`` for classes routed at the publisher (the
            same mapping you pass to ``Publisher(routes=...)``). Its classes are
            handled too.
        codec: ``"json"`` (the default), ``"msgpack"``, a :class:`Codec` or
            :class:`TopicCodec` instance -- or a sequence of them, one per content
            type, chosen by each record's ``content-type`` header (a record without
            one is decoded with the first).
        on_error: called with the :class:`DecodeError` by :meth:`decode_or_none`
            (e.g. to produce the record to a dead-letter topic). Without it,
            ``decode_or_none`` logs ``decode_failed`` (warning, on
            ``eventwire.consumer``; collapsed per kind and topic).
        tracer_provider: for the CONSUMER spans of :meth:`process`; the global
            provider by default. Resolved when the decoder is created.
        propagator: reads the trace context from the headers; the global one by default.
        consumer_group: the group id, recorded on spans as
            ``messaging.consumer.group.name``.

    Raises:
        ConfigurationError: no type given, a class that is not a Struct, two classes
            with one ``ce_type``, or an unknown codec.
    """

    def __init__(
        self,
        types: Iterable[type[E]] = (),
        *,
        routes: Mapping[type[E], Route] | None = None,
        codec: CodecArg | Sequence[CodecArg] = "json",
        on_error: OnError | None = None,
        tracer_provider: TracerProvider | None = None,
        propagator: TextMapPropagator | None = None,
        consumer_group: str | None = None,
    ) -> None:
        self._classes: dict[str, type[E]] = {}
        routes = routes or {}
        # A class in routes= uses that route, as at the publisher; otherwise its @event.
        pairs: list[tuple[type[E], Route | None]] = [
            (cls, cls.__dict__.get(ROUTE_ATTRIBUTE) if isinstance(cls, type) else None)
            for cls in types
            if cls not in routes
        ]
        for routed, given_route in routes.items():
            if not isinstance(given_route, Route):
                raise ConfigurationError(
                    f"routes[{getattr(routed, '__qualname__', routed)!r}] must be a Route, "
                    f"got {type(given_route).__name__}"
                )
            pairs.append((routed, given_route))
        for cls, route in pairs:
            try:
                check_event_class(cls)
            except RoutingError as exc:
                raise ConfigurationError(
                    f"types must be event classes eventwire publishes (msgspec Structs, "
                    f"dataclasses, attrs classes, pydantic models): {exc}"
                ) from None
            name = _type_name(cls, route)
            other = self._classes.get(name)
            if other is not None and other is not cls:
                raise ConfigurationError(
                    f"{other.__qualname__} and {cls.__qualname__} both have ce_type {name!r}: "
                    "a decoder must know which class a type name means. Give one of them "
                    "another type_name."
                )
            self._classes[name] = cls
        if not self._classes:
            raise ConfigurationError(
                "Decoder needs the event classes it handles: Decoder(types=[OrderPlaced, ...]) "
                "or Decoder(routes={...})"
            )
        given = [codec] if isinstance(codec, str) or not isinstance(codec, Sequence) else codec
        if not given:
            raise ConfigurationError("codec= needs at least one codec")
        self._codecs: dict[str, _CodecCall] = {}
        for item in given:
            resolved = resolve_codec(item)
            self._codecs.setdefault(_media_type(resolved.content_type), _CodecCall(resolved))
        self._default_codec = next(iter(self._codecs.values()))
        self.on_error = on_error
        self.consumer_group = consumer_group
        self._propagator = propagator
        self._tracing: ProcessTracing = make_process_tracing(
            tracer_provider, consumer_group=consumer_group
        )

    @property
    def type_names(self) -> Mapping[str, type[E]]:
        """The ``ce_type`` s this decoder knows, and their classes."""
        return dict(self._classes)

    def decode(self, message: object) -> Envelope[E]:
        """Decode one consumed record.

        Raises:
            DecodeError: the record is an error event, a tombstone, lacks a CloudEvents
                header, has an unknown ``ce_type`` or a content type no codec reads, or
                its value does not decode as its class; or (``registry_unavailable``,
                ``retriable``) the Schema Registry did not give its writer's schema.
                Never any other exception for a record (a TypeError only if ``message``
                is not a record at all).
        """
        raw = _read(message)
        return self._decode(raw)

    def decode_or_none(self, message: object) -> Envelope[E] | None:
        """Like :meth:`decode`, but returns None for a record that cannot be decoded.

        The :class:`DecodeError` goes to ``on_error`` (if given; an exception it raises
        propagates) or is logged as ``decode_failed``. Commit past the record only once
        it is dead-lettered or deliberately skipped.

        Raises:
            DecodeError: only a retriable one (``registry_unavailable``: the Schema
                Registry did not answer): the record is fine, so it is neither handed to
                ``on_error`` nor skipped. Decode it again later; do not commit past it.
        """
        try:
            return self.decode(message)
        except DecodeError as err:
            if err.retriable:
                raise
            self._report(err)
            return None

    @contextmanager
    def process(self, message: object) -> Iterator[Envelope[E]]:
        """Decode ``message`` and handle it inside a CONSUMER ``process <topic>`` span.

        The span (when an OpenTelemetry SDK is configured) is a child of the current
        context, is **linked** to the producer's span (the record's ``traceparent``),
        as the messaging semantic conventions ask, and is current inside the block, so
        the handler's own spans -- and events it publishes -- belong to it. It carries
        ``messaging.system=kafka``, ``messaging.operation.type=process``,
        ``messaging.destination.name``, ``messaging.destination.partition.id``,
        ``messaging.kafka.offset``, ``messaging.message.id`` (the ``ce_id``) and the
        key. An exception in the block (or a DecodeError) ends it with ERROR status
        and ``error.type`` and propagates.

        Raises:
            DecodeError: as :meth:`decode` (the span records it first).
        """
        raw = _read(message)
        tracing = self._tracing
        if not tracing.spans:
            yield self._decode(raw)
            return
        event_id: str | None = None
        for name, data in raw.headers:
            if name.lower() == "ce_id" and data is not None:
                event_id = data.decode("utf-8", "replace")
        with tracing.span(
            topic=raw.topic,
            partition=raw.partition,
            offset=raw.offset,
            key=raw.key,
            body_size=len(raw.value) if raw.value is not None else None,
            event_id=event_id,
            producer_context=self._extract(raw),
        ) as span:
            envelope = self._decode(raw)
            span.set_attribute("cloudevents.event_type", envelope.type)
            span.set_attribute("cloudevents.event_source", envelope.source)
            yield envelope

    @asynccontextmanager
    async def process_async(self, message: object) -> AsyncIterator[Envelope[E]]:
        """:meth:`process` for asyncio consumers (aiokafka): ``async with``, awaited handler.

        ::

            async for record in consumer:  # an aiokafka AIOKafkaConsumer
                async with decoder.process_async(record) as envelope:
                    await handle(envelope.event)

        The CONSUMER ``process <topic>`` span is the same as :meth:`process`'s (linked
        to the producer's span, ERROR status on an exception) and stays open and current
        while the block awaits, so spans of the awaited handler are its children. The
        span is current only in the task that runs the block: handlers run concurrently
        in their own tasks (``asyncio.gather``, a ``TaskGroup``) each get their own.

        Raises:
            DecodeError: as :meth:`decode` (the span records it first).
        """
        with self.process(message) as envelope:
            yield envelope

    def handler(
        self, func: Callable[[Envelope[E]], Awaitable[R]]
    ) -> Callable[[object], Coroutine[Any, Any, R]]:
        """Decorate an ``async def handle(envelope)``: the result takes a record instead.

        ::

            @decoder.handler
            async def on_event(envelope: Envelope[OrderPlaced]) -> None: ...

            async for record in consumer:
                await on_event(record)  # decoded, handled inside its process span

        Each call runs the handler inside :meth:`process_async`.

        Raises:
            ConfigurationError: ``func`` is not an ``async def`` function.
        """
        if not inspect.iscoroutinefunction(func):
            raise ConfigurationError(
                f"Decoder.handler decorates an async def function (a coroutine function); "
                f"{getattr(func, '__qualname__', func)!r} is not one. For a plain function use "
                "`with decoder.process(record) as envelope: ...`"
            )

        @functools.wraps(func)
        async def handle(message: object) -> R:
            async with self.process_async(message) as envelope:
                return await func(envelope)

        return handle

    def _extract(self, raw: _Raw) -> Context | None:
        carrier: dict[str, str] = {}
        for name, data in raw.headers:
            folded = name.lower()
            if folded in _TRACE_HEADERS and data is not None:
                carrier[folded] = data.decode("utf-8", "replace")
        if not carrier:
            return None
        from opentelemetry import propagate  # noqa: PLC0415

        propagator = self._propagator or propagate.get_global_textmap()
        return propagator.extract(carrier, context=Context())

    def _report(self, err: DecodeError) -> None:
        if self.on_error is not None:
            self.on_error(err)
            return
        _log.warning(
            "decode_failed",
            topic=err.topic,
            partition=err.partition,
            offset=err.offset,
            kind=err.kind,
            event_id=err.event_id,
            event_type=err.event_type,
            reason=err.reason,
            collapse=(err.kind, err.topic),
        )

    def _decode(self, raw: _Raw) -> Envelope[E]:
        if raw.error is not None:
            raise raw.fail("kafka_error", f"the consumer returned an error: {raw.error}")
        if raw.value is None:  # a tombstone (compaction's delete marker), whatever its headers
            tomb_id, tomb_type = _identity(raw)
            raise raw.fail(
                "no_value",
                "the record has no value (a tombstone)",
                event_id=tomb_id,
                event_type=tomb_type,
            )
        attrs, extensions, traced = _attributes(raw)
        event_id = attrs.get("ce_id") or None
        event_type = attrs.get("ce_type") or None
        content_type = attrs.get("content-type") or None
        # Structured mode puts every attribute in the value, so its records have no ce_*
        # headers: it is named before they are called missing.
        self._refuse_structured_mode(raw, content_type, event_id, event_type)
        missing = [name for name in _REQUIRED if not attrs.get(name)]
        if missing:
            raise raw.fail(
                "missing_header",
                f"the CloudEvents header{'s' if len(missing) > 1 else ''} "
                f"{', '.join(missing)} {'are' if len(missing) > 1 else 'is'} missing or empty",
                event_id=event_id,
                event_type=event_type,
            )
        event_id, event_type = attrs["ce_id"], attrs["ce_type"]
        unsafe = [n for n in ("ce_id", "ce_type", "ce_source") if first_unsafe(attrs[n])]
        if unsafe:
            raise raw.fail(
                "bad_header",
                f"{', '.join(unsafe)} holds a control character (NUL, ESC, a newline, a "
                "bidirectional override ...), which CloudEvents does not allow",
                event_id=event_id,
                event_type=event_type,
            )
        specversion = attrs["ce_specversion"]
        if not _SPECVERSION.fullmatch(specversion):
            raise raw.fail(
                "bad_header",
                f"ce_specversion is {_clip(specversion)!r}; this decoder reads CloudEvents 1.x",
                event_id=event_id,
                event_type=event_type,
            )
        cls = self._classes.get(event_type)
        if cls is None:
            raise raw.fail(
                "unknown_type",
                f"ce_type {_clip(event_type)!r} is not one of this decoder's types "
                f"({', '.join(sorted(self._classes))})",
                event_id=event_id,
                event_type=event_type,
            )
        codec = self._codec_for(raw, content_type, event_id, event_type)
        assert raw.value is not None  # (refused above)
        topic = raw.topic or ""
        try:
            event = codec.decode(raw.value, cls, topic)
        except Exception as exc:
            if _not_the_records_fault(exc):
                raise raw.fail(
                    "registry_unavailable",
                    f"the writer's schema of this {cls.__qualname__} could not be fetched ({exc})",
                    event_id=event_id,
                    event_type=event_type,
                ) from exc
            if isinstance(exc, SerializationError):
                reason = str(exc)
            else:  # a custom codec's own error: still typed for the caller
                reason = f"{type(codec.codec).__qualname__} raised {type(exc).__name__}: {exc}"
        else:
            ce_time = attrs.get("ce_time")
            return Envelope(
                event=event,
                id=event_id,
                type=event_type,
                source=attrs["ce_source"],
                specversion=specversion,
                time=_parse_time(raw, ce_time, event_id, event_type) if ce_time else None,
                datacontenttype=content_type,
                dataschema=attrs.get("ce_dataschema") or None,
                subject=attrs.get("ce_subject") or None,
                extensions=extensions,
                topic=topic,
                partition=raw.partition if raw.partition is not None else -1,
                offset=raw.offset if raw.offset is not None else -1,
                key=raw.key,
                timestamp=_kafka_time(raw.timestamp_ms),
                headers=raw.headers,
                trace_context=self._extract(raw) if traced else None,
            )
        raise raw.fail(
            "malformed_value",
            f"the value is not a valid {cls.__qualname__} ({reason})",
            event_id=event_id,
            event_type=event_type,
        )

    def _codec_for(
        self, raw: _Raw, content_type: str | None, event_id: str, event_type: str
    ) -> _CodecCall:
        if content_type is None:
            return self._default_codec
        media = _media_type(content_type)
        codec = self._codecs.get(media)
        if codec is not None:
            return codec
        raise self._content_type_error(raw, content_type, event_id, event_type)

    def _refuse_structured_mode(
        self, raw: _Raw, content_type: str | None, event_id: str | None, event_type: str | None
    ) -> None:
        """Raise ``content_type`` for a structured-mode record (unless a codec reads it)."""
        if content_type is None:
            return
        media = _media_type(content_type)
        if _is_structured(media) and media not in self._codecs:
            raise self._content_type_error(raw, content_type, event_id, event_type)

    def _content_type_error(
        self, raw: _Raw, content_type: str, event_id: str | None, event_type: str | None
    ) -> DecodeError:
        structured = _is_structured(_media_type(content_type))
        return raw.fail(
            "content_type",
            f"content-type {_clip(content_type)!r} "
            + (
                "is CloudEvents structured mode; this decoder reads binary mode (the event "
                "in the value, its attributes in ce_* headers)"
                if structured
                else f"has no codec here (codecs for: {', '.join(self._codecs)})"
            ),
            event_id=event_id,
            event_type=event_type,
        )


_CACHE: dict[tuple[Any, ...], Decoder[Any]] = {}
_CACHE_MAX = 64


def decode(
    message: object,
    *,
    types: Iterable[type[E]] = (),
    routes: Mapping[type[E], Route] | None = None,
    codec: CodecArg | Sequence[CodecArg] = "json",
) -> Envelope[E]:
    """Decode one record with a :class:`Decoder` for ``types`` / ``routes`` / ``codec``.

    A convenience for scripts and tests: decoders for the same classes and a named
    codec are cached; in a consumer loop build one :class:`Decoder` and reuse it.

    Raises:
        DecodeError: as :meth:`Decoder.decode`.
    """
    type_list = tuple(types)
    cache_key: tuple[Any, ...] | None = None
    if routes is None and isinstance(codec, str):
        cache_key = (type_list, codec)
        cached = _CACHE.get(cache_key)
        if cached is not None:
            return cached.decode(message)
    decoder: Decoder[E] = Decoder(type_list, routes=routes, codec=codec)
    if cache_key is not None and len(_CACHE) < _CACHE_MAX:
        _CACHE[cache_key] = decoder
    return decoder.decode(message)
