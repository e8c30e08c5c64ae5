"""The asyncio publisher: the same core, bridged to an event loop."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from types import TracebackType
from typing import Any, Unpack, cast

from eventwire._core import PublisherCore
from eventwire._errors import DeliveryError, DeliveryFailure, EventwireError, PublisherStateError
from eventwire._facade import Facade
from eventwire._handle import DeliveryHandle, DeliveryResult
from eventwire._inflight import InFlight
from eventwire._loop_bridge import LoopBridge
from eventwire._options import PublisherOptions, resolve_options
from eventwire._record import Record

__all__ = ["AsyncPublisher"]

_running_loop = asyncio.get_running_loop


def _fail(ledger: InFlight, handle: DeliveryHandle, error: BaseException) -> None:
    """Fail the future of an event refused from the backlog (never enqueued).

    Its failure is kept for flush()/close() too, as any other: reported there unless
    the future's exception was retrieved (an await, result(), exception()).
    """
    fut = handle._afut
    if fut is not None and not fut.done():
        fut.set_exception(error)
    ledger.keep_refused(handle)  # its failure, settled by the refusal (abandon)


class AsyncPublisher(Facade):
    """Publish events from asyncio code without ever blocking the event loop.

    Example::

        async with AsyncPublisher("localhost:9092") as publisher:
            meta = await publisher.publish(OrderPlaced(...))   # resolves at the broker ack
            print(meta.topic, meta.partition, meta.offset, meta.event_id)

    Promises:
        * ``await publish(e)`` resolves when the broker acknowledges ``e`` and
          raises :class:`DeliveryError` if it fails; ``publish_nowait`` returns the
          future at once. Delivery reports reach the loop through one thread-safe
          wake-up per burst, never by blocking it.
        * A full local queue is waited on with ``asyncio.sleep`` (bounded by
          ``enqueue_timeout``), never with a blocking call. Meanwhile every new
          event joins one FIFO backlog behind the waiting ones, so events are
          enqueued in publish order and per-key order is log order. If the queue
          stays full for ``enqueue_timeout``, every event then waiting fails with
          :class:`BackpressureError` (none of them is enqueued later).
        * ``publish_many`` isolates failures: one bad event does not cancel others.
        * Each failure is reported once: ``flush()``/``close()`` (and ``async with``)
          do not raise a failure an awaited ``publish()`` or future already raised,
          or ``publish_many`` returned; a future nobody awaited is reported by them
          (and then not by asyncio's "exception was never retrieved").
        * ``flush``/``close`` run librdkafka's blocking waits in a worker thread.

    It takes the same options as :class:`Publisher`
    (:class:`~eventwire._options.PublisherOptions`) but not ``outbox``, ``relay``
    and ``relay_options``: there is no asyncio outbox mode. asyncio code that needs
    the outbox can call a ``Publisher(outbox=...)`` through ``asyncio.to_thread``,
    or ``stage()`` the event in its own (synchronous) database transaction. The
    broker connection check (``connect_timeout``) runs in a worker thread on
    ``async with`` (or :meth:`start`), not in the constructor. With
    ``circuit_breaker``, the half-open probe (a Metadata request, up to 5 s) runs
    inside the ``publish_nowait()``/``publish()`` call that triggers it, on the
    event loop.
    """

    def __init__(
        self,
        bootstrap_servers: str | Sequence[str] | None = None,
        **options: Unpack[PublisherOptions],
    ) -> None:
        resolved = resolve_options(bootstrap_servers, options)
        # The broker check runs in start() (a worker thread), not here on the loop.
        self._core = PublisherCore(dataclasses.replace(resolved, connect_timeout=None))
        producer = self._core.producer
        assert producer is not None
        self._producer = producer
        # Every await waits on a report: keep the poll thread responsive.
        producer.set_busy_backoff(0.001)
        self._core.use_breaker(resolved.circuit_breaker)
        # flush()/close() take the failures with a future on the loop (_loop_failures).
        self._core.ledger.defer_futures = True
        self._connect_timeout = resolved.connect_timeout
        self._close_timeout = resolved.close_timeout
        self._enqueue_timeout = resolved.enqueue_timeout
        self._bridge: LoopBridge | None = None
        #: Events waiting for room in the local queue, in publish order.
        self._backlog: deque[Record] = deque()
        self._drainer: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Bind to the running loop and run the broker connection check in a thread."""
        self._bind()
        if self._connect_timeout is not None:
            try:
                await asyncio.to_thread(self._producer.check_connection, self._connect_timeout)
            except EventwireError:
                await asyncio.to_thread(self._core.close, 0)
                raise

    def _bind(self) -> LoopBridge:
        loop = asyncio.get_running_loop()
        bridge = self._bridge
        if bridge is None:
            bridge = self._bridge = LoopBridge(loop)
            self._core.ledger.on_settle(bridge.push)
        elif bridge.loop is not loop:
            raise PublisherStateError(
                "this AsyncPublisher is bound to another event loop; create one per loop"
            )
        return bridge

    def publish_nowait(
        self,
        event: Any,
        *,
        event_id: str | None = None,
        headers: Sequence[tuple[str, bytes]] | None = None,
    ) -> asyncio.Future[DeliveryResult]:
        """Enqueue ``event`` now and return a future that resolves at the broker ack.

        Raises (at once, nothing enqueued): RoutingError, SerializationError,
        DeliveryError for an immediately refused record, PublisherStateError,
        ProducerFatalError. A full queue does not raise here: the future fails
        with BackpressureError if the queue stays full for ``enqueue_timeout``.
        """
        core = self._core
        if core.unusable:
            core.check_usable()
        bridge = self._bridge
        if bridge is None or bridge.loop is not _running_loop():
            bridge = self._bind()
        record = core.prepare(event, event_id, headers)
        fut: asyncio.Future[DeliveryResult] = bridge.loop.create_future()
        record.handle._afut = fut
        if self._backlog or not self._producer.try_send(record):
            self._wait_for_room(record, bridge.loop)
        return fut

    def _wait_for_room(self, record: Record, loop: asyncio.AbstractEventLoop) -> None:
        """Queue ``record`` behind the events already waiting; start draining them."""
        self._backlog.append(record)
        if self._drainer is None:
            self._drainer = loop.create_task(self._drain())

    async def publish(
        self,
        event: Any,
        *,
        event_id: str | None = None,
        headers: Sequence[tuple[str, bytes]] | None = None,
    ) -> DeliveryResult:
        """Publish ``event`` and wait for the broker's acknowledgement.

        Raises:
            DeliveryError: the event was not delivered (``.failures[0]`` says why).
            BackpressureError: the local queue stayed full for ``enqueue_timeout``.
            and the errors of :meth:`publish_nowait`.
        """
        return await self.publish_nowait(event, event_id=event_id, headers=headers)

    async def publish_many(self, events: Iterable[Any]) -> list[DeliveryResult | EventwireError]:
        """Publish every event; return, in order, each one's result or its error.

        One invalid or failed event never cancels the others.
        """
        loop = asyncio.get_running_loop()
        futures: list[asyncio.Future[DeliveryResult]] = []
        for event in events:
            try:
                futures.append(self.publish_nowait(event))
            except EventwireError as exc:
                failed: asyncio.Future[DeliveryResult] = loop.create_future()
                failed.set_exception(exc)
                futures.append(failed)
        results = await asyncio.gather(*futures, return_exceptions=True)
        return cast("list[DeliveryResult | EventwireError]", results)

    async def _drain(self) -> None:
        """Enqueue the backlog in order, sleeping (backed off) while the queue is full.

        The head waits at most ``enqueue_timeout``; then it and everything behind
        it fail with BackpressureError, so no later event of a key overtakes it.
        """
        backlog, producer = self._backlog, self._producer
        deadline = time.monotonic() + self._enqueue_timeout
        delay = 0.001
        try:
            while backlog:
                head = backlog[0]
                try:
                    sent = producer.try_send(head)
                except EventwireError as exc:  # refused for good, closed, or fatal
                    backlog.popleft()
                    _fail(self._core.ledger, head.handle, exc)
                    continue
                if sent:
                    backlog.popleft()
                    deadline = time.monotonic() + self._enqueue_timeout
                    delay = 0.001
                elif time.monotonic() >= deadline:
                    self._fail_backlog(producer.backpressure_error)
                else:
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 0.05)
        finally:
            self._drainer = None

    def _fail_backlog(self, error_for: Callable[[DeliveryHandle], EventwireError]) -> None:
        """Settle every waiting event as not enqueued, failing its future."""
        while self._backlog:
            handle = self._backlog.popleft().handle
            _fail(self._core.ledger, handle, error_for(handle))

    async def flush(self, timeout: float = 30.0) -> None:
        """Wait up to ``timeout`` s for every outstanding event, the backlog included.

        Events waiting for room in the local queue are waited for first (on the
        loop), then librdkafka's queue is flushed in a worker thread.

        Raises:
            DeliveryError: as :meth:`Publisher.flush`; an event still waiting for
                room when the timeout runs out is listed as ``_FLUSH_TIMEOUT`` too
                (it keeps waiting, as a queued one stays queued).
        """
        deadline = time.monotonic() + timeout
        drainer = self._drainer
        if drainer is not None:
            await asyncio.wait({drainer}, timeout=timeout)
        failures: list[DeliveryFailure] = []
        not_kept = 0
        try:
            left = max(0.0, deadline - time.monotonic())
            await asyncio.to_thread(self._core.flush, left)
        except DeliveryError as exc:
            failures.extend(exc.failures)
            not_kept = exc.not_kept  # counted past the bound: still reported
        late = await self._loop_failures(f"flush({timeout:g})", final=False)
        if late is not None:
            failures.extend(late.failures)
            not_kept += late.not_kept
        failures.extend(
            w.handle.failure_from("_FLUSH_TIMEOUT", "still waiting for room in the local queue")
            for w in self._backlog
        )
        if failures or not_kept:
            raise DeliveryError(failures, context=f"flush({timeout:g})", not_kept=not_kept)

    async def close(self, timeout: float | None = None) -> None:
        """Flush for up to ``timeout`` s (default ``close_timeout``), then stop.

        From the moment this begins, :meth:`publish_nowait` raises
        PublisherStateError; the events already waiting in the backlog are still
        enqueued and flushed (bounded by ``timeout``), those left waiting fail
        with PublisherStateError (and, unless their future's exception was
        retrieved, are listed as ``_CLOSED`` in the DeliveryError this raises).
        Then as :meth:`Publisher.close`.
        """
        timeout = self._close_timeout if timeout is None else timeout
        self._core.refuse_publishing()
        deadline = time.monotonic() + timeout
        drainer = self._drainer
        if drainer is not None:
            await asyncio.wait({drainer}, timeout=timeout)
        error: DeliveryError | None = None
        try:
            left = max(0.0, deadline - time.monotonic())
            await asyncio.to_thread(self._core.close, left)
        except DeliveryError as exc:
            error = exc
        finally:
            # Still waiting for room: never enqueued, and now never will be.
            self._fail_backlog(self._producer.refuse_closed)
        late = await self._loop_failures(f"close({timeout:g})", final=True)
        if late is not None:
            failures = [*(error.failures if error else ()), *late.failures]
            not_kept = (error.not_kept if error else 0) + late.not_kept
            error = DeliveryError(failures, context=f"close({timeout:g})", not_kept=not_kept)
        if error is not None:
            raise error

    async def _loop_failures(self, context: str, *, final: bool) -> DeliveryError | None:
        """The unobserved failures of events with a future, decided here on the loop.

        The worker thread's flush leaves them kept (a task awaiting the future, or a
        done-callback on it, may not have run yet). Resolve the futures the bridge
        still holds, let what waits on them run, then take those nobody retrieved
        (``final``: every one; called on another loop: every one, at once).
        """
        ledger = self._core.ledger
        bridge = self._bridge
        if bridge is None or bridge.loop is not asyncio.get_running_loop():
            return ledger.failures_error(False, context, futures="all")
        bridge.drain()
        await asyncio.sleep(0)  # the woken tasks and done-callbacks run first
        return ledger.failures_error(False, context, futures="all" if final else "done")

    aclose = close

    async def __aenter__(self) -> AsyncPublisher:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()
