"""The options :class:`Publisher` and :class:`AsyncPublisher` share, declared once.

``PublisherOptions`` types the keyword arguments (``**options``) of both; the
publisher resolves them into :class:`Options`, which applies the defaults and
checks every value before anything is built.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any, TypedDict

from opentelemetry.metrics import MeterProvider
from opentelemetry.propagators.textmap import TextMapPropagator
from opentelemetry.trace import TracerProvider

from eventwire._breaker import CircuitBreaker
from eventwire._codec import Codec, TopicCodec
from eventwire._config import KafkaConfig, Profile
from eventwire._errors import ConfigurationError
from eventwire._event import Route
from eventwire._timeouts import seconds
from eventwire.transports.base import BaseTransport

__all__ = ["Options", "PublisherOptions", "check_relay_options", "resolve_options"]


class PublisherOptions(TypedDict, total=False):
    """Keyword options of :class:`Publisher` and :class:`AsyncPublisher` (all optional).

    * ``config``: a full :class:`KafkaConfig` instead of ``bootstrap_servers``.
    * ``profile``: ``"reliable"`` (default), ``"low_latency"`` or ``"high_throughput"``.
    * ``overrides``: raw librdkafka properties, applied last.
    * ``routes``: routes for event classes not decorated with ``@event``.
    * ``source``: the CloudEvents ``ce_source`` of every event (default ``"eventwire"``):
      a URI-reference, e.g. ``"urn:myorg:billing"`` or ``"/billing-service"``.
    * ``codec``: ``"json"`` (default), ``"msgpack"``, a :class:`Codec`, or a
      :class:`TopicCodec` (told the topic; e.g. a Schema Registry serializer).
    * ``transport``: a transport instead of Kafka (e.g. ``MemoryTransport()``).
    * ``enqueue_timeout``: the longest a publish waits for room in a full local
      queue (30 s), then BackpressureError.
    * ``close_timeout``: how long leaving the ``with`` block waits for deliveries (30 s).
    * ``connect_timeout``: seconds to wait at start for a broker to answer (10 s),
      else BrokerUnavailableError; None skips the check.
    * ``tracer_provider`` / ``propagator`` / ``meter_provider``: OpenTelemetry; the
      global ones by default.
    * ``trace_create_spans``: ``publish_many`` makes a ``create`` span per event
      besides the batch's one ``send`` span (off: one span per batch).
    * ``circuit_breaker``: True or a :class:`CircuitBreaker`: fail fast with
      CircuitOpenError while Kafka is unreachable (off by default).
    * ``producer_restarts``: producer replacements after fatal errors allowed in any
      10 minutes (3); 0: the first fatal error is final.
    """

    config: KafkaConfig | None
    profile: Profile
    overrides: Mapping[str, Any] | None
    routes: Mapping[Any, Route] | None
    source: str
    codec: Codec | TopicCodec | str
    transport: BaseTransport | None
    enqueue_timeout: float
    close_timeout: float
    connect_timeout: float | None
    tracer_provider: TracerProvider | None
    propagator: TextMapPropagator | None
    meter_provider: MeterProvider | None
    trace_create_spans: bool
    circuit_breaker: CircuitBreaker | bool
    producer_restarts: int


@dataclasses.dataclass(frozen=True, kw_only=True, slots=True)
class Options:
    """:class:`PublisherOptions` with their defaults, checked.

    Raises:
        ConfigurationError: a value is out of range (the option is named).
    """

    bootstrap_servers: str | Sequence[str] | None = None
    config: KafkaConfig | None = None
    profile: Profile = "reliable"
    overrides: Mapping[str, Any] | None = None
    routes: Mapping[Any, Route] | None = None
    source: str = "eventwire"
    codec: Codec | TopicCodec | str = "json"
    transport: BaseTransport | None = None
    enqueue_timeout: float = 30.0
    close_timeout: float = 30.0
    connect_timeout: float | None = 10.0
    tracer_provider: TracerProvider | None = None
    propagator: TextMapPropagator | None = None
    meter_provider: MeterProvider | None = None
    trace_create_spans: bool = False
    circuit_breaker: CircuitBreaker | bool = False
    producer_restarts: int = 3

    def __post_init__(self) -> None:
        if not isinstance(self.source, str) or not self.source:
            raise ConfigurationError("source (the CloudEvents ce_source) must be a non-empty str")
        for name in ("enqueue_timeout", "close_timeout"):
            object.__setattr__(self, name, seconds(getattr(self, name), name))
        if self.connect_timeout is not None:
            connect = seconds(
                self.connect_timeout, "connect_timeout (None skips the check)", positive=True
            )
            object.__setattr__(self, "connect_timeout", connect)
        restarts = self.producer_restarts
        if not isinstance(restarts, int) or isinstance(restarts, bool) or restarts < 0:
            raise ConfigurationError(
                "producer_restarts must be an int >= 0 (0: a fatal error ends the publisher)"
            )
        if not isinstance(self.circuit_breaker, bool | CircuitBreaker):
            raise ConfigurationError(
                "circuit_breaker must be True, False or a CircuitBreaker(...), not "
                f"{type(self.circuit_breaker).__name__} {self.circuit_breaker!r}"
            )
        if self.routes is not None and not isinstance(self.routes, Mapping):
            raise ConfigurationError(
                "routes must be a mapping of event class -> Route, e.g. "
                f"{{OrderPlaced: Route(topic='orders')}}, not {type(self.routes).__name__}"
            )
        if self.transport is not None and not isinstance(self.transport, BaseTransport):
            raise ConfigurationError(
                f"transport must be a eventwire.transports.base.BaseTransport, got "
                f"{type(self.transport).__name__}"
            )


_NAMES = frozenset(PublisherOptions.__annotations__)


def resolve_options(
    bootstrap_servers: str | Sequence[str] | None, options: Mapping[str, Any]
) -> Options:
    """Check ``options`` (a publisher's ``**options``) and apply the defaults.

    Raises:
        TypeError: an option name that does not exist (the valid ones are listed).
        ConfigurationError: a value out of range, or ``profile`` with ``config``.
    """
    unknown = sorted(set(options) - _NAMES)
    if unknown:
        raise TypeError(
            f"unknown publisher option(s) {', '.join(unknown)}; "
            f"valid: bootstrap_servers, {', '.join(sorted(_NAMES))}"
        )
    if options.get("config") is not None and "profile" in options:
        raise ConfigurationError(
            "profile= does nothing together with config=: set the profile in the "
            "KafkaConfig (KafkaConfig(..., profile=...), or `profile` in its config file)"
        )
    return Options(bootstrap_servers=bootstrap_servers, **options)


#: Methods of the OutboxStore protocol an ``outbox=`` must have (a duck-typed check: a
#: store of the application's own is welcome).
_STORE_METHODS = ("add", "claim_batch", "mark_sent", "mark_retry", "park")


def check_relay_options(outbox: object, relay_options: Mapping[str, Any] | None) -> None:
    """Refuse an ``outbox`` that is no store, and ``relay_options`` without ``outbox``.

    Ignoring relay options would let an application believe, say, its dead-letter
    policy is in place while every event goes straight to Kafka. A path given as
    ``outbox=`` would fail in the relay's every round and at the first publish.

    Raises:
        ConfigurationError: ``outbox`` lacks the store's methods (e.g. a path instead
            of ``SQLiteOutbox(path)``); ``relay_options`` given (non-empty) with no
            ``outbox``.
    """
    if outbox is not None:
        missing = [m for m in _STORE_METHODS if not callable(getattr(outbox, m, None))]
        if missing:
            raise ConfigurationError(
                f"outbox must be an outbox store, not a {type(outbox).__name__} (it has no "
                f"{', '.join(missing)}): e.g. outbox=SQLiteOutbox('outbox.db') or "
                "outbox=PostgresOutbox(dsn), from eventwire.outbox"
            )
    if outbox is None and relay_options:
        raise ConfigurationError(
            f"relay_options ({', '.join(map(str, relay_options))}) apply to the outbox relay, "
            "and this publisher has no outbox: pass outbox=SQLiteOutbox(...) or "
            "PostgresOutbox(...) too, or drop relay_options (dead letters, retries and "
            "the relay exist only with an outbox)"
        )
