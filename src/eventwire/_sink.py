"""Where a publisher's records go: straight to the producer, or into the outbox.

A :class:`Sink` takes the records :class:`~eventwire._core.PublisherCore` built.
:class:`DirectSink` sends them through the producer; the outbox's
:class:`~eventwire.outbox.sink.OutboxSink` commits them to a store for its relay.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol

from eventwire._errors import EventwireError

if TYPE_CHECKING:
    from eventwire._core import PublisherCore
    from eventwire._handle import DeliveryHandle
    from eventwire._producer import Producer
    from eventwire._record import Record

__all__ = ["BatchPublishError", "DirectSink", "Sink"]


class BatchPublishError(EventwireError):
    """``publish_many`` enqueued only part of a batch: events before one that failed.

    The events ``0 .. failed_index - 1`` were enqueued and will be reported as
    usual (:attr:`handles`); the event at :attr:`failed_index` and every later one
    were *not*. :attr:`event_ids` holds the ``ce_id`` given to each event of the
    batch, so the rest can be re-sent under the same ids::

        except BatchPublishError as err:
            rest = events[err.failed_index:]
            publisher.publish_many(rest, event_ids=err.event_ids[err.failed_index:])

    ``__cause__`` is the failed event's own error (e.g. BackpressureError, or a
    DeliveryError for an event refused as too large).
    """

    def __init__(
        self,
        handles: Sequence[DeliveryHandle],
        event_ids: Sequence[str],
        failed_index: int,
        cause: BaseException,
    ) -> None:
        self.handles: list[DeliveryHandle] = list(handles)
        self.event_ids: list[str] = list(event_ids)
        self.failed_index = failed_index
        super().__init__(
            f"publish_many enqueued {failed_index} of {len(self.event_ids)} events, then "
            f"stopped at event {failed_index} (ce_id {self.event_ids[failed_index]}): {cause}. "
            "The enqueued ones are in .handles; re-send the rest with "
            "event_ids=err.event_ids[err.failed_index:] to keep their ids."
        )


class Sink(Protocol):
    """What :class:`Publisher` does with its records."""

    def try_send(self, record: Record) -> bool:
        """Take one record (traced) if that needs no waiting; False: call :meth:`send`."""
        ...

    def send(self, record: Record) -> None:
        """Take one record (traced), waiting if need be, or raise without having taken it."""
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
        #: Enqueue one record if there is room: :meth:`Producer.try_send`.
        self.try_send = producer.try_send
        #: Enqueue one record, waiting for room: :meth:`Producer.send_blocking`.
        self.send = producer.send_blocking
        self._producer = producer

    def send_many(self, records: list[Record]) -> None:
        """Enqueue in order; a queue cannot take back what it holds, so not all-or-nothing.

        Raises:
            BatchPublishError: record ``k`` could not be enqueued (its own error is the
                ``__cause__``); records ``0..k-1`` were, the rest were not.
        """
        batch = self._core.trace_batch(records)  # one send span for the batch
        for n, record in enumerate(records):
            try:
                self._producer.send_blocking(record)
            except BaseException as exc:
                # record n settled (failed or interrupted: Producer._interrupted) or is
                # in flight (it settles later); n+1.. were never sent
                if batch is not None:
                    batch.unsent(len(records) - n - 1)
                if not isinstance(exc, EventwireError):
                    raise
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
