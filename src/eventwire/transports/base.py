"""The transport seam: send one record, get its delivery report later.

A transport is the only place that knows a Kafka client library. Delivery
reports use the *shape* of confluent-kafka's ``(KafkaError | None, Message)``
callback arguments, as the two small protocols below, so the publisher core
works the same on every transport and never imports confluent_kafka.
"""

from __future__ import annotations

import abc
import time
from collections.abc import Callable, Sequence
from typing import Protocol

__all__ = [
    "BaseTransport",
    "DeliveryCallback",
    "ReportError",
    "ReportMessage",
    "SendRejected",
    "TransportQueueFull",
    "factory_of",
    "send_within",
]


class ReportError(Protocol):
    """What went wrong with one record (shape of ``confluent_kafka.KafkaError``)."""

    def name(self) -> str:
        """The error's symbolic name, e.g. ``"_MSG_TIMED_OUT"``."""
        ...

    def str(self) -> str:
        """A human-readable description."""
        ...


class ReportMessage(Protocol):
    """The record as reported back (shape of ``confluent_kafka.Message``)."""

    def topic(self) -> str | None:
        """Topic the record was sent to."""
        ...

    def partition(self) -> int | None:
        """Partition it was written to (or assigned)."""
        ...

    def offset(self) -> int | None:
        """Offset in the partition, if written."""
        ...

    def timestamp(self) -> tuple[int, int]:
        """``(timestamp_type, unix_ms)``."""
        ...


#: Called exactly once per sent record, from a transport-owned thread.
DeliveryCallback = Callable[["ReportError | None", ReportMessage], None]


class TransportQueueFull(Exception):
    """The transport's local queue is full right now; try again shortly."""


class SendRejected(Exception):
    """The transport refused a record synchronously (e.g. too large, fatal state).

    ``code`` is the Kafka error name; nothing was enqueued.
    """

    def __init__(self, code: str, reason: str, *, fatal: bool = False) -> None:
        super().__init__(f"{code}: {reason}")
        self.code = code
        self.reason = reason
        self.fatal = fatal


class BaseTransport(abc.ABC):
    """Moves encoded records to a log and reports each one's fate exactly once.

    A transport implements :meth:`send`, :meth:`flush` and :meth:`close`. Every
    other capability the publisher and the relay use is a method here with a
    default that is correct for a simple transport, so they call it without
    probing (httpx's ``BaseTransport`` is the model). Subclasses call
    ``super().__init__()`` and report errors with :meth:`_report_fatal` and
    :meth:`_report_error`.
    """

    #: True if a record reported ``_PURGE_QUEUE`` (dropped from the local queue) may
    #: nevertheless be in the log. False promises that a queued record was never
    #: written. librdkafka puts a record whose ProduceRequest timed out back in its
    #: queue for a retry, and a purge then reports it ``_PURGE_QUEUE`` although the
    #: broker may have written it (seen on its mock cluster, with no error or log
    #: line to tell), so :class:`~eventwire.transports.kafka.KafkaTransport` says True.
    queued_may_be_written: bool = False

    def __init__(self) -> None:
        self._fatal_listeners: list[Callable[[str, str], None]] = []
        self._error_listeners: list[Callable[[str, str], None]] = []

    # -- what every transport implements ------------------------------------------------
    @abc.abstractmethod
    def send(
        self,
        topic: str,
        key: bytes | None,
        value: bytes,
        headers: Sequence[tuple[str, bytes]],
        on_delivery: DeliveryCallback,
    ) -> None:
        """Enqueue one record without blocking on the network.

        ``on_delivery`` is called exactly once for an enqueued record, later, from a
        thread the transport owns (or inside a later ``send``/``flush``).

        Raises:
            TransportQueueFull: the local queue is full; nothing was enqueued.
            SendRejected: the record can never be enqueued as it is.
        """

    @abc.abstractmethod
    def flush(self, timeout: float) -> int:
        """Wait up to ``timeout`` s for outstanding reports; return how many remain."""

    @abc.abstractmethod
    def close(self, timeout: float) -> int:
        """Flush up to ``timeout`` s, then drop and report what remains; release resources.

        Every record still outstanding gets a failed report (``_PURGE_QUEUE`` or
        ``_PURGE_INFLIGHT``) before this returns, and nothing is sent afterwards
        (``send`` raises :class:`SendRejected`). Returns the number that remained.
        """

    # -- capabilities with defaults -------------------------------------------------------
    def wait_for_space(self, timeout: float) -> None:
        """Block up to ``timeout`` s, serving reports, so the queue can drain.

        Default: a 1 ms sleep (a transport that reports synchronously drains at once).
        """
        time.sleep(min(timeout, 0.001))

    def on_fatal(self, callback: Callable[[str, str], None]) -> None:
        """Register ``callback(code, reason)``, called once on a fatal producer error."""
        self._fatal_listeners.append(callback)

    def on_error(self, callback: Callable[[str, str], None]) -> None:
        """Register ``callback(code, reason)`` for non-fatal client errors.

        E.g. ``_ALL_BROKERS_DOWN`` or ``_TRANSPORT``; circuit breakers listen. A
        transport that has no such errors never calls it.
        """
        self._error_listeners.append(callback)

    def wake(self) -> None:
        """Serve delivery reports promptly: a caller waits for one. Default: nothing.

        Called when ``result()`` blocks, and by AsyncPublisher each time its loop
        goes back to waiting after a burst of ``publish_nowait`` calls.
        """
        return None  # a default that does nothing, on purpose

    def surface_fatal(self) -> None:
        """Make a pending fatal error known to the fatal listeners now. Default: nothing."""
        return None  # a default that does nothing, on purpose

    def abandon(self) -> None:
        """Give this transport up after a fatal error; must return promptly.

        Its late reports are ignored by the caller. Default: ``close(0)``.
        """
        self.close(0)

    def check_connection(self, timeout: float) -> None:
        """Raise BrokerUnavailableError unless the log answers within ``timeout`` s.

        Default: nothing to check (an in-process log is always there).
        """
        return None  # a default that does nothing, on purpose

    def in_report_callback(self) -> bool:
        """True on a thread that is running one of this transport's delivery callbacks.

        Where the client library cannot be re-entered from a callback, the publisher
        refuses ``flush()``/``close()`` there instead of aborting or hanging.
        Default: False (callbacks may call anything).
        """
        return False

    def queue_length(self) -> int | None:
        """Records waiting to be sent or acknowledged; None if unknown (the default)."""
        return None

    def recreate(self) -> BaseTransport | None:
        """A fresh transport to the same log, to replace this one after a fatal error.

        None (the default) means this transport cannot make one: a fatal error is
        then final for a publisher, and an outbox relay fails every round
        (``outbox_relay_failing``; ``flush()`` raises RelayFailingError) until it
        is restarted.
        """
        return None

    # -- for subclasses -------------------------------------------------------------------
    def _report_fatal(self, code: str, reason: str) -> None:
        """Tell every fatal listener (call it once per fatal error)."""
        for listener in list(self._fatal_listeners):
            listener(code, reason)

    def _report_error(self, code: str, reason: str) -> None:
        """Tell every error listener about a non-fatal client error."""
        for listener in list(self._error_listeners):
            listener(code, reason)


def factory_of(first: BaseTransport) -> Callable[[], BaseTransport]:
    """A transport factory: ``first`` on the first call, then a re-created one each call.

    For the outbox relay, which asks for a new transport after every fatal error.

    Raises (from the second call on):
        SendRejected: the latest transport cannot be re-created (see :meth:`recreate`).
    """
    latest: BaseTransport | None = None

    def make() -> BaseTransport:
        nonlocal latest
        if latest is None:
            latest = first
            return first
        new = latest.recreate()
        if new is None:
            raise SendRejected(
                "_FATAL", f"{type(latest).__name__} cannot be re-created after a fatal error"
            )
        latest = new
        return new

    return make


def send_within(
    send: Callable[[], bool], wait_for_space: Callable[[float], None], deadline: float
) -> bool:
    """Call ``send()`` until it enqueues (True) or ``deadline`` passes (False).

    Between tries it waits for room with ``wait_for_space(seconds)``, at most 50 ms
    at a time. The one "wait for queue space until the deadline" loop.
    """
    while not send():
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        wait_for_space(min(left, 0.05))
    return True
