"""In-process test helpers for code that publishes with eventwire.

* :func:`capture_events` -- a real publisher (:class:`~eventwire.Publisher` in a
  ``with`` block, :class:`~eventwire.AsyncPublisher` in an ``async with`` block) over
  the in-memory transport, and the typed events it sent.
* :class:`MemoryTransport` (and the :class:`MemoryRecord` it stores) -- an in-memory log
  with topics, partitions, offsets and injectable faults, to pass as ``transport=``.

Nothing here starts a process or opens a socket. The real local Kafka cluster, the
PostgreSQL runner and the pytest fixtures live in the separate ``eventwire-devkit``
distribution.

:func:`capture_events` is like ``eventwire.observability.logging.capture_logs()``, but for
events. The same helper serves sync and async tests::

    from eventwire.testing import capture_events

    def test_placing_an_order_publishes_order_placed():
        with capture_events() as captured:
            OrderService(publisher=captured.publisher).place(order)
        assert captured.events(OrderPlaced) == [OrderPlaced(order_id="o-1", ...)]

    async def test_the_async_service_publishes_order_placed():   # pytest-asyncio or anyio
        async with capture_events() as captured:
            await AsyncOrderService(publisher=captured.publisher).place(order)
            assert await captured.wait_for(1, OrderPlaced) == [OrderPlaced(order_id="o-1", ...)]

The publisher is a real one over a :class:`MemoryTransport`: routing, validation,
encoding and CloudEvents headers all run exactly as in production, and
:meth:`CapturedEvents.events` decodes what was sent back into the event classes
(msgspec Structs, dataclasses, attrs classes, pydantic models) with the same codec.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from types import TracebackType
from typing import Any, Generic, TypeVar, overload

from eventwire._async_publisher import AsyncPublisher
from eventwire._codec import Codec, TopicCodec, decode_value, resolve_codec
from eventwire._errors import DeliveryError, PublisherStateError
from eventwire._event import Route
from eventwire._publisher import Publisher
from eventwire._router import Router
from eventwire._timeouts import seconds
from eventwire.transports.memory import MemoryRecord, MemoryTransport

__all__ = ["CapturedEvents", "EventCapture", "MemoryRecord", "MemoryTransport", "capture_events"]

T = TypeVar("T")
P = TypeVar("P", Publisher, AsyncPublisher)


class CapturedEvents(Generic[P]):
    """What a captured publisher sent: typed events, or the raw records.

    Attributes:
        publisher: the publisher to hand to the code under test (a
            :class:`~eventwire.Publisher` from ``with capture_events()``, an
            :class:`~eventwire.AsyncPublisher` from ``async with capture_events()``).
        transport: the :class:`MemoryTransport` it writes to (inject faults there).
    """

    def __init__(
        self,
        publisher: P,
        transport: MemoryTransport,
        codec: Codec | TopicCodec,
        router: Router,
    ) -> None:
        self.publisher: P = publisher
        self.transport = transport
        self._codec = codec
        self._router = router

    def records(self, topic: str | None = None) -> list[MemoryRecord]:
        """Every record sent (to ``topic``), by topic, partition and offset."""
        return self.transport.records(topic)

    @overload
    def events(self, cls: type[T], topic: str | None = None) -> list[T]: ...
    @overload
    def events(self, cls: None = None, topic: str | None = None) -> list[Any]: ...
    def events(self, cls: type[T] | None = None, topic: str | None = None) -> list[Any]:
        """The events sent (of class ``cls``, to ``topic``), decoded, in send order.

        With ``cls``, records are matched on their ``ce_type`` header, so events of
        other types on the same topic are skipped. Without it, every event is
        decoded into the class it was published as.
        """
        return [self._decode(r, cls) for r in self._matching(cls, topic)]

    @overload
    async def wait_for(
        self, count: int, cls: type[T], *, topic: str | None = None, timeout: float = 5.0
    ) -> list[T]: ...
    @overload
    async def wait_for(
        self,
        count: int = 1,
        cls: None = None,
        *,
        topic: str | None = None,
        timeout: float = 5.0,
    ) -> list[Any]: ...
    async def wait_for(
        self,
        count: int = 1,
        cls: type[T] | None = None,
        *,
        topic: str | None = None,
        timeout: float = 5.0,
    ) -> list[Any]:
        """Wait until at least ``count`` events (of ``cls``, to ``topic``) were sent.

        Returns :meth:`events` ``(cls, topic)`` at that moment (all of them, so a
        test sees any extra event too). For code under test that publishes in a
        background task or with ``publish_nowait``. Polls the in-memory log with
        ``asyncio.sleep`` (every 1 to 20 ms), so it runs on an asyncio loop (under
        anyio: the ``asyncio`` backend, which :class:`AsyncPublisher` needs anyway).

        Raises:
            TimeoutError: fewer than ``count`` were sent within ``timeout`` s; the
                message lists those that were.
            ValueError: ``count`` < 1, or ``timeout`` not a number of seconds >= 0
                (NaN included: a ConfigurationError, which is a ValueError).
        """
        if count < 1:
            raise ValueError(f"wait_for needs count >= 1, got {count}")
        timeout = seconds(timeout, "wait_for(timeout)")
        deadline = time.monotonic() + timeout
        delay = 0.001
        while len(self._matching(cls, topic)) < count:
            if time.monotonic() >= deadline:
                seen = self.events(cls, topic)
                what = cls.__qualname__ if cls is not None else "any type"
                where = f" to topic {topic!r}" if topic is not None else ""
                raise TimeoutError(
                    f"waited {timeout:g} s for {count} event(s) of {what}{where}; "
                    f"{len(seen)} sent: {seen!r}"
                )
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.02)
        return self.events(cls, topic)

    def publisher_type_name(self, cls: type) -> str:
        """The ``ce_type`` the publisher uses for ``cls``."""
        return self._router.resolve(cls).type_name

    def _matching(self, cls: type | None, topic: str | None) -> list[MemoryRecord]:
        if cls is not None and not isinstance(cls, type):
            raise TypeError(
                f"pass the event class, e.g. events({type(cls).__qualname__}), not an "
                f"instance ({cls!r}): the events of that class are returned, to compare "
                "with what you expect"
            )
        records = self.records(topic)
        if cls is not None:
            type_name = self.publisher_type_name(cls).encode()
            records = [r for r in records if r.header("ce_type") == type_name]
        records.sort(key=lambda r: r.sequence)
        return records

    def _decode(self, record: MemoryRecord, cls: type[T] | None) -> Any:
        if cls is None:
            cls = self._class_of(record)
        return decode_value(self._codec, record.value, cls, record.topic)

    def _class_of(self, record: MemoryRecord) -> type:
        """The class a record was published as (its ``ce_type``, via the publisher's routes)."""
        type_name = (record.header("ce_type") or b"").decode()
        # Every class the publisher sent is bound in its router's cache.
        routers = (self.publisher._core._router, self._router)
        classes = {
            cls
            for router in routers
            for cls, bound in list(router.cache.items())
            if bound.type_name == type_name
        }
        if len(classes) > 1:
            # The record says only its ce_type: decoding it as either class could be wrong.
            names = ", ".join(sorted(c.__qualname__ for c in classes))
            raise LookupError(
                f"{names} share the ce_type {type_name!r}, so a record of it cannot say "
                "which class it was published as: give each its own type_name (consumers "
                "cannot tell them apart either), or pass cls to events()"
            )
        if classes:
            return classes.pop()
        raise LookupError(  # pragma: no cover - only the captured publisher writes here
            f"no event class has ce_type {type_name!r}: pass cls to events()"
        )


class EventCapture:
    """The context manager :func:`capture_events` returns: ``with`` or ``async with``.

    ``with`` yields a :class:`CapturedEvents` over a :class:`~eventwire.Publisher`;
    ``async with`` (inside a running event loop) one over an
    :class:`~eventwire.AsyncPublisher` bound to that loop. Either way the publisher
    is closed on exit, so a delivery failure the test never observed raises
    :class:`~eventwire.DeliveryError` there, as it would in production.
    """

    def __init__(
        self,
        routes: Mapping[Any, Route] | None,
        codec: Codec | TopicCodec | str,
        source: str,
        transport_options: Mapping[str, Any],
    ) -> None:
        self._codec = resolve_codec(codec)
        self._routes = routes
        self._source = source
        self._transport_options = dict(transport_options)
        self._sync: Publisher | None = None
        self._async: AsyncPublisher | None = None

    def _parts(self) -> tuple[MemoryTransport, dict[str, Any], Router]:
        if self._sync is not None or self._async is not None:
            raise PublisherStateError(
                "this capture_events(...) is already in use: call capture_events() once per block"
            )
        transport = MemoryTransport(**self._transport_options)
        options: dict[str, Any] = {
            "routes": self._routes,
            "codec": self._codec,
            "source": self._source,
            "transport": transport,
        }
        # The same routing as the publisher's, to name the types it sends.
        router = Router(self._routes, source=self._source, content_type=self._codec.content_type)
        return transport, options, router

    def __enter__(self) -> CapturedEvents[Publisher]:
        transport, options, router = self._parts()
        publisher = self._sync = Publisher(**options)
        return CapturedEvents(publisher, transport, self._codec, router)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        publisher, self._sync = self._sync, None
        if publisher is None:
            return
        try:
            publisher.__exit__(exc_type, exc, tb)
        except DeliveryError as closing:
            _keep_the_tests_own_error(exc, closing)

    async def __aenter__(self) -> CapturedEvents[AsyncPublisher]:
        transport, options, router = self._parts()
        publisher = self._async = AsyncPublisher(**options)
        await publisher.start()
        return CapturedEvents(publisher, transport, self._codec, router)

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        publisher, self._async = self._async, None
        if publisher is None:
            return
        try:
            await publisher.__aexit__(exc_type, exc, tb)
        except DeliveryError as closing:
            _keep_the_tests_own_error(exc, closing)


def _keep_the_tests_own_error(exc: BaseException | None, closing: DeliveryError) -> None:
    """Raise ``closing`` (the close's DeliveryError), unless the block already failed.

    A test whose own assertion failed inside the block must see that assertion, not a
    DeliveryError from closing the capture: the latter is added to it as a note.
    """
    if exc is None:
        raise closing
    exc.add_note(f"and on closing the capture: {type(closing).__name__}: {closing}")


def capture_events(
    *,
    routes: Mapping[Any, Route] | None = None,
    codec: Codec | TopicCodec | str = "json",
    source: str = "eventwire-test",
    **transport_options: Any,
) -> EventCapture:
    """A publisher that records in memory, and the events it sent: ``with`` or ``async with``.

    ``with capture_events() as captured`` gives ``captured.publisher``, a
    :class:`~eventwire.Publisher`; ``async with capture_events() as captured`` an
    :class:`~eventwire.AsyncPublisher` on the running loop (pytest-asyncio, anyio's
    pytest plugin on its asyncio backend, or ``asyncio.run``). Then
    ``captured.events(OrderPlaced)`` is the list of ``OrderPlaced`` sent, decoded,
    and ``await captured.wait_for(n, OrderPlaced)`` waits until ``n`` were sent.

    The publisher is closed on exit, so a failed delivery the test never observed
    raises DeliveryError there, as it would in production. ``transport_options`` go
    to :class:`MemoryTransport` (e.g. ``partitions=6``).

    Raises:
        ConfigurationError: an unknown ``codec`` name (at once, not on entering).
    """
    return EventCapture(routes, codec, source, transport_options)
