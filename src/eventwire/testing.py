"""In-process test helpers for code that publishes with eventwire.

* :func:`capture_events` -- a real :class:`~eventwire.Publisher` over the in-memory
  transport, and the events it sent.
* :class:`MemoryTransport` (and the :class:`MemoryRecord` it stores) -- an in-memory log
  with topics, partitions, offsets and injectable faults, to pass as ``transport=``.

Nothing here starts a process or opens a socket. The real local Kafka cluster, the
PostgreSQL runner and the pytest fixtures live in the separate ``eventwire-devkit``
distribution.

:func:`capture_events` is like ``eventwire.observability.logging.capture_logs()``, but for events::

    from eventwire.testing import capture_events

    def test_placing_an_order_publishes_order_placed():
        with capture_events() as captured:
            OrderService(publisher=captured.publisher).place(order)
        assert captured.events(OrderPlaced) == [OrderPlaced(order_id="o-1", ...)]

The publisher is a real :class:`eventwire.Publisher` over a
:class:`MemoryTransport`: routing, validation,
encoding and CloudEvents headers all run exactly as in production.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any, TypeVar

from eventwire._codec import Codec, TopicCodec, decode_value, resolve_codec
from eventwire._event import Route
from eventwire._publisher import Publisher
from eventwire._router import Router
from eventwire.transports.memory import MemoryRecord, MemoryTransport

__all__ = ["CapturedEvents", "MemoryRecord", "MemoryTransport", "capture_events"]

T = TypeVar("T")


class CapturedEvents:
    """What a captured publisher sent: raw records, or decoded events."""

    def __init__(
        self,
        publisher: Publisher,
        transport: MemoryTransport,
        codec: Codec | TopicCodec,
        router: Router,
    ) -> None:
        self.publisher = publisher
        self.transport = transport
        self._codec = codec
        self._router = router

    def records(self, topic: str | None = None) -> list[MemoryRecord]:
        """Every record sent (to ``topic``), by topic, partition and offset."""
        return self.transport.records(topic)

    def events(self, cls: type[T], topic: str | None = None) -> list[T]:
        """Every record of type ``cls`` decoded back into ``cls``, in send order.

        Records are matched on their ``ce_type`` header, so events of other types
        on the same topic are skipped.
        """
        type_name = self.publisher_type_name(cls)
        records = [r for r in self.records(topic) if r.header("ce_type") == type_name.encode()]
        records.sort(key=lambda r: r.sequence)
        return [decode_value(self._codec, r.value, cls, r.topic) for r in records]

    def publisher_type_name(self, cls: type) -> str:
        """The ``ce_type`` the publisher uses for ``cls``."""
        return self._router.resolve(cls).type_name


@contextmanager
def capture_events(
    *,
    routes: Mapping[Any, Route] | None = None,
    codec: Codec | TopicCodec | str = "json",
    source: str = "eventwire-test",
    **transport_options: Any,
) -> Iterator[CapturedEvents]:
    """Yield a :class:`CapturedEvents` whose ``publisher`` records in memory.

    The publisher is closed on exit, so a failed delivery raises DeliveryError
    there, as it would in production. ``transport_options`` go to
    :class:`MemoryTransport` (e.g. ``partitions=6``).
    """
    codec_obj = resolve_codec(codec)
    transport = MemoryTransport(**transport_options)
    publisher = Publisher(routes=routes, codec=codec_obj, source=source, transport=transport)
    # The same routing as the publisher's, to name the types it sends.
    router = Router(routes, source=source, content_type=codec_obj.content_type)
    with publisher:
        yield CapturedEvents(publisher, transport, codec_obj, router)
