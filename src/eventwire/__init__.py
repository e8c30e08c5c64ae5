"""eventwire: publish typed domain events to Apache Kafka, traced and never silently lost.

Quick start::

    import msgspec
    from eventwire import Publisher, event

    @event(topic="orders", key="order_id")
    class OrderPlaced(msgspec.Struct, frozen=True):
        order_id: str
        total_price: float

    with Publisher("localhost:9092") as publisher:
        publisher.publish(OrderPlaced(order_id="o-1", total_price=19.98))
"""

from eventwire._async_publisher import AsyncPublisher
from eventwire._breaker import BreakerState, CircuitBreaker, CircuitOpenError
from eventwire._codec import (
    Codec,
    JsonCodec,
    MsgpackCodec,
    SerializationContext,
    SerializerCodec,
    TopicCodec,
)
from eventwire._config import PROFILES, KafkaConfig, Profile, Secret
from eventwire._decode import DecodeError, Decoder, Envelope, decode
from eventwire._errors import (
    AuthenticationError,
    BackpressureError,
    BrokerUnavailableError,
    ConfigurationError,
    DeliveryError,
    DeliveryFailure,
    ErrorClass,
    EventIdConflictError,
    EventwireError,
    OutboxWriteError,
    ProducerFatalError,
    PublisherStateError,
    Resend,
    RoutingError,
    SerializationError,
    TLSError,
)
from eventwire._event import Route, event
from eventwire._handle import DeliveryHandle, DeliveryResult
from eventwire._publisher import Publisher
from eventwire._shutdown import GracefulShutdown
from eventwire._sink import BatchPublishError
from eventwire._translator import Translator, translate_all
from eventwire.observability.prometheus import PrometheusServer, serve_prometheus
from eventwire.outbox.dead_letter import DeadLetterPolicy

#: The release, and the one place it is written: the wheel's metadata is built from it
#: (hatch's dynamic version), so ``importlib.metadata.version("eventwire")`` equals it.
__version__ = "0.1.0"

__all__ = [
    "AsyncPublisher",
    "AuthenticationError",
    "BackpressureError",
    "BatchPublishError",
    "BreakerState",
    "BrokerUnavailableError",
    "CircuitBreaker",
    "CircuitOpenError",
    "Codec",
    "ConfigurationError",
    "DeadLetterPolicy",
    "decode",
    "DecodeError",
    "Decoder",
    "DeliveryError",
    "DeliveryFailure",
    "DeliveryHandle",
    "DeliveryResult",
    "Envelope",
    "ErrorClass",
    "event",
    "EventIdConflictError",
    "EventwireError",
    "GracefulShutdown",
    "JsonCodec",
    "KafkaConfig",
    "MsgpackCodec",
    "OutboxWriteError",
    "ProducerFatalError",
    "Profile",
    "PROFILES",
    "PrometheusServer",
    "Publisher",
    "PublisherStateError",
    "Resend",
    "Route",
    "RoutingError",
    "Secret",
    "SerializationContext",
    "SerializationError",
    "SerializerCodec",
    "serve_prometheus",
    "TLSError",
    "TopicCodec",
    "translate_all",
    "Translator",
]
