"""Delivery handles: the per-event promise that :meth:`Publisher.publish` returns.

A handle is settled exactly once, through the publisher's in-flight ledger
(:class:`~eventwire._inflight.InFlight`): by the transport's delivery report, by a
fatal-error sweep, or by ``close()``. It is deliberately lighter than
``concurrent.futures.Future``: no lock or condition is created per event; a
waiter is made only when someone blocks on an unsettled handle.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

import msgspec

from eventwire._errors import DeliveryError, DeliveryFailure
from eventwire._policy import classify, is_possibly_written, meaning
from eventwire._timeouts import seconds
from eventwire.observability.logging import get_logger

if TYPE_CHECKING:
    import asyncio

    from eventwire.transports.base import ReportError, ReportMessage

#: Ends an event's span with its outcome (set by tracing for recording spans only).
SpanEnd = Callable[["ReportMessage | None", "DeliveryFailure | None"], None]


class Settler(Protocol):
    """The in-flight ledger, as a handle sees it."""

    lock: threading.Lock
    #: The unsettled events (a delivery removes its handle itself: see ``__call__``).
    pending: dict[DeliveryHandle, None]
    #: The settle hooks; when any, a delivery calls :meth:`run_hooks`.
    hooks: list[Callable[[DeliveryHandle, DeliveryFailure | None], None]]

    def run_hooks(self, handle: DeliveryHandle, failure: DeliveryFailure | None) -> None:
        """Tell the settle hooks of ``handle`` (after it left ``pending``)."""
        ...

    def wake(self) -> None:
        """Ask the transport to serve delivery reports promptly (a caller is blocked)."""
        ...

    def holds_back(self, code: str) -> bool:
        """True if a failed report with ``code`` must leave the event pending."""
        ...

    def settle(
        self, handle: DeliveryHandle, msg: ReportMessage | None, failure: DeliveryFailure | None
    ) -> None:
        """Book-keep a delivery report for ``handle`` (settles it)."""
        ...


__all__ = ["DeliveryHandle", "DeliveryResult", "InternalCallback"]

_log = get_logger("eventwire")


class InternalCallback:
    """A done-callback of eventwire's own bookkeeping (e.g. resolving an asyncio future).

    Unlike the application's callbacks, running it does not count as the application
    observing a failure (:meth:`DeliveryHandle.observed`).
    """

    __slots__ = ("fn",)

    def __init__(self, fn: Callable[[DeliveryHandle], Any]) -> None:
        self.fn = fn

    def __call__(self, handle: DeliveryHandle) -> None:
        self.fn(handle)


class DeliveryResult(msgspec.Struct, frozen=True, gc=False):
    """Where Kafka stored an event: returned once the broker acknowledged it.

    Immutable; compares and hashes by value; ``msgspec.json.encode`` serializes it.
    (Text and numbers only, so never in a reference cycle: not tracked by the
    garbage collector, one object less for it per event.)
    """

    event_id: str
    event_type: str
    topic: str
    #: -1 if unknown: an outbox row that another process's relay shipped.
    partition: int
    #: -1 if unknown: Kafka gives no offset with ``acks=0``, and an outbox row another
    #: process's relay shipped has none either (that relay saw it).
    offset: int
    #: Record timestamp in Unix milliseconds.
    timestamp_ms: int

    @property
    def timestamp(self) -> dt.datetime:
        """The record timestamp as an aware UTC datetime."""
        return dt.datetime.fromtimestamp(self.timestamp_ms / 1000, tz=dt.UTC)


class DeliveryHandle(msgspec.Struct, eq=False, weakref=True):
    """The outcome of one published event, available once the broker answers.

    ``result(timeout)`` returns a :class:`DeliveryResult` or raises
    :class:`DeliveryError`; ``add_done_callback(fn)`` calls ``fn(handle)`` once
    settled (at once if it already is), on the thread that settles it. Either, or
    reading ``failed()``/``failure``, counts as observing a failure, which
    ``flush()``/``close()`` then do not raise again (see :meth:`observed`).

    That is whichever thread serves the report: often the caller's own thread,
    inside a later ``publish()`` (``KafkaTransport.send`` serves ready reports),
    otherwise the ``eventwire-poll`` thread or the thread in ``flush()``/``close()``
    (with an outbox: the relay thread, or the one in ``close()``). Keep callbacks
    short, and never take a lock in one that is held around ``publish()``. A
    callback may publish; ``flush()``/``close()`` raise PublisherStateError in one
    on Kafka (librdkafka cannot be re-entered from its callbacks).
    """

    # A msgspec Struct rather than a class with ``__slots__`` and an ``__init__``: the
    # handle is made once per event, and msgspec builds it (defaults included) in C,
    # about 400 ns less per event than eighteen Python attribute stores. ``eq=False``
    # keeps identity equality and hashing (handles are keys of the pending set);
    # ``weakref=True``: the outbox mode tracks handles weakly. Only the five
    # positional fields are meant to be passed.
    _ledger: Settler
    event_id: str
    event_type: str
    topic: str
    sent_at_ns: int
    _done: bool = False
    _msg: ReportMessage | None = None
    _failure: DeliveryFailure | None = None
    #: True once the application was told of a failure (see :meth:`observed`).
    _seen: bool = False
    _waiter: threading.Event | None = None
    _callbacks: list[Callable[[DeliveryHandle], Any]] | None = None
    _afut: asyncio.Future[DeliveryResult] | None = None
    #: Key, value and extra (non-CloudEvents) headers, kept while in flight so the
    #: event can be re-sent through a new producer after a fatal error. Three
    #: fields rather than one tuple: one allocation (and one object for the
    #: garbage collector to track) less per event. The value is dropped when
    #: settled; ``_value is None`` on a pending handle means "not kept".
    _key: bytes | None = None
    _value: bytes | None = None
    _extra: tuple[tuple[str, bytes], ...] | None = None
    #: How often the event was re-sent through a replacement producer; reports
    #: from the producers it was sent through before are then ignored.
    _resends: int = 0
    #: Ends the event's recording span when the handle settles (tracing only).
    _on_end: SpanEnd | None = None

    def __call__(self, err: ReportError | None, msg: ReportMessage) -> None:
        """The transport's delivery callback for this event (one object, no closure)."""
        if self._resends:
            return  # from a producer replaced after a fatal error; the re-send reports
        if err is None:
            # A delivery, the common case: the ledger's settle() and _settle(), inlined
            # (one Python call per event instead of three), in their order: the
            # handle's state, then its span, waiter and callbacks, then out of the
            # ledger, then the settle hooks.
            with self._ledger.lock:
                if self._done:
                    return
                self._msg, self._done, self._value = msg, True, None
                waiter, callbacks = self._waiter, self._callbacks
            if waiter is not None or callbacks or self._on_end is not None:
                self._wake(msg, None, waiter, callbacks)
            ledger = self._ledger
            ledger.pending.pop(self, None)
            if ledger.hooks:
                ledger.run_hooks(self, None)
            return
        # (the rest of _report, inlined)
        code = err.name()
        if self._ledger.holds_back(code):
            return  # a fatal error's purge: the producer's replacement re-sends it
        self._ledger.settle(self, msg, self.failure_from(code, err.str()))

    def _report(self, err: ReportError | None, msg: ReportMessage) -> None:
        if err is None:
            self._ledger.settle(self, msg, None)
            return
        code = err.name()
        if self._ledger.holds_back(code):
            return
        self._ledger.settle(self, msg, self.failure_from(code, err.str()))

    def failure_from(self, code: str, reason: str) -> DeliveryFailure:
        """Build this event's DeliveryFailure for Kafka error ``code``.

        An event re-sent through a replacement producer is always ``possibly_written``:
        a producer it went through before may have written it.
        """
        return DeliveryFailure(
            self.event_id,
            self.event_type,
            self.topic,
            code,
            meaning(code, reason),
            classify(code),
            self._resends > 0 or is_possibly_written(code),
        )

    def done(self) -> bool:
        """True once the event is acknowledged or has definitely failed."""
        return self._done

    def failed(self) -> bool:
        """True if settled with a failure (which then counts as observed)."""
        if self._failure is None:
            return False
        self._seen = True
        return True

    @property
    def failure(self) -> DeliveryFailure | None:
        """The failure, if the event failed; None while pending or when delivered.

        A failure read here counts as observed: ``flush()``/``close()`` do not raise
        it again.
        """
        failure = self._failure
        if failure is not None:
            self._seen = True
        return failure

    def observed(self) -> bool:
        """True if the application was told this event failed.

        That is: ``result()`` raised, ``failed()`` returned True or ``failure``
        returned it, a done-callback ran, or (AsyncPublisher) its awaited future
        raised or had its exception retrieved. ``flush()``/``close()`` report only
        the failures not observed: each failure reaches the application once.
        """
        if self._seen:
            return True
        fut = self._afut
        # asyncio's own "was the exception retrieved" flag: cleared by an await,
        # result() or exception() (what asyncio's "never retrieved" warning reads).
        # A cancelled future (its awaiter timed out or was cancelled) told nobody.
        return (
            fut is not None
            and fut.done()
            and not fut.cancelled()
            and not getattr(fut, "_log_traceback", True)
        )

    def _mark_observed(self) -> None:
        """Reported by flush()/close(): also keep asyncio from reporting it again."""
        self._seen = True
        fut = self._afut
        if fut is not None and fut.done() and not fut.cancelled():
            fut.exception()  # marks it retrieved (a done future: no loop involved)

    def result(self, timeout: float | None = None) -> DeliveryResult:
        """Wait up to ``timeout`` seconds (forever if None) and return the result.

        Raises:
            DeliveryError: the event was not delivered; ``.failures[0]`` says why.
            TimeoutError: no answer from the broker within ``timeout``; the event is
                still in flight and will be reported by ``flush()``/``close()``.
        """
        if not self._done:
            with self._ledger.lock:
                if not self._done and self._waiter is None:
                    self._waiter = threading.Event()
            waiter = self._waiter
            if waiter is not None:
                self._ledger.wake()
            if timeout is not None:
                timeout = seconds(timeout, "result(timeout)")
            if waiter is not None and not waiter.wait(timeout):
                raise TimeoutError(
                    f"event {self.event_id} ({self.event_type}) to {self.topic!r} was not "
                    f"acknowledged within {timeout}s; it is still in flight"
                )
        if self._failure is not None:
            self._seen = True
            raise DeliveryError([self._failure])
        return self._result()

    def _result(self) -> DeliveryResult:
        msg = self._msg
        assert msg is not None
        partition, offset = msg.partition(), msg.offset()
        return DeliveryResult(
            self.event_id,
            self.event_type,
            self.topic,
            -1 if partition is None else partition,
            -1 if offset is None else offset,  # none with acks=0
            msg.timestamp()[1],
        )

    def add_done_callback(self, fn: Callable[[DeliveryHandle], Any]) -> None:
        """Call ``fn(self)`` once settled (immediately, here, if already settled)."""
        with self._ledger.lock:
            if not self._done:
                if self._callbacks is None:
                    self._callbacks = []
                self._callbacks.append(fn)
                return
        if type(fn) is not InternalCallback:
            self._seen = True
        _run_callback(fn, self)

    def _settle(self, msg: ReportMessage | None, failure: DeliveryFailure | None) -> bool:
        """Settle once; return False if already settled. Called by the in-flight ledger.

        The event's span (if recording) ends here, before any waiter wakes, so a
        span is complete by the time ``result()`` returns.
        """
        with self._ledger.lock:
            if self._done:
                return False
            self._msg, self._failure, self._done = msg, failure, True
            self._value = None
            waiter, callbacks = self._waiter, self._callbacks
        self._wake(msg, failure, waiter, callbacks)
        return True

    def _wake(
        self,
        msg: ReportMessage | None,
        failure: DeliveryFailure | None,
        waiter: threading.Event | None,
        callbacks: list[Callable[[DeliveryHandle], Any]] | None,
    ) -> None:
        """Once settled: end the span, wake the waiter, run the done-callbacks."""
        on_end = self._on_end
        if on_end is not None:
            try:
                on_end(msg, failure)
            except Exception:  # a span processor's error must not keep waiters asleep
                _log.exception("span_end_failed", event_id=self.event_id, topic=self.topic)
        if waiter is not None:
            waiter.set()
        if callbacks:
            if any(type(fn) is not InternalCallback for fn in callbacks):
                self._seen = True  # the application is told through its callbacks
            for fn in callbacks:
                _run_callback(fn, self)

    def __repr__(self) -> str:
        return f"<DeliveryHandle {self.event_id} {self.event_type} -> {self.topic} {self._state}>"

    def __rich_repr__(self) -> list[tuple[str, Any]]:
        """What rich shows: never the kept key and value (msgspec's default shows fields)."""
        return [
            ("event_id", self.event_id),
            ("event_type", self.event_type),
            ("topic", self.topic),
            ("state", self._state),
        ]

    @property
    def _state(self) -> str:
        return "failed" if self._failure else "delivered" if self._done else "pending"


#: Per thread: set while eventwire runs a done-callback (see :func:`in_done_callback`).
_callback_depth = threading.local()


def in_done_callback() -> bool:
    """True on a thread that is running a handle's done-callback right now.

    Such a thread may be the one that delivers the reports (the poll or relay thread,
    or a publisher serving reports inline): it must not wait for another close().
    """
    return getattr(_callback_depth, "n", 0) > 0


def _run_callback(fn: Callable[[DeliveryHandle], Any], handle: DeliveryHandle) -> None:
    depth = _callback_depth
    depth.n = getattr(depth, "n", 0) + 1
    try:
        fn(handle)
    except Exception:
        # A user callback must not break the poll thread or lose other reports.
        _log.exception(
            "done_callback_failed",
            event_id=handle.event_id,
            event_type=handle.event_type,
            topic=handle.topic,
        )
    finally:
        depth.n -= 1
