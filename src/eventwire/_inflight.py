"""The in-flight ledger: the single owner of a publisher's unacknowledged events.

An event is in exactly one place: not yet published, in the ledger (enqueued,
waiting for its report), or settled. Only the ledger moves it: :meth:`add` before
the send, :meth:`discard` if the send did not enqueue it, :meth:`settle` for a
report or a sweep, :meth:`abandon` for a synchronous rejection. Everything that
must happen when an event settles -- metrics, the circuit breaker, resolving an
asyncio future -- is a hook registered with :meth:`on_settle`; the span ends in
the handle itself, before any waiter wakes.

It keeps the failures for ``flush()``/``close()`` to report, once: a failure the
application already observed (``result()`` raised it, ``failed()`` or ``failure``
told it, a done-callback ran, or an awaited asyncio future raised it) is not
reported again. The rest are kept up to :data:`KEPT_FAILURES`, then counted.

It is also the close gate: :meth:`shut` makes every later :meth:`gate` refuse
and waits for the sends already past it, so ``close()`` reports every event
that got in, and no event gets in afterwards.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Literal

from eventwire._errors import DeliveryError, DeliveryFailure, PublisherStateError
from eventwire.observability.logging import get_logger

if TYPE_CHECKING:
    from eventwire._handle import DeliveryHandle
    from eventwire.transports.base import ReportMessage

__all__ = ["CLOSED_REASON", "KEPT_FAILURES", "InFlight", "SettleHook"]

_log = get_logger("eventwire")

#: How :meth:`InFlight.failures_error` treats failures with an asyncio future.
FutureRule = Literal["defer", "done", "all"]
#: Called once per settled event with its failure (None: delivered).
SettleHook = Callable[["DeliveryHandle", "DeliveryFailure | None"], None]

CLOSED_REASON = "the publisher is closed (or closing); create a new one to publish"
#: How long shutting the gate waits at least for sends already past it.
_SENDERS_GRACE_S = 1.0
#: At most this many failed events are kept between flushes for flush()/close() to
#: report; past it failures are counted (and logged one by one as delivery_failed).
KEPT_FAILURES = 1000


class InFlight:
    """Tracks every enqueued, unsettled event of one publisher; see the module docs."""

    def __init__(self) -> None:
        #: The lock every handle of this publisher settles under.
        self.lock = threading.Lock()
        #: The unsettled events, in the order they were added. Only :meth:`add` (which
        #: the producer's hot path inlines as ``pending[handle] = None``) adds to it.
        self.pending: dict[DeliveryHandle, None] = {}
        #: Failed handles not yet reported by a flush (at most KEPT_FAILURES), and
        #: how many more failed past that bound since the last flush.
        self._failed: list[DeliveryHandle] = []
        self._not_kept = 0
        #: Failures to count, once the kept ones are full, before scanning them again
        #: for observed ones to let go: a scan costs KEPT_FAILURES, so at most one per
        #: KEPT_FAILURES failures (amortized O(1) each, however long the burst).
        self._scan_in = 0
        #: Told of every settled event (metrics, breaker, the asyncio bridge): see
        #: :meth:`on_settle` and :meth:`run_hooks`.
        self.hooks: list[SettleHook] = []
        self._abandon_hooks: list[SettleHook] = []
        #: One entry per send past the close gate (see :meth:`gate`).
        self.senders: deque[None] = deque()
        #: True once :meth:`shut` has begun.
        self.closed = False
        #: Set by the producer: True if a failed report with this code must leave
        #: its event pending (a fatal error's purge, re-sent by the replacement).
        self.holds_back: Callable[[str], bool] = _never
        #: Set by the producer: make the transport serve delivery reports now.
        self.wake: Callable[[], None] = _nothing
        #: Set by AsyncPublisher, which takes the failures with a future on its loop
        #: after each flush/close: a take off the loop leaves those to it.
        self.defer_futures = False
        #: Set by the producer from its transport: a ``_PURGE_QUEUE`` report may be
        #: for a record already written (see BaseTransport.queued_may_be_written).
        self.queued_may_be_written = False

    # -- the close gate -------------------------------------------------------------------
    @contextmanager
    def gate(self) -> Iterator[None]:
        """Hold the gate open for one send (or outbox write); refuse once shut.

        Lock-free, ordered by CPython's GIL: a send registers, then reads the flag;
        :meth:`shut` sets the flag, then waits until no send is registered. Either
        the send sees the flag, or ``shut`` sees the send and waits for it.

        Raises:
            PublisherStateError: :meth:`shut` has begun; do not send.
        """
        senders = self.senders
        senders.append(None)
        try:
            if self.closed:
                raise PublisherStateError(CLOSED_REASON)
            yield
        finally:
            senders.pop()

    def shut(self, timeout: float) -> bool:
        """Refuse every later send; wait (bounded) for those under way. False if already shut."""
        with self.lock:
            if self.closed:
                return False
            self.closed = True
        deadline = time.monotonic() + max(timeout, _SENDERS_GRACE_S)
        while self.senders and time.monotonic() < deadline:
            time.sleep(0.0005)
        if self.senders:  # a send that outlasts the wait (a slow outbox commit, a long
            # wait for queue space): what it adds is settled by the close that follows
            _log.warning("close_with_send_in_progress", sends=len(self.senders))
        return True

    # -- tracking ---------------------------------------------------------------------------
    def on_settle(self, hook: SettleHook, *, abandoned: bool = False) -> None:
        """Call ``hook(handle, failure)`` for every event that settles from now on.

        With ``abandoned`` also for events refused before they were enqueued (whose
        error the caller got directly), e.g. to count them.
        """
        self.hooks.append(hook)
        if abandoned:
            self._abandon_hooks.append(hook)

    def add(self, handle: DeliveryHandle) -> None:
        """Track ``handle`` (call before sending: its report may come at once)."""
        self.pending[handle] = None

    def discard(self, handle: DeliveryHandle) -> None:
        """Stop tracking ``handle`` without settling it (the send did not enqueue it)."""
        self.pending.pop(handle, None)

    def settle(
        self, handle: DeliveryHandle, msg: ReportMessage | None, failure: DeliveryFailure | None
    ) -> None:
        """Settle an enqueued event (its report, or a sweep); keep its failure for flush."""
        if (
            failure is not None
            and failure.code == "_PURGE_QUEUE"
            and self.queued_may_be_written
            and not failure.possibly_written
        ):  # what may have happened to the event, not its code alone, decides
            failure = dataclasses.replace(failure, possibly_written=True)
        if not handle._settle(msg, failure):
            return
        if failure is not None:  # recorded first: a flush that sees the ledger empty
            self._keep(handle)  # must also see this failure
        self.pending.pop(handle, None)
        if self.hooks:
            self.run_hooks(handle, failure)
        if failure is not None:
            _log_failure(failure)

    def run_hooks(self, handle: DeliveryHandle, failure: DeliveryFailure | None) -> None:
        """Tell every settle hook of ``handle``, once it is out of :attr:`pending`."""
        for hook in self.hooks:
            try:
                hook(handle, failure)
            except Exception:  # a hook's error is logged, never raised into a report
                _log.exception("settle_hook_failed", event_id=handle.event_id)

    def keep_refused(self, handle: DeliveryHandle) -> None:
        """Keep, for flush, and log the failure of an event refused without a report.

        That is an AsyncPublisher backlog refusal, whose future is all the caller has.
        """
        failure = handle._failure
        if failure is not None:
            self._keep(handle)
            _log_failure(failure)

    def refuse_closed(self, handle: DeliveryHandle, what: str = "enqueued") -> PublisherStateError:
        """Settle an event ``close()`` refused after it was prepared; return its error.

        ``what``: what did not happen to it ("enqueued"; "written to the outbox").
        """
        message = (
            f"event {handle.event_id} ({handle.event_type}) to {handle.topic!r} was NOT "
            f"{what}: {CLOSED_REASON}"
        )
        self.abandon(handle, handle.failure_from("_CLOSED", message))
        return PublisherStateError(message)

    def abandon(self, handle: DeliveryHandle, failure: DeliveryFailure) -> None:
        """Settle an event that was never enqueued: the caller gets its error directly."""
        self.pending.pop(handle, None)
        if handle._settle(None, failure):
            for hook in self._abandon_hooks:
                _run_hook(hook, handle, failure)

    def release(self, handle: DeliveryHandle, failure: DeliveryFailure) -> None:
        """Settle an event that is safe elsewhere (e.g. in the outbox), not as a failure.

        Nobody need be told: neither flush()/close() nor asyncio's "exception was
        never retrieved" reports it (an await or result() still sees the code).
        """
        self.pending.pop(handle, None)
        handle._seen = True
        handle._settle(None, failure)

    def fail_all(self, code: str, reason: str, *, possibly_written: bool = True) -> int:
        """Settle every tracked event as failed with ``code``; return how many.

        Each was handed to the transport and got no report, so by default each is
        reported ``possibly_written`` (a re-send may duplicate it, never lose it).
        """
        stuck = list(self.pending)
        for handle in stuck:
            failure = handle.failure_from(code, reason)
            if possibly_written and not failure.possibly_written:
                failure = dataclasses.replace(failure, possibly_written=True)
            self.settle(handle, None, failure)
        return len(stuck)

    def snapshot(self) -> list[DeliveryHandle]:
        """The unsettled events, in the order they were added (for a re-send)."""
        return [h for h in list(self.pending) if not h.done()]

    def _keep(self, handle: DeliveryHandle) -> None:
        """Keep a failed handle for the next flush; past the bound, count it instead."""
        with self.lock:
            failed = self._failed
            if len(failed) >= KEPT_FAILURES and self._scan_in <= 0:
                # make room: drop what the app has seen; the next scan waits for as
                # many failures as are still kept (a scan frees f: f kept + K-f counted)
                failed[:] = [h for h in failed if not h.observed()]
                self._scan_in = len(failed)
            if len(failed) < KEPT_FAILURES:
                failed.append(handle)
                return
            self._not_kept += 1
            self._scan_in -= 1
            handle._seen = True  # reported by count: asyncio need not report it again
            first = self._not_kept == 1
        if first:
            _log.warning("delivery_failures_not_kept", kept=KEPT_FAILURES)

    def failures_error(
        self, timed_out: bool, context: str, *, futures: FutureRule | None = None
    ) -> DeliveryError | None:
        """Take the failures nobody observed (plus, if ``timed_out``, every unsettled event).

        Returns the DeliveryError for ``flush()``/``close()`` to raise, or None. What
        it reports is forgotten (and marked observed), so it is reported once.

        A failure with an asyncio future (AsyncPublisher) is decided on its loop, once
        the loop has resolved the future and run what waits on it (an awaiting task, a
        done-callback), so the application is not told twice: ``futures="defer"`` (off
        the loop) keeps each for the next call, cancelled ones too, and the count of
        failures past the bound; ``"done"`` (on the loop, caught up) decides the
        resolved ones, ``"all"`` (the loop is gone) decides every one. So what a
        worker thread's flush takes is never lost with an awaiting coroutine that
        was cancelled meanwhile: the loop's own call takes it, or the next one.
        None: ``"defer"`` if :attr:`defer_futures` (set by a publisher that takes them
        on its loop afterwards), else ``"all"``.
        """
        if futures is None:
            futures = "defer" if self.defer_futures else "all"
        with self.lock:
            failed, self._failed = self._failed, []
            not_kept = 0
            if futures != "defer":
                not_kept, self._not_kept = self._not_kept, 0
            self._scan_in = 0
        failures: list[DeliveryFailure] = []
        later: list[DeliveryHandle] = []
        for handle in failed:
            if handle.observed():
                continue
            fut = handle._afut
            if fut is not None and (futures == "defer" or (futures == "done" and not fut.done())):
                later.append(handle)  # the loop decides, once what awaits it has run
                continue
            failure = handle._failure
            assert failure is not None
            handle._mark_observed()
            failures.append(failure)
        if later:
            with self.lock:
                self._failed[:0] = later
        if timed_out:
            failures.extend(h.failure_from("_FLUSH_TIMEOUT", "") for h in self.snapshot())
        if failures or not_kept:
            return DeliveryError(failures, context=context, not_kept=not_kept)
        return None

    def __len__(self) -> int:
        """Events enqueued and not yet settled."""
        return len(self.pending)


def _log_failure(failure: DeliveryFailure) -> None:
    _log.warning(
        "delivery_failed",
        event_id=failure.event_id,
        event_type=failure.event_type,
        topic=failure.topic,
        code=failure.code,
        error_class=failure.error_class.value,
        collapse=(failure.code, failure.topic),
    )


def _never(_code: str) -> bool:
    return False


def _nothing() -> None:
    return None


def _run_hook(hook: SettleHook, handle: DeliveryHandle, failure: DeliveryFailure | None) -> None:
    """Run a settle hook; its error is logged, never raised into the report's thread."""
    try:
        hook(handle, failure)
    except Exception:
        _log.exception("settle_hook_failed", event_id=handle.event_id, topic=handle.topic)
