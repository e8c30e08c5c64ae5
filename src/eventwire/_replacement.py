"""Replacing a producer hit by a fatal error, and resuming its unacknowledged events.

After a fatal librdkafka error (an idempotence sequence error, or authorization
failing for the producer id) every ``produce()`` is refused and the events the
producer holds may never be reported. :class:`ProducerReplacement` then:

* abandons the old producer (its poll thread stops; nothing polls it again, so
  its late reports never arrive, and any that do are ignored: see
  :class:`~eventwire._handle.Resent`);
* makes a new one and re-sends every pending event through it, in publish
  order, with the same ``ce_id`` and headers -- *before* installing it, so a
  publish racing on another thread cannot overtake the re-sent events of its key
  (it waits on the replacement lock instead);
* does this at most ``limit`` times in any :data:`RESTART_WINDOW_S` seconds.
  Beyond that the publisher goes fatal as it would without replacement.

An event the old producer had already written is in the log twice after a
re-send: at-least-once, de-duplicated by consumers on ``ce_id``.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING

import structlog

from eventwire._cloudevents import HeaderTemplate
from eventwire._handle import DeliveryHandle, Resent
from eventwire.transports.base import SendRejected, Transport, TransportQueueFull

if TYPE_CHECKING:
    from eventwire._core import PublisherCore

__all__ = ["RESTART_WINDOW_S", "ProducerReplacement"]

_log = structlog.get_logger("eventwire")

#: Producer replacements after fatal errors are counted over this window.
RESTART_WINDOW_S = 600.0


class ProducerReplacement:
    """Replaces ``core``'s producer after fatal errors, within a restart budget."""

    def __init__(self, core: PublisherCore, factory: Callable[[], Transport], limit: int) -> None:
        self._core = core
        self._factory = factory
        self._budget = _RestartBudget(limit, RESTART_WINDOW_S)
        self._lock = threading.RLock()
        self._filling: Transport | None = None  # a replacement being given the re-sends
        self._filling_fatal: tuple[str, str] | None = None
        self._templates: dict[str, HeaderTemplate] = {}

    def on_fatal(self, transport: Transport, code: str, reason: str) -> bool:
        """``transport`` reported a fatal error. False: not replaced, the core goes fatal."""
        if transport is not self._core.transport and transport is not self._filling:
            return True  # an already replaced producer: nothing to do
        return self._replace(transport, code, reason)

    def resume(self, transport: Transport, exc: SendRejected, handle: DeliveryHandle) -> bool:
        """A send of ``handle`` found ``transport`` fatal: True if it went out on a new one.

        False if no replacement is allowed: the handle is then out of the pending set
        (not swept into flush()'s failures), as the caller raises for it.
        """
        return self._resume(transport, exc.code, exc.reason, handle, 0)

    def holds_back(self) -> bool:
        """True while a purge/fatal report means "wait for the replacement", not "failed".

        On a fatal error librdkafka purges its queues, reporting ``_PURGE_QUEUE`` /
        ``_PURGE_INFLIGHT`` / ``_FATAL`` for each event -- possibly on another thread
        before the replacement has taken its snapshot. Those events stay pending and
        are re-sent; if no replacement is allowed after all, the core's fatal sweep
        reports them.
        """
        core = self._core
        return not core.closed and core._fatal is None

    # -- internals --------------------------------------------------------------------
    def _resume(
        self,
        transport: Transport,
        code: str,
        reason: str,
        handle: DeliveryHandle,
        seen_resends: int,
    ) -> bool:
        core = self._core
        with self._lock:
            if handle._resends > seen_resends or handle._done:
                return True  # another thread's replacement re-sent it with the rest
            core._pending.pop(handle, None)
            surface = getattr(transport, "surface_fatal", None)
            if surface is not None:
                surface()  # the real cause replaces the producer, rather than "_FATAL"
            core._on_fatal_from(transport, code, reason)  # replaces now, or already did
            if core._fatal is not None or core.closed:
                return False
            # (a done-callback publishing during a fill goes to the producer being filled)
            current = self._filling or core.transport
            core._pending[handle] = None
            if self._resend(current, handle):
                return True
            core._pending.pop(handle, None)
            seen = handle._resends
        return self._resume(current, "_FATAL", "replacement is fatal", handle, seen)

    def _replace(self, old: Transport, code: str, reason: str) -> bool:
        core = self._core
        with self._lock:
            if old is self._filling:  # it failed while being filled, on this thread
                self._filling_fatal = (code, reason)
                return True  # handled once it is installed (below)
            if self._filling is not None:
                return True  # a fill of its replacement runs on this thread (re-entered)
            if core.transport is not old:
                return True  # another thread replaced it already
            new = self._new_producer(code)
            if new is None:
                return False
            abandon = getattr(old, "abandon", None)
            if abandon is not None:
                abandon()  # returns at once; the old producer is closed in the background
            core._attach(new)
            self._filling, self._filling_fatal = new, None
            resent: list[DeliveryHandle] = []
            try:
                for handle in [h for h in list(core._pending) if not h._done]:
                    if not self._resend(new, handle):
                        self._filling_fatal = self._filling_fatal or ("_FATAL", "on re-send")
                        break  # the rest go to the next replacement
                    resent.append(handle)
            finally:
                self._filling = None
            core.transport = new
            _log.warning(
                "producer_replaced",
                code=code,
                reason=reason,
                resent=len(resent),
                restarts_left=self._budget.left(),
            )
            for topic, n in _count_by_topic(resent).items():
                core.count_outcome(topic, "retried", n)
            if self._filling_fatal is not None:  # the new producer is already fatal too
                core._on_fatal_from(new, *self._filling_fatal)
            return True

    def _new_producer(self, code: str) -> Transport | None:
        """A replacement producer, or None (closed, fatal, budget spent, creation failed)."""
        if self._core.closed or self._core._fatal is not None:
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
            return self._factory()
        except Exception as exc:
            _log.error("producer_restart_failed", code=code, error=repr(exc))
            return None

    def _resend(self, transport: Transport, handle: DeliveryHandle) -> bool:
        """Send the pending ``handle`` again, through ``transport``.

        True if it is on its way, or settled (refused, or the queue stayed full);
        False if ``transport`` is fatal too: the handle stays pending.
        """
        core = self._core
        if handle._done:
            return True
        record = handle._record
        if record is None:  # not kept (no replacement was possible when it was sent)
            core.settled(handle, None, handle.failure_from("_FATAL", "not kept for a re-send"))
            return True
        key, value, extra = record
        headers = self._headers(handle, extra)
        callback = Resent(handle)
        deadline = time.monotonic() + core._enqueue_timeout
        while True:
            try:
                transport.send(handle.topic, key, value, headers, callback)
                return True
            except TransportQueueFull:
                if time.monotonic() >= deadline:
                    core.settled(handle, None, handle.failure_from("_QUEUE_FULL", "re-send"))
                    return True
                transport.wait_for_space(0.05)
            except SendRejected as exc:
                if exc.fatal:
                    return False
                core.settled(handle, None, handle.failure_from(exc.code, exc.reason))
                return True

    def _headers(
        self, handle: DeliveryHandle, extra: tuple[tuple[str, bytes], ...] | None
    ) -> list[tuple[str, bytes]]:
        """The event's original headers: CloudEvents ones rebuilt, then the kept extras."""
        template = self._templates.get(handle.event_type)
        if template is None:
            template = self._templates[handle.event_type] = self._core.header_template(
                handle.event_type
            )
        return template.build(handle.event_id, handle.sent_at_ns // 1_000_000, extra)


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


def _count_by_topic(handles: list[DeliveryHandle]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for handle in handles:
        counts[handle.topic] = counts.get(handle.topic, 0) + 1
    return counts
