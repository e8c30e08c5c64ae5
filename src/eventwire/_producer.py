"""The producer: the transport events go through, replaced after a fatal error.

:class:`Producer` sends each :class:`~eventwire._record.Record` through the
current transport, past the ledger's close gate, and waits (bounded) while the
local queue is full. After a fatal librdkafka error (an idempotence sequence
error, or authorization failing for the producer id) every ``produce()`` is
refused and the events the producer holds may never be reported; it then:

* abandons the old transport (its late reports are ignored: see :class:`Resent`);
* makes a new one with :meth:`BaseTransport.recreate` and re-sends every event
  the ledger still holds through it, in publish order, with the same ``ce_id``
  and headers -- *before* installing it, so a publish racing on another thread
  cannot overtake the re-sent events of its key (it waits on the lock instead);
* does this at most ``restarts`` times in any :data:`RESTART_WINDOW_S` seconds.
  Beyond that (or for a transport that cannot be re-created) the publisher goes
  fatal: the in-flight events fail and later publishes raise ProducerFatalError.

An event the old producer had already written is in the log twice after a
re-send: at-least-once, de-duplicated by consumers on ``ce_id``.
"""

from __future__ import annotations

import dataclasses
import functools
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from eventwire._errors import (
    BackpressureError,
    DeliveryError,
    ProducerFatalError,
    PublisherStateError,
)
from eventwire._inflight import InFlight
from eventwire.observability.logging import get_logger
from eventwire.transports.base import (
    BaseTransport,
    SendRejected,
    TransportQueueFull,
    send_within,
)

if TYPE_CHECKING:
    from eventwire._cloudevents import HeaderTemplate
    from eventwire._handle import DeliveryHandle
    from eventwire._record import Record
    from eventwire.transports.base import ReportError, ReportMessage

__all__ = ["RESTART_WINDOW_S", "Producer", "Resent"]

_log = get_logger("eventwire")

#: Producer replacements after fatal errors are counted over this window.
RESTART_WINDOW_S = 600.0
#: flush() asks the transport in slices this long, to notice a replacement.
_FLUSH_SLICE_S = 0.1
#: Report codes that, while a replacement is possible, mean "re-send me".
_HELD_BACK = frozenset({"_PURGE_QUEUE", "_PURGE_INFLIGHT", "_FATAL"})


class Producer:
    """Sends records through a transport it replaces after fatal errors (see module docs).

    Args:
        transport: the first transport.
        ledger: the publisher's in-flight ledger (who owns the unacknowledged events).
        restarts: replacements allowed in any :data:`RESTART_WINDOW_S` (0: none).
        enqueue_timeout: the longest a send waits while the local queue is full.
        template_for: the CloudEvents header template of an event type (for re-sends).
        on_fatal: told once when the publisher goes fatal (no replacement left).
        on_resent: told of the events re-sent through each replacement (metrics).
    """

    def __init__(
        self,
        transport: BaseTransport,
        ledger: InFlight,
        *,
        restarts: int,
        enqueue_timeout: float,
        template_for: Callable[[str], HeaderTemplate],
        on_fatal: Callable[[ProducerFatalError], None],
        on_resent: Callable[[list[DeliveryHandle]], None] | None = None,
    ) -> None:
        self.transport = transport
        self._ledger = ledger
        self._senders = ledger.senders
        self._pending = ledger.pending
        self._budget = _RestartBudget(restarts, RESTART_WINDOW_S)
        #: True if events keep what a re-send needs (a replacement is possible).
        self.keeps_records = restarts > 0
        self._enqueue_timeout = enqueue_timeout
        self._template_for = template_for
        self._on_fatal = on_fatal
        self._on_resent = on_resent
        self.fatal: ProducerFatalError | None = None
        self._lock = threading.RLock()
        self._filling: BaseTransport | None = None  # a replacement being given the re-sends
        self._filling_fatal: tuple[str, str] | None = None
        #: Publishes that reached the replacement while it was being filled (from a
        #: done-callback on the filling thread): sent after the re-sends, in order.
        self._late: deque[DeliveryHandle] = deque()
        #: True once close() gave up waiting for a replacement: whoever installs one
        #: closes it at once, so nothing is sent after close() returned.
        self._closed_early = False
        self._error_listeners: list[Callable[[str, str], None]] = []
        ledger.holds_back = self.holds_back
        ledger.wake = self.wake
        self._attach(transport)

    # -- sending -----------------------------------------------------------------------------
    def try_send(self, record: Record) -> bool:
        """Enqueue once, past the close gate. False if the local queue is full.

        Raises:
            PublisherStateError: ``close()`` has begun; the event was not enqueued.
            DeliveryError: the transport refused the record for good (e.g. too large).
            ProducerFatalError: the producer is in a fatal state.
        """
        ledger, handle = self._ledger, record.handle
        # The close gate, inlined (hot path): see InFlight.gate.
        senders = self._senders
        senders.append(None)
        try:
            if ledger.closed:
                raise self.refuse_closed(handle)
            transport = self.transport
            self._pending[handle] = None  # ledger.add(handle), inlined (hot path)
            try:
                transport.send(record.topic, record.key, record.value, record.headers, handle)
            except TransportQueueFull:
                ledger.discard(handle)
                return False
            except SendRejected as exc:
                self._rejected(transport, exc, handle)
            except Exception:
                # A transport raising something it does not promise (e.g. a header the
                # client library refuses): the event is not in flight, the caller sees why.
                ledger.abandon(handle, handle.failure_from("_INVALID_ARG", "send() raised"))
                raise
            return True
        finally:
            senders.pop()

    def send_blocking(self, record: Record) -> None:
        """Enqueue, waiting up to ``enqueue_timeout`` while the local queue is full.

        Raises:
            BackpressureError: the queue stayed full; the event was not enqueued.
            and the errors of :meth:`try_send`.
        """
        if self.try_send(record):
            return
        handle = record.handle
        try:
            _log.warning(
                "buffer_full",
                event_id=handle.event_id,
                event_type=handle.event_type,
                topic=handle.topic,
                collapse=handle.topic,
            )
            deadline = time.monotonic() + self._enqueue_timeout
            sent = send_within(
                functools.partial(self.try_send, record), self.wait_for_space, deadline
            )
        except BaseException:
            self._interrupted(handle)
            raise
        if not sent:
            raise self.backpressure_error(handle)

    def _interrupted(self, handle: DeliveryHandle) -> None:
        """The wait for queue room raised (Ctrl-C, SystemExit, a transport's bug).

        An event that is neither settled nor in flight was never enqueued and never
        will be: settle it as refused (its span ends, hooks count it) -- the caller
        gets the exception. One in flight is left to its report or close()'s sweep.
        """
        if not handle._done and handle not in self._pending:
            reason = "interrupted while waiting for room in the local queue: NOT enqueued"
            self._ledger.abandon(handle, handle.failure_from("_QUEUE_FULL", reason))

    def wait_for_space(self, timeout: float) -> None:
        """Serve reports for up to ``timeout`` s so the current transport's queue drains."""
        self.transport.wait_for_space(timeout)

    def backpressure_error(self, handle: DeliveryHandle) -> BackpressureError:
        """Settle an event that found the queue full until the deadline; return its error."""
        message = (
            f"event {handle.event_id} ({handle.event_type}) to {handle.topic!r} was NOT "
            f"enqueued: the local producer queue stayed full for {self._enqueue_timeout:g}s "
            "(Kafka is slow or unreachable). Retry it later, publish more slowly, or raise "
            "enqueue_timeout / queue.buffering.max.messages."
        )
        self._ledger.abandon(handle, handle.failure_from("_QUEUE_FULL", message))
        return BackpressureError(message)

    def refuse_closed(self, handle: DeliveryHandle) -> PublisherStateError:
        """Settle an event refused because ``close()`` has begun; return its error."""
        return self._ledger.refuse_closed(handle)

    def _rejected(
        self, transport: BaseTransport, exc: SendRejected, handle: DeliveryHandle
    ) -> None:
        """``transport`` refused ``handle``: re-send it through a replacement, or raise."""
        if exc.fatal and self._resume(transport, exc.code, exc.reason, handle, 0):
            return
        failure = handle.failure_from(exc.code, exc.reason)
        self._ledger.abandon(handle, failure)
        if exc.fatal:
            self.go_fatal(exc.code, exc.reason)
            assert self.fatal is not None
            raise self.fatal from None
        raise DeliveryError([failure]) from None

    # -- the transport's other duties ----------------------------------------------------------
    def flush(self, timeout: float) -> bool:
        """Wait up to ``timeout`` s until every event in the ledger is settled.

        Returns True if some are not (timed out). It follows a replacement made
        meanwhile: a replaced producer's empty queue does not count as done while
        the ledger still holds the events being re-sent.
        """
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            remaining = self.transport.flush(max(0.0, min(left, _FLUSH_SLICE_S)))
            if remaining == 0 and len(self._ledger) == 0:
                return False
            if time.monotonic() >= deadline:
                return True
            if remaining == 0:  # reports still on their way, or a replacement filling
                time.sleep(min(0.005, max(0.0, deadline - time.monotonic())))

    def close(self, timeout: float) -> None:
        """Flush up to ``timeout`` s, drop and report what remains, destroy the transport.

        Call after the ledger's gate is shut. A replacement still re-sending stops
        early (it checks the gate) and installs its producer first, so the producer
        destroyed here is the last one: nothing is sent after this returns.
        """
        acquired = self._lock.acquire(timeout=max(timeout, 1.0))
        try:
            if not acquired:  # a replacement still re-sending: close it too, now
                self._closed_early = True
                filling = self._filling
                if filling is not None:
                    filling.close(0)
            self.transport.close(timeout)
        finally:
            if acquired:
                self._lock.release()

    def wake(self) -> None:
        """Make the current transport serve delivery reports now."""
        self.transport.wake()

    def queue_length(self) -> int | None:
        """Records in the current transport's queue (None if it cannot tell)."""
        return self.transport.queue_length()

    def check_connection(self, timeout: float) -> None:
        """Raise BrokerUnavailableError unless the log answers within ``timeout`` s."""
        self.transport.check_connection(timeout)

    def add_error_listener(self, listener: Callable[[str, str], None]) -> None:
        """Call ``listener(code, reason)`` on each non-fatal client error, of any transport."""
        self._error_listeners.append(listener)
        self.transport.on_error(listener)

    def _attach(self, transport: BaseTransport) -> None:
        if transport.queued_may_be_written:
            self._ledger.queued_may_be_written = True
        transport.on_fatal(functools.partial(self._on_fatal_from, transport))
        for listener in self._error_listeners:
            transport.on_error(listener)

    # -- fatal errors: replace and re-send, or give up -----------------------------------------
    def holds_back(self, code: str) -> bool:
        """True if a failed report with ``code`` must leave its event pending.

        On a fatal error librdkafka purges its queues, reporting ``_PURGE_QUEUE`` /
        ``_PURGE_INFLIGHT`` / ``_FATAL`` for each event -- possibly on another thread
        before the replacement has taken its snapshot. Those events stay pending and
        are re-sent; if no replacement is made after all, the fatal sweep reports them.
        """
        return (
            code in _HELD_BACK
            and self.keeps_records
            and not self._ledger.closed
            and self.fatal is None
        )

    def go_fatal(self, code: str, reason: str) -> None:
        """End sending for good: fail every in-flight event, refuse later publishes."""
        with self._ledger.lock:
            if self.fatal is not None:
                return
            self.fatal = ProducerFatalError(code, reason)
        self._on_fatal(self.fatal)
        # librdkafka may never call back for events in flight at a fatal error; each
        # was handed to it, so each may have been written.
        self._ledger.fail_all(code, reason, possibly_written=True)

    def _on_fatal_from(self, transport: BaseTransport, code: str, reason: str) -> None:
        """``transport`` reported a fatal error: replace it, or go fatal."""
        if transport is not self.transport and transport is not self._filling:
            return  # an already replaced producer: nothing to do
        if not self._replace(transport, code, reason):
            self.go_fatal(code, reason)

    def _resume(
        self, transport: BaseTransport, code: str, reason: str, handle: DeliveryHandle, seen: int
    ) -> bool:
        """A send of ``handle`` found ``transport`` fatal: True if it went out on a new one.

        False: no replacement; ``handle`` is then out of the ledger (the caller raises).
        """
        ledger = self._ledger
        with self._lock:
            if handle._resends > seen or handle._done:
                return True  # another thread's replacement re-sent it with the rest
            ledger.discard(handle)
            transport.surface_fatal()  # the real cause replaces the producer, not "_FATAL"
            self._on_fatal_from(transport, code, reason)  # replaces now, or already did
            if self.fatal is not None or ledger.closed:
                return False
            ledger.add(handle)
            if self._filling is not None:
                # A done-callback publishing during a fill, on the filling thread: it
                # goes out after the events being re-sent, never ahead of its key's.
                self._late.append(handle)
                return True
            current = self.transport
            if self._resend(current, handle):
                return True
            ledger.discard(handle)
            seen = handle._resends
        return self._resume(current, "_FATAL", "replacement is fatal", handle, seen)

    def _replace(self, old: BaseTransport, code: str, reason: str) -> bool:
        with self._lock:
            if old is self._filling:  # it failed while being filled, on this thread
                self._filling_fatal = (code, reason)
                return True  # handled once it is installed (below)
            if self._filling is not None:
                return True  # a fill of its replacement runs on this thread (re-entered)
            if self.transport is not old:
                return True  # another thread replaced it already
            new = self._new_transport(old, code)
            if new is None:
                return False
            old.abandon()  # returns at once; the old producer is closed in the background
            self._attach(new)
            resent = self._fill(new)
            self.transport = new
            if self._closed_early:  # close() gave up waiting for this fill
                new.close(0)
            _log.warning(
                "producer_replaced",
                code=code,
                reason=reason,
                resent=len(resent),
                restarts_left=self._budget.left(),
            )
            if self._on_resent is not None and resent:
                self._on_resent(resent)
            if self._filling_fatal is not None:  # the new producer is already fatal too
                self._on_fatal_from(new, *self._filling_fatal)
            return True

    def _fill(self, new: BaseTransport) -> list[DeliveryHandle]:
        """Re-send every event the ledger holds through ``new``, in publish order.

        Stops once ``close()`` has begun (the rest are reported by that close). Once
        an event of a (topic, key) fails instead of going out, the later events of
        that key fail too, so none overtakes it.
        """
        self._filling, self._filling_fatal = new, None
        resent: list[DeliveryHandle] = []
        stopped: set[tuple[str, bytes]] = set()
        try:
            for handle in self._refill_order():
                if self._ledger.closed:
                    break
                group = (handle.topic, handle._key or b"")  # None and b"" share one order
                if group in stopped:
                    self._fail_resend(handle, "_QUEUE_FULL", "an earlier event of its key failed")
                    continue
                if not self._resend(new, handle):
                    self._filling_fatal = self._filling_fatal or ("_FATAL", "on re-send")
                    break  # the rest go to the next replacement
                if handle._failure is not None:
                    stopped.add(group)
                else:
                    resent.append(handle)
        finally:
            self._filling = None
        return resent

    def _refill_order(self) -> Iterator[DeliveryHandle]:
        """The ledger's events in publish order, then those published during the fill."""
        self._late.clear()  # left by an earlier fill that stopped: in the snapshot now
        yield from self._ledger.snapshot()
        late = self._late
        while late:
            yield late.popleft()

    def _fail_resend(self, handle: DeliveryHandle, code: str, reason: str) -> None:
        """Fail an event that was in flight on a replaced producer (so maybe written)."""
        failure = handle.failure_from(code, reason)
        self._ledger.settle(handle, None, dataclasses.replace(failure, possibly_written=True))

    def _new_transport(self, old: BaseTransport, code: str) -> BaseTransport | None:
        """A replacement transport, or None (closed, fatal, budget spent, not possible)."""
        if self._ledger.closed or self.fatal is not None or not self.keeps_records:
            return None
        if not self._budget.take():
            _log.error(
                "producer_restart_budget_spent",
                code=code,
                restarts=self._budget.limit,
                window_s=RESTART_WINDOW_S,
            )
            return None
        try:
            new = old.recreate()
        except Exception as exc:
            _log.error("producer_restart_failed", code=code, error=repr(exc))
            return None
        if new is None:
            _log.error("producer_restart_failed", code=code, error="transport cannot be re-created")
        return new

    def _resend(self, transport: BaseTransport, handle: DeliveryHandle) -> bool:
        """Send the pending ``handle`` again, through ``transport``.

        True if it is on its way, or settled (refused, or the queue stayed full);
        False if ``transport`` is fatal too: the handle stays pending.
        """
        value = handle._value
        if handle._done:
            return True
        if value is None:  # not kept (sent before a replacement was possible)
            self._fail_resend(handle, "_FATAL", "not kept for a re-send")
            return True
        key = handle._key
        headers = self._template_for(handle.event_type).build(
            handle.event_id, handle.sent_at_ns // 1_000_000, handle._extra
        )
        callback = Resent(handle)
        fatal = False

        def send() -> bool:
            nonlocal fatal
            try:
                transport.send(handle.topic, key, value, headers, callback)
            except TransportQueueFull:
                return False
            except SendRejected as exc:
                if exc.fatal:
                    fatal = True
                else:
                    self._fail_resend(handle, exc.code, exc.reason)
            except Exception as exc:  # never let one event stop the replacement
                self._fail_resend(handle, "_INVALID_ARG", f"re-send raised {exc!r}")
            return True

        deadline = time.monotonic() + self._enqueue_timeout
        if not send_within(send, transport.wait_for_space, deadline):
            self._fail_resend(handle, "_QUEUE_FULL", "the queue stayed full for the re-send")
        return not fatal


class Resent:
    """The delivery callback of an event re-sent through a replacement producer.

    Only the latest re-send's report counts; one from an earlier producer (which
    may still arrive) is ignored, so the handle settles from the producer that
    really owns the event.
    """

    __slots__ = ("_handle", "_n")

    def __init__(self, handle: DeliveryHandle) -> None:
        handle._resends += 1
        self._handle = handle
        self._n = handle._resends

    def __call__(self, err: ReportError | None, msg: ReportMessage) -> None:
        handle = self._handle
        if handle._resends == self._n:
            handle._report(err, msg)


class _RestartBudget:
    """At most ``limit`` producer replacements in any ``window_s`` seconds."""

    def __init__(self, limit: int, window_s: float) -> None:
        self.limit = limit
        self._window_s = window_s
        self._times: deque[float] = deque()

    def _expire(self) -> None:
        horizon = time.monotonic() - self._window_s
        while self._times and self._times[0] < horizon:
            self._times.popleft()

    def take(self) -> bool:
        """Use one replacement if any is left in the window."""
        self._expire()
        if len(self._times) >= self.limit:
            return False
        self._times.append(time.monotonic())
        return True

    def left(self) -> int:
        """Replacements still allowed in the current window."""
        self._expire()
        return self.limit - len(self._times)
