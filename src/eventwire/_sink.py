"""Where a publisher's records go: straight to the producer, or into the outbox.

A :class:`Sink` takes the records :class:`~eventwire._core.PublisherCore` built.
:class:`DirectSink` sends them through the producer; the outbox's
:class:`~eventwire.outbox.sink.OutboxSink` commits them to a store for its relay.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from eventwire._errors import BatchPublishError, EventwireError

if TYPE_CHECKING:
    from eventwire._core import PublisherCore
    from eventwire._producer import Producer
    from eventwire._record import Record

__all__ = ["DirectSink", "Sink"]


class Sink(Protocol):
    """What :class:`Publisher` does with its records."""

    def send(self, record: Record) -> None:
        """Take one record (traced), or raise without having taken it."""
        ...

    def send_many(self, records: list[Record]) -> None:
        """Take the records (untraced) in order; raise BatchPublishError if only some."""
        ...

    def flush(self, timeout: float) -> None:
        """Wait up to ``timeout`` s; raise for the failures since the last flush."""
        ...

    def close(self, timeout: float) -> None:
        """Once the close gate is shut: finish what was taken, within ``timeout`` s."""
        ...

    @property
    def in_flight(self) -> int:
        """Records taken and not yet settled."""
        ...


class DirectSink:
    """Records go to the producer, waiting (bounded) while its queue is full."""

    def __init__(self, core: PublisherCore, producer: Producer) -> None:
        self._core = core
        #: Enqueue one record: :meth:`Producer.send_blocking`.
        self.send = producer.send_blocking
        self._producer = producer

    def send_many(self, records: list[Record]) -> None:
        """Enqueue in order; a queue cannot take back what it holds, so not all-or-nothing.

        Raises:
            BatchPublishError: record ``k`` could not be enqueued (its own error is the
                ``__cause__``); records ``0..k-1`` were, the rest were not.
        """
        for n, record in enumerate(records):
            self._core.trace(record)  # a span only for an event really sent
            try:
                self._producer.send_blocking(record)
            except EventwireError as exc:
                handles = [r.handle for r in records]
                ids = [h.event_id for h in handles]
                raise BatchPublishError(handles[:n], ids, n, exc) from exc

    def flush(self, timeout: float) -> None:
        """See :meth:`PublisherCore.flush`."""
        self._core.flush(timeout)

    def close(self, timeout: float) -> None:
        """See :meth:`PublisherCore.finish_close`."""
        self._core.finish_close(timeout)

    @property
    def in_flight(self) -> int:
        """Events enqueued and not yet settled."""
        return self._core.in_flight
