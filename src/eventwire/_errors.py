"""The exceptions eventwire raises, all under one base.

::

    EventwireError
    ├── ConfigurationError      a config key or value is wrong (names the key)
    ├── RoutingError            the event cannot be routed: not an event class, no route,
    │                           an invalid topic name, a missing or unencodable key
    ├── SerializationError      the event's value cannot be encoded
    ├── PublisherStateError     the publisher is closed, or it (or an outbox relay)
    │                           is used in a forked child
    ├── BrokerUnavailableError  no broker answered the start-up connection check
    │   ├── AuthenticationError a broker rejected the SASL credentials (names the
    │   │                       mechanism, the user and the broker; never the password)
    │   └── TLSError            the TLS handshake failed: untrusted CA, a certificate
    │                           not naming the host, or TLS against a plaintext port
    │                           (or the reverse)
    ├── BackpressureError       the local queue stayed full past the bounded wait;
    │                           the event was *not* enqueued
    ├── BatchPublishError       (in :mod:`eventwire._sink`) ``publish_many`` stopped at
    │                           one event: those before it were enqueued
    │                           (``.handles``), the rest were not
    ├── CircuitOpenError        (in :mod:`eventwire._breaker`) ``circuit_breaker=``
    │                           only: Kafka has been unreachable for a while; the
    │                           event was *not* enqueued
    ├── DeliveryError           one or more events were not acknowledged by Kafka;
    │                           ``.failures`` lists each one (id, type, topic, code)
    ├── OutboxWriteError        an outbox store could not commit events;
    │                           ``.possibly_written`` says whether they may be stored
    ├── EventIdConflictError    the outbox holds a different unsent event under this
    │                           ``event_id`` (topic, key or value differ); nothing stored
    └── ProducerFatalError      the underlying producer hit a fatal error and cannot
                                send any more

Every message says what happened, to which event, and what to do next. No message
ever contains a secret from the configuration.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

__all__ = [
    "AuthenticationError",
    "BackpressureError",
    "BrokerUnavailableError",
    "ConfigurationError",
    "DeliveryError",
    "DeliveryFailure",
    "ErrorClass",
    "EventIdConflictError",
    "EventwireError",
    "OutboxWriteError",
    "ProducerFatalError",
    "PublisherStateError",
    "Resend",
    "RoutingError",
    "SerializationError",
    "TLSError",
]


class EventwireError(Exception):
    """Base class of every error eventwire raises on purpose."""


class ConfigurationError(EventwireError, ValueError):
    """A configuration key or value is invalid. The message names the key."""


class RoutingError(EventwireError, TypeError):
    """An event cannot be routed to a topic and key. Nothing was sent."""


class SerializationError(EventwireError, TypeError):
    """An event's value could not be encoded by the codec. Nothing was sent."""


class PublisherStateError(EventwireError, RuntimeError):
    """The publisher cannot be used in its current state (closed, or forked).

    Also raised by an :class:`~eventwire.outbox.OutboxRelay` used in a forked child.
    """


class BackpressureError(EventwireError):
    """The producer's local queue stayed full for longer than the bounded wait.

    The event was **not** enqueued: the caller still owns it and may retry, slow
    down, or raise ``queue.buffering.max.messages``.
    """


class ProducerFatalError(EventwireError):
    """The underlying producer reported a fatal error and can send nothing more.

    Events that were in flight are reported as failed with
    :attr:`ErrorClass.FATAL`; create a new publisher to continue.
    """

    def __init__(self, code: str, reason: str) -> None:
        self.code = code
        self.reason = reason
        super().__init__(
            f"the Kafka producer hit a fatal error {code}: {reason}. "
            "It cannot send any more events; close it and create a new publisher "
            "(events already enqueued are reported as failed)."
        )


class ErrorClass(enum.Enum):
    """How a delivery failure should be handled, decided by its error code."""

    #: Will fail again the same way (too large, not authorized, invalid topic).
    PERMANENT = "permanent"
    #: May succeed if sent again (timed out, all brokers down). A re-send keeps
    #: the same ``ce_id`` so consumers can de-duplicate.
    RETRIABLE = "retriable"
    #: The producer itself is broken (e.g. idempotence sequence error).
    FATAL = "fatal"
    #: Not delivered *yet*, but durable: the outbox holds it and a relay sends it
    #: (``_IN_OUTBOX``). Not a loss, and not to be re-sent.
    DEFERRED = "deferred"


class Resend(enum.Enum):
    """Whether sending a failed event again is safe: :attr:`DeliveryFailure.resend`.

    One rule for every code, decided in this order: an event the outbox still holds
    is never re-sent; a permanent failure waits for its cause to be fixed; an event
    that may already be in the log may be duplicated by a re-send; anything else is
    safe to re-send. Always re-send with the same ``event_id`` (``ce_id``).
    """

    #: Nothing was written: re-send it with the same ``event_id``.
    SAFE = "safe"
    #: It may already be in the log: a re-send with the same ``event_id`` can write a
    #: second copy, which consumers drop by ``ce_id``. Nothing is lost either way.
    MAY_DUPLICATE = "may_duplicate"
    #: It fails the same way until its cause is fixed (size, ACLs, topic, event id).
    AFTER_FIX = "after_fix"
    #: Do not re-send: it is durable in the outbox and a relay will deliver it.
    NEVER = "never"


@dataclass(frozen=True, slots=True)
class DeliveryFailure:
    """One event that Kafka did not acknowledge, and why."""

    event_id: str
    event_type: str
    topic: str
    code: str
    reason: str
    error_class: ErrorClass
    #: True when the event may already be in the log although it failed
    #: (``_MSG_TIMED_OUT``): a re-send can create a duplicate with the same id.
    possibly_written: bool = False

    @property
    def resend(self) -> Resend:
        """Whether re-sending this event is safe; see :class:`Resend` for the rule."""
        return resend_advice(self.error_class, self.possibly_written)

    def describe(self) -> str:
        """One line naming the event, the error code, its meaning and the remedy."""
        written = " (it may still have been written)" if self.possibly_written else ""
        return (
            f"event {self.event_id} ({self.event_type}) to topic {self.topic!r}: "
            f"{self.code} [{self.error_class.value}] {self.reason}{written}; "
            f"{remedy(self.code, self.error_class, self.possibly_written)}"
        )


def resend_advice(error_class: ErrorClass, possibly_written: bool) -> Resend:
    """The :class:`Resend` rule: the one place that decides it, for every code."""
    if error_class is ErrorClass.DEFERRED:
        return Resend.NEVER
    if error_class is ErrorClass.PERMANENT:
        return Resend.AFTER_FIX
    return Resend.MAY_DUPLICATE if possibly_written else Resend.SAFE


def remedy(code: str, error_class: ErrorClass, possibly_written: bool) -> str:
    """What to do about a failure: the re-send advice, then what the code adds."""
    advice = _RESEND_TEXT[resend_advice(error_class, possibly_written)]
    extra = _CODE_REMEDY.get(code) or _CLASS_REMEDY.get(error_class)
    return f"{advice}; {extra}" if extra else advice


_RESEND_TEXT = {
    Resend.SAFE: "safe to re-send with the same event_id",
    Resend.MAY_DUPLICATE: "a re-send with the same event_id may write a second copy "
    "(consumers drop it by ce_id)",
    Resend.AFTER_FIX: "re-sending fails the same way until the cause is fixed",
    Resend.NEVER: "do not re-send it: it is durable in the outbox and the next relay "
    "sends it (same ce_id)",
}
_CLASS_REMEDY = {
    ErrorClass.PERMANENT: "fix the event, the topic or the ACLs",
    ErrorClass.RETRIABLE: "it may succeed once Kafka is reachable again",
    ErrorClass.FATAL: "the producer is unusable: re-send through a new publisher",
}
#: What a code adds to its re-send advice, where it says more than its class.
_CODE_REMEDY = {
    "_OUTBOX_WRITE_FAILED": "nothing was stored",
    "_OUTBOX_WRITE_UNKNOWN": "the outbox will not store it twice while it is unsent",
    "_CLOSED": "it was not sent; publish it with a new publisher",
    "_EVENT_ID_CONFLICT": "give a different event its own event_id; a re-send of the same "
    "event must carry the same topic, key and value",
}


class DeliveryError(EventwireError):
    """One or more events were not acknowledged by Kafka.

    :attr:`failures` lists every failed event with its id, type, topic, error
    code, meaning, classification and re-send advice (:attr:`DeliveryFailure.resend`).
    ``result()``, an awaited ``publish()`` and ``publish_many`` report a failure to
    the caller; ``flush()`` and ``close()`` raise it for the failures nobody observed
    that way, and for events that did not finish in time. A publisher keeps at most
    :data:`eventwire._inflight.KEPT_FAILURES` unobserved failures between flushes:
    :attr:`not_kept` counts the rest (each was logged as ``delivery_failed``).
    """

    def __init__(
        self, failures: Iterable[DeliveryFailure], context: str = "", *, not_kept: int = 0
    ) -> None:
        self.failures: Sequence[DeliveryFailure] = tuple(failures)
        #: Failures past the kept maximum: counted and logged, not listed.
        self.not_kept = not_kept
        n = len(self.failures) + not_kept
        head = f"{n} event{'s' if n != 1 else ''} not delivered"
        if context:
            head += f" ({context})"
        shown = self.failures[:20]
        lines = [f"  - {f.describe()}" for f in shown]
        if len(self.failures) > len(shown):
            lines.append(
                f"  ... and {len(self.failures) - len(shown)} more (see DeliveryError.failures)"
            )
        if not_kept:
            lines.append(
                f"  ... and {not_kept} more not kept in memory (each was logged as "
                "delivery_failed; see DeliveryError.not_kept)"
            )
        super().__init__(head + ":\n" + "\n".join(lines))


class BrokerUnavailableError(EventwireError, ConnectionError):
    """No broker answered within the connection check's bounded time.

    Raised by the publisher's start-up check (``connect_timeout``); the message
    names the bootstrap servers and librdkafka's reason.
    """


class OutboxWriteError(EventwireError):
    """An outbox store could not commit events (``store.add`` without ``connection=``).

    :attr:`possibly_written` is False when nothing was stored (the write failed or
    was rolled back before COMMIT), True when the outcome is unknown (e.g. the
    connection dropped during COMMIT: the events may be stored and will then be
    relayed). Either way the remedy is the same: re-send with the same
    ``event_id``; the outbox does not store an event twice while it is unsent.
    The database's own exception is ``__cause__``.
    """

    def __init__(self, count: int, reason: str, *, possibly_written: bool) -> None:
        self.possibly_written = possibly_written
        what = f"{count} event{'s' if count != 1 else ''}"
        if possibly_written:
            head = (
                f"the outcome of the outbox write of {what} is unknown ({reason}): "
                "they may be stored"
            )
        else:
            head = f"the outbox write of {what} failed ({reason}): nothing was stored"
        super().__init__(
            f"{head}; re-send with the same event_id: the outbox will not store it twice"
        )


class EventIdConflictError(EventwireError, ValueError):
    """``add()`` got an entry whose ``event_id`` belongs to a different event.

    The outbox stores an event once while it is unsent, so a re-send with the same
    ``event_id`` must be the same event: same topic, key and value (headers may
    differ, e.g. ``ce_time``). Nothing of that ``add()`` is stored (with
    ``connection=``, the caller's transaction may hold the entries before the
    conflicting one: roll it back).

    Attributes:
        event_id: the event id used twice.
        row_id: the unsent row already holding it, or None if the clash is between
            two entries of the same ``add()``.
        differing: which of ``"topic"``, ``"key"``, ``"value"`` differ.
    """

    def __init__(self, event_id: str, row_id: int | None, differing: Sequence[str]) -> None:
        self.event_id = event_id
        self.row_id = row_id
        self.differing = tuple(differing)
        where = (
            "an earlier entry of the same add()"
            if row_id is None
            else f"the unsent outbox row {row_id}"
        )
        super().__init__(
            f"event_id {event_id!r} is already used by {where} with a different "
            f"{', '.join(self.differing)}; nothing of this add() was stored. Give a different "
            "event a new event_id; a re-send of the same event must carry the same topic, "
            "key and value"
        )


class AuthenticationError(BrokerUnavailableError):
    """A broker rejected the client's SASL authentication.

    Raised by the start-up connection check (``connect_timeout``) as soon as
    librdkafka reports it, without waiting for the rest of the timeout. The message
    names the broker, the SASL mechanism and the user name, never the password. Also
    raised, at the end of the check, when a client without SASL saw the broker hang up
    every connection right after it was set up (:attr:`mechanism` is then None).
    :attr:`reason` is librdkafka's text (scrubbed of every configured secret).
    """

    def __init__(
        self, broker: str, mechanism: str | None, username: str | None, reason: str
    ) -> None:
        self.broker = broker
        #: The SASL mechanism tried; None when the client used no SASL and the broker
        #: hung up right after connecting (it most likely requires SASL).
        self.mechanism = mechanism
        self.username = username
        self.reason = reason
        if mechanism is None:
            super().__init__(
                f"Kafka broker {broker} closed every connection right after it was set up "
                f"({reason}): it most likely requires SASL authentication, which this client "
                "does not use. Set security_protocol to SASL_SSL (or SASL_PLAINTEXT) and "
                "sasl_mechanism, sasl_username and sasl_password."
            )
            return
        who = f" as user {username!r}" if username else ""
        super().__init__(
            f"Kafka broker {broker} rejected SASL {mechanism} authentication{who}: {reason}. "
            "Check sasl_username, sasl_password and sasl_mechanism (the user must exist "
            "on the cluster for that mechanism) and that security_protocol matches the "
            "listener (SASL_SSL or SASL_PLAINTEXT)."
        )


class TLSError(BrokerUnavailableError):
    """The TLS connection to a broker could not be set up.

    The broker's certificate was not accepted (its CA is not trusted, or it does not
    name the host in ``bootstrap_servers``), or one side spoke TLS and the other
    did not (``security_protocol`` does not match the listener). Raised by the start-up
    connection check (``connect_timeout``); the message names the broker and what to
    check. :attr:`reason` is librdkafka's text (scrubbed of every configured secret).
    """

    def __init__(self, broker: str, reason: str, remedy: str) -> None:
        self.broker = broker
        self.reason = reason
        self.remedy = remedy
        super().__init__(f"TLS with Kafka broker {broker} failed: {reason}. {remedy}")
