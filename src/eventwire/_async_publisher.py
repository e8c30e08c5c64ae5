"""The asyncio publisher: the same core, bridged to an event loop."""

from __future__ import annotations

import asyncio
import copy
import dataclasses
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any, Unpack, cast

from eventwire._cloudevents import batch_events
from eventwire._core import PublisherCore
from eventwire._errors import DeliveryError, DeliveryFailure, EventwireError, PublisherStateError
from eventwire._facade import Facade, closed_after_error
from eventwire._handle import DeliveryHandle, DeliveryResult, InternalCallback
from eventwire._inflight import InFlight
from eventwire._loop_bridge import LoopBridge
from eventwire._options import PublisherOptions, check_relay_options, resolve_options
from eventwire._record import Record
from eventwire._timeouts import seconds
from eventwire._worker_close import WorkerClosing
from eventwire.outbox.async_sink import AsyncOutboxSink
from eventwire.outbox.base import OutboxStore
from eventwire.outbox.relay import RelayFailingError

if TYPE_CHECKING:
    from eventwire.observability.tracing import BatchSpan

__all__ = ["AsyncPublisher"]


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
          future at once. A report served on the loop's thread (``publish_nowait``
          serves ready ones) resolves its future there; the poll thread's reach the
          loop through one thread-safe wake-up per burst, never by blocking it.
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

    Outbox mode (``outbox=``, ``relay=``, ``relay_options=`` as for
    :class:`Publisher`, the same stores): ``await publish(e)`` commits the event
    to the store first (awaited: psycopg's AsyncConnection for PostgreSQL, a
    worker thread for SQLite), then resolves when the relay's ack comes, as
    ``Publisher.publish(e).result()`` does; a failed commit raises
    :class:`OutboxWriteError`. ``await stage(e, connection=...)`` writes it in
    your own async transaction. The relay, table and flush/close rules are the
    sync outbox's: see :mod:`eventwire.outbox.async_sink` and
    :mod:`eventwire.outbox.sink`. The broker connection check
    (``connect_timeout``) runs in a worker thread on ``async with`` (or
    :meth:`start`), not in the constructor (none in outbox mode). With
    ``circuit_breaker``, the half-open probe (a Metadata request, up to 5 s) runs
    inside the ``publish_nowait()``/``publish()`` call that triggers it, on the
    event loop.
    """

    def __init__(
        self,
        bootstrap_servers: str | Sequence[str] | None = None,
        *,
        outbox: OutboxStore | None = None,
        relay: bool = True,
        relay_options: Mapping[str, Any] | None = None,
        **options: Unpack[PublisherOptions],
    ) -> None:
        check_relay_options(outbox, relay_options)
        resolved = resolve_options(bootstrap_servers, options)
        self._close_timeout = resolved.close_timeout
        self._bridge: LoopBridge | None = None
        #: The first close()'s work, which every close() awaits (see close()).
        self._close_task: asyncio.Task[None] | None = None
        #: Its outcome was raised (or returned) to a caller: later calls need not.
        self._close_told = False
        #: Set when that task is done: a close() on another loop waits on it in a thread.
        self._close_ended = threading.Event()
        #: The outbox mode's commits, relay and tracking (None: direct to Kafka).
        self._outbox: AsyncOutboxSink | None = None
        if outbox is not None:
            self._core = PublisherCore(resolved, direct=False)
            self._outbox = AsyncOutboxSink(
                self._core, outbox, start_relay=relay, relay_options=relay_options
            )
            # flush()/close() take the failures with a future on the loop (_loop_failures).
            self._core.ledger.defer_futures = True
            self._connect_timeout: float | None = None
            return
        # The broker check runs in start() (a worker thread), not here on the loop.
        self._core = PublisherCore(dataclasses.replace(resolved, connect_timeout=None))
        producer = self._core.producer
        assert producer is not None
        self._producer = producer
        #: A :meth:`_serve_now` is scheduled on the loop (one per burst of sends).
        self._serve_scheduled = False
        self._core.use_breaker(resolved.circuit_breaker)
        # flush()/close() take the failures with a future on the loop (_loop_failures).
        self._core.ledger.defer_futures = True
        self._connect_timeout = resolved.connect_timeout
        self._enqueue_timeout = resolved.enqueue_timeout
        #: Events waiting for room in the local queue, in publish order (in flight
        #: too, though not in the ledger until sent).
        self._backlog: deque[Record] = deque()
        self._drainer: asyncio.Task[None] | None = None
        self._core.held_elsewhere = self._backlog.__len__
        #: The core's closing in a worker thread, which outlives a cancelled close task.
        self._closing = WorkerClosing(self._core, self._core.close, self._core.finish_close)
        metrics = self._core.metrics
        if metrics is not None:
            ledger, backlog = self._core.ledger, self._backlog
            metrics.count_in_flight(lambda: len(ledger) + len(backlog))

    @property
    def in_flight(self) -> int:
        """Events published and not yet acknowledged or failed.

        With an outbox: those waiting for their commit, and those committed whose
        handles are still tracked (see :attr:`Publisher.in_flight`).
        """
        if self._outbox is not None:
            return self._outbox.in_flight
        return self._core.in_flight + len(self._backlog)  # queued, or waiting for room

    async def start(self) -> None:
        """Bind to the running loop and run the broker connection check in a thread.

        If the check fails, or ``start()`` is cancelled or interrupted meanwhile (an
        ``asyncio.timeout`` around ``async with``, a TaskGroup sibling's failure,
        Ctrl-C), the publisher is closed (at once, ``timeout=0``) before the error is
        raised: no producer is left running behind an ``async with`` that never began.
        """
        self._bind()
        if self._connect_timeout is not None:
            try:
                await asyncio.to_thread(self._producer.check_connection, self._connect_timeout)
            except BaseException as exc:
                await self._close_unstarted(exc)
                raise

    async def _close_unstarted(self, error: BaseException) -> None:
        """start() failed with ``error``: close now (timeout 0), shielded from cancellation.

        The closing is the one every later close() waits for (and takes the outcome of).
        An event published before start() that this fails is not dropped: its failure is
        logged (``close_failed_after_error``) and noted on ``error``.
        """
        self._core.refuse_publishing()
        await self._closing.wait(0)  # (a second cancellation leaves it running)
        outcome = self._closing.take()
        if isinstance(outcome, EventwireError):
            closed_after_error(error, outcome)

    def _bind(self) -> LoopBridge:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            raise PublisherStateError(
                "AsyncPublisher.publish_nowait()/publish() run on an event loop, and none "
                "runs in this thread: from another thread use "
                "asyncio.run_coroutine_threadsafe(publisher.publish(event), loop), or a "
                "Publisher"
            ) from None
        bridge = self._bridge
        if bridge is None:
            bridge = self._bridge = LoopBridge(loop)
            self._core.ledger.on_settle(bridge.push)
        elif bridge.loop is not loop:
            raise PublisherStateError(
                "this AsyncPublisher is bound to another event loop; create one per loop"
            )
        else:
            bridge.thread = threading.get_ident()  # the same loop, now run on this thread
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
        if bridge is None or not bridge.on_loop():
            bridge = self._bind()
        return self._enqueue(core.prepare(event, event_id, headers), bridge)

    def _enqueue(self, record: Record, bridge: LoopBridge) -> asyncio.Future[DeliveryResult]:
        """Hand a prepared record to the outbox or the producer; its future resolves at the ack.

        Raises as :meth:`publish_nowait` does once the record is prepared (its handle is
        then settled: nothing is left in flight).
        """
        fut: asyncio.Future[DeliveryResult] = bridge.loop.create_future()
        record.handle._afut = fut
        outbox = self._outbox
        if outbox is not None:
            # Also at close, where handles settle as _IN_OUTBOX without a ledger report.
            record.handle.add_done_callback(InternalCallback(bridge.push))
            outbox.submit(record, bridge.loop)
            return fut
        if self._backlog or not self._producer.try_send(record):
            self._wait_for_room(record, bridge.loop)
        if not self._serve_scheduled:
            self._serve_scheduled = True
            bridge.loop.call_soon(self._serve_now)
        return fut

    def _serve_now(self) -> None:
        """The publishing task yielded to the loop: have reports served as they come.

        While sends keep coming, the poll thread polls only every few milliseconds
        (``send()`` serves ready reports inline, and a busier poll thread would fight
        the loop for the GIL). Once the loop has nothing more to send, a waiting
        ``await`` must not sit out that backoff: this wakes the poll thread, once
        per burst of ``publish_nowait`` calls.
        """
        self._serve_scheduled = False
        self._producer.wake()

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

        With an outbox the event is committed to it first (durable from then on,
        even if this await is cancelled), then the relay's ack resolves it.

        Raises:
            DeliveryError: the event was not delivered (``.failures[0]`` says why).
            BackpressureError: the local queue stayed full for ``enqueue_timeout``.
            OutboxWriteError: (outbox) the commit failed, or its outcome is unknown
                (``possibly_written``); re-send with the same ``event_id``.
            and the errors of :meth:`publish_nowait`.
        """
        return await self.publish_nowait(event, event_id=event_id, headers=headers)

    async def publish_many(self, events: Iterable[Any]) -> list[DeliveryResult | EventwireError]:
        """Publish every event; return, in order, each one's result or its error.

        One invalid or failed event never cancels the others. ``events`` is read
        whole first: an iterable that raises part-way raises with nothing published.

        Raises:
            ConfigurationError: ``events`` is not an iterable of events (a single
                event goes to :meth:`publish`).
        """
        batch = batch_events(events, self._core.is_event)
        loop = asyncio.get_running_loop()
        slots, bridge = self._prepare_batch(batch)
        prepared = [slot for slot in slots if isinstance(slot, Record)]
        tracker = self._core.trace_batch(prepared) if prepared else None
        futures: list[asyncio.Future[DeliveryResult]] = []
        try:
            for slot in slots:
                if not isinstance(slot, Record):
                    futures.append(_failed_future(loop, slot))
                    continue
                assert bridge is not None
                try:
                    futures.append(self._enqueue(slot, bridge))
                except EventwireError as exc:
                    futures.append(_failed_future(loop, exc))
                    _count_off(tracker, [slot])  # refused: settled, or never will be
        except BaseException:
            # An error no event owns (a transport's bug, a cancellation): the batch span
            # still ends. This event and those after it never went out (or settled).
            _count_off(tracker, [s for s in slots[len(futures) :] if isinstance(s, Record)])
            raise
        results = await asyncio.gather(*futures, return_exceptions=True)
        return cast("list[DeliveryResult | EventwireError]", results)

    def _prepare_batch(
        self, batch: list[Any]
    ) -> tuple[list[Record | EventwireError], LoopBridge | None]:
        """Each event's record, or its error (an invalid event fails alone), and the bridge.

        Every event is prepared before any is sent, so that one ``send`` span covers
        the batch, as with Publisher.publish_many. A publisher bound to another loop
        prepares nothing: each event gets that error.
        """
        core = self._core
        if not batch:
            return [], None  # (binds nothing to this loop)
        try:
            bridge = self._bridge
            if bridge is None or not bridge.on_loop():
                bridge = self._bind()
        except EventwireError as exc:
            return [exc, *(copy.copy(exc) for _ in batch[1:])], None  # one error each
        slots: list[Record | EventwireError] = []
        for event in batch:
            try:
                if core.unusable:
                    core.check_usable()
                slots.append(core.prepare(event, None, None, traced=False))
            except EventwireError as exc:
                slots.append(exc)
        return slots, bridge

    async def stage(
        self,
        event: Any,
        *,
        connection: Any,
        event_id: str | None = None,
        headers: Sequence[tuple[str, bytes]] | None = None,
    ) -> str:
        """Add ``event`` to the outbox inside *your* open transaction; return its ce_id.

        ``connection`` is the asyncio connection of your domain write: a psycopg
        ``AsyncConnection`` or an asyncpg ``Connection`` (PostgresOutbox, the same
        database), an aiosqlite ``Connection`` (SQLiteOutbox, the same file), or an
        SQLAlchemy ``AsyncSession`` / ``AsyncConnection`` on one of them. The event
        is sent if and only if you commit that transaction; nothing is awaited from
        the broker.

        Raises:
            PublisherStateError: the publisher has no outbox, or is closed.
            ConfigurationError: ``connection`` is not one of those, or not of the
                outbox's database (another file; another PostgreSQL database, server
                or schema); nothing was written.
            EventIdConflictError: the ``event_id`` has an unsent row of another
                event; roll your transaction back.
            RoutingError, SerializationError: as :meth:`publish`, before anything is written.
            Exception: your driver's own errors, unchanged (the transaction is yours).
        """
        outbox = self._outbox
        if outbox is None:
            raise PublisherStateError(
                "stage() needs an outbox: create the publisher with outbox=SQLiteOutbox(...) "
                "or PostgresOutbox(...)"
            )
        self._core.check_usable()
        record = self._core.prepare(event, event_id, headers, traced=False)
        return await outbox.stage(record, connection)

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
                except Exception as exc:  # refused for good, closed, fatal, or unexpected
                    # (a transport raising what it does not promise: as publish_nowait()
                    # would have raised it, the future gets it; the drain goes on)
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
        timeout = seconds(timeout, "flush(timeout)")
        if self._outbox is not None:
            await self._outbox_ending(self._outbox.flush, timeout, final=False)
            return
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

        The closing runs in a task of its own, and its blocking part in a worker
        thread, which a cancelled ``close()`` (a timed-out ``wait_for``, a cancelled
        task, asyncio.run's cancel-all after a second Ctrl-C) does not stop. A
        ``close()`` made while it runs, or after it was cancelled, on this event loop
        or another, waits for that first closing (up to its own ``timeout``) and
        raises its outcome (a SIGTERM handler's close and ``async with``'s exit both
        see the events' fate); once that outcome was raised to someone, a later
        ``close()`` only reports failures settled since. If the first closing is
        still running when a later ``close()``'s ``timeout`` runs out, that
        ``close()`` returns and the next one raises the outcome. A closing cut short
        by an exception (a KeyboardInterrupt or SystemExit out of the transport) is
        finished by the next ``close()``, as for :meth:`Publisher.close`.
        """
        timeout = self._close_timeout if timeout is None else seconds(timeout, "close(timeout)")
        deadline = time.monotonic() + timeout
        task = self._close_task
        if task is None:
            self._core.refuse_publishing()
            task = self._close_task = asyncio.ensure_future(self._close(timeout))
            task.add_done_callback(lambda _: self._close_ended.set())
        elif task.done() or task.get_loop() is not asyncio.get_running_loop():
            waited = not task.done()
            if waited:  # the first close runs on another loop: wait for it (bounded)
                await self._wait_close_ended(timeout)
            # begun while it ran: its outcome is this call's too, as for shield's awaiters
            if task.done() and not task.cancelled() and (waited or not self._close_told):
                self._close_told = True
                error = task.exception()
                if isinstance(error, EventwireError):  # (an interrupt was raised already)
                    raise error
            # closed already: only what settled since; or the closing was cancelled (its
            # worker thread may still run: wait for it) or cut short (finish it)
            await self._close(timeout, deadline)
            return
        try:
            await asyncio.shield(task)
        finally:
            if task.done() and not task.cancelled():
                self._close_told = True

    async def _wait_close_ended(self, timeout: float) -> None:
        """Sleep-poll until the first close (on another loop) ended, or ``timeout``.

        Not a thread blocked on the event: a cancelled close() must stop waiting, and
        asyncio.run() must not wait for a worker thread at its end.
        """
        deadline = time.monotonic() + timeout
        while not self._close_ended.is_set() and time.monotonic() < deadline:
            await asyncio.sleep(0.01)

    async def _close(self, timeout: float, deadline: float | None = None) -> None:
        """close()'s work, bounded by ``deadline`` (default: ``timeout`` from now).

        Run again, it waits for the closing begun (or finishes one cut short), then
        reports what is left.
        """
        self._core.refuse_publishing()
        if deadline is None:
            deadline = time.monotonic() + timeout
        if self._outbox is not None:
            outbox, left = self._outbox, max(0.0, deadline - time.monotonic())
            await self._outbox_ending(lambda _: outbox.close(left), timeout, final=True)
            return
        drainer = self._drainer
        if drainer is not None:
            await asyncio.wait({drainer}, timeout=max(0.0, deadline - time.monotonic()))
        error: DeliveryError | None = None
        try:
            ended = await self._closing.wait(max(0.0, deadline - time.monotonic()))
        finally:
            # Still waiting for room: never enqueued, and now never will be.
            self._fail_backlog(self._producer.refuse_closed)
        late = await self._loop_failures(f"close({timeout:g})", final=True)
        outcome = self._closing.take() if ended else None  # (no await from here on)
        if isinstance(outcome, DeliveryError):
            error = outcome
        elif outcome is not None:
            raise outcome  # (an interrupt out of the transport: the next close() finishes)
        if late is not None:
            failures = [*(error.failures if error else ()), *late.failures]
            not_kept = (error.not_kept if error else 0) + late.not_kept
            error = DeliveryError(failures, context=f"close({timeout:g})", not_kept=not_kept)
        if error is not None:
            raise error

    async def _outbox_ending(
        self, ending: Callable[[float], Awaitable[None]], timeout: float, *, final: bool
    ) -> None:
        """Outbox flush()/close(), then the failures with a future, decided on the loop.

        Their worker thread leaves those kept (as without an outbox): an awaiting
        task woken by the relay's report may not have run yet when it takes them.
        """
        name = "close" if final else "flush"
        error: DeliveryError | None = None
        relay_error: RelayFailingError | None = None
        try:
            await ending(timeout)
        except DeliveryError as exc:
            error = exc
        except RelayFailingError as exc:
            relay_error = exc
        context = f"{name}({timeout:g}) with outbox"
        late = await self._loop_failures(context, final=final)
        if late is not None:
            if relay_error is not None:
                context += f"; the relay is failing too: {relay_error.reason}"
            error = DeliveryError(
                [*(error.failures if error else ()), *late.failures],
                context=context,
                not_kept=(error.not_kept if error else 0) + late.not_kept,
            )
        if error is not None:
            raise error
        if relay_error is not None:
            raise relay_error

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
        try:
            await self.close()
        except EventwireError as close_error:
            if exc is None:
                raise
            closed_after_error(exc, close_error)  # the body's exception (or cancellation) goes on


def _failed_future(loop: asyncio.AbstractEventLoop, error: BaseException) -> asyncio.Future[Any]:
    """A future that already failed with ``error``."""
    future: asyncio.Future[Any] = loop.create_future()
    future.set_exception(error)
    return future


def _count_off(tracker: BatchSpan | None, records: list[Record]) -> None:
    """Tell a batch span of its records that will never settle (none left unsettled)."""
    if tracker is not None:
        tracker.unsent(sum(1 for record in records if not record.handle._done))
