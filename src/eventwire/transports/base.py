"""The transport seam: send one record, get its delivery report later.

A transport is the only place that knows a Kafka client library. Delivery
reports use the *shape* of confluent-kafka's ``(KafkaError | None, Message)``
callback arguments, as the two small protocols below, so the publisher core
works the same on every transport and never imports confluent_kafka.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

__all__ = [
    "DeliveryCallback",
    "ReportError",
    "ReportMessage",
    "SendRejected",
    "Transport",
    "TransportQueueFull",
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


class Transport(Protocol):
    """Moves encoded records to a log and reports each one's fate exactly once."""

    def send(
        self,
        topic: str,
        key: bytes | None,
        value: bytes,
        headers: Sequence[tuple[str, bytes]],
        on_delivery: DeliveryCallback,
    ) -> None:
        """Enqueue one record without blocking on the network.

        Raises:
            TransportQueueFull: the local queue is full; nothing was enqueued.
            SendRejected: the record can never be enqueued as it is.
        """
        ...

    def flush(self, timeout: float) -> int:
        """Wait up to ``timeout`` s for outstanding reports; return how many remain."""
        ...

    def close(self, timeout: float) -> int:
        """Flush up to ``timeout`` s, then drop and report what remains; release resources.

        Every record still outstanding gets a failed report (``_PURGE_QUEUE`` or
        ``_PURGE_INFLIGHT``) before this returns. Returns the number that remained.
        """
        ...

    def wait_for_space(self, timeout: float) -> None:
        """Block up to ``timeout`` s, serving reports, so the queue can drain."""
        ...

    def on_fatal(self, callback: Callable[[str, str], None]) -> None:
        """Register ``callback(code, reason)`` for a fatal producer error."""
        ...
