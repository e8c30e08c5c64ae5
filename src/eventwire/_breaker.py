"""A circuit breaker for "Kafka is unreachable": fail fast instead of queueing blindly.

States::

    CLOSED ──(connectivity failures for open_after_s: no success, no quiet_after_s pause)──> OPEN
    OPEN ──(reset_timeout_s passed)──> HALF_OPEN      a probe (a Metadata request) runs
    HALF_OPEN ──probe ok / any delivery ok──> CLOSED
    HALF_OPEN ──probe failed──> OPEN
    (without a probe, one event is let through as the probe, and a connectivity
    failure while half-open is the failed probe)

Only connectivity failures count (all brokers down, transport errors, message
timeouts): a permanent error such as a too-large event says nothing about
Kafka's health. Any successful delivery closes the circuit at once. The failures
must keep coming: once none has come for ``quiet_after_s``, the outage is taken to
be over, and the next failure starts a new ``open_after_s`` window. So isolated
blips, however many and however far apart, never open the circuit. (librdkafka
holds back repeats of one broker's identical error for 30 s and then reports
"N identical error(s) suppressed": with N >= 2 the failures went on all along,
and the window does not restart.)

Every transition is logged (``circuit_open``, ``circuit_half_open``,
``circuit_closed``, with the breaker's ``name``) and told to the observers added
with :meth:`CircuitBreaker.observe`, e.g. the ``eventwire_circuit_state`` gauge.
The opening from CLOSED and every closing are always logged; the probe cycle of
one outage (HALF_OPEN, then OPEN again after a failed probe, every
``reset_timeout_s``) is collapsed per (breaker, outage, state) like other repeated
events: its first lines, then one line per 30 s with the count. Observers still see
every transition.
"""

from __future__ import annotations

import enum
import re
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from eventwire._errors import EventwireError
from eventwire._timeouts import check_finite_seconds
from eventwire.observability.logging import get_logger

if TYPE_CHECKING:
    from eventwire.transports.base import BaseTransport

__all__ = [
    "CONNECTIVITY_CODES",
    "BreakerState",
    "CircuitBreaker",
    "CircuitOpenError",
    "connection_probe",
]

_log = get_logger("eventwire.breaker")

# librdkafka (rd_kafka_broker_set_error) holds back a broker's error identical to
# its previous one for 30 s, then appends ", N identical error(s) suppressed",
# where N - 1 errors were held back (N is 1 when none were).
_SUPPRESSED = re.compile(r"(\d+) identical error\(s\) suppressed")

#: Error codes that mean "cannot reach Kafka" (from error_cb or delivery reports).
CONNECTIVITY_CODES = frozenset(
    {
        "_ALL_BROKERS_DOWN",
        "_TRANSPORT",
        "_MSG_TIMED_OUT",
        "_TIMED_OUT",
        "_RESOLVE",
        "_FLUSH_TIMEOUT",
    }
)


def connection_probe(
    current_transport: Callable[[], BaseTransport | None], timeout: float = 5.0
) -> Callable[[], bool]:
    """A half-open probe: a Metadata request through the transport in use right now.

    ``current_transport`` is asked each time, so a re-created producer is probed.
    A transport with nothing to check (the default ``check_connection``, e.g. the
    memory one) always passes; so does no transport yet.
    """

    def probe() -> bool:
        transport = current_transport()
        if transport is None:
            return True
        try:
            transport.check_connection(timeout)
        except EventwireError:
            return False
        return True

    return probe


class BreakerState(enum.Enum):
    """Where the breaker is."""

    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class CircuitOpenError(EventwireError):
    """Kafka has been unreachable for a while; the event was NOT enqueued.

    Retry later, or give the publisher an outbox so events are kept durably
    while the circuit is open.
    """


class CircuitBreaker:
    """Thread-safe breaker state machine; the publisher feeds it and asks :meth:`allow`.

    The circuit opens once connectivity failures have kept coming for
    ``open_after_s`` with no successful delivery in between and no pause longer
    than ``quiet_after_s`` between two of them. A pause that long ends the
    failure window: the next failure starts a new one. During an outage with
    traffic, librdkafka often reports a connectivity error about every second
    (measured on its mock cluster, 2.16), well inside the default pause of
    5 s. It may also go quiet for up to 30 s: it suppresses a broker's
    repeated identical error for that long, then reports it with "N identical
    error(s) suppressed" in the reason. Such a report (N >= 2) proves the
    failures never stopped, so it does not restart the window: the circuit
    then opens when that report arrives. Failures that truly come rarer than
    ``quiet_after_s`` apart (e.g. connection attempts that each hang until
    ``socket.connection.setup.timeout.ms``, 30 s) open the circuit only once
    failures arrive more often, e.g. when queued events time out.

    Args:
        open_after_s: how long connectivity failures must persist, with no
            successful delivery and no ``quiet_after_s`` pause, before the
            circuit opens.
        reset_timeout_s: how long it stays open before a half-open probe.
        quiet_after_s: a pause between two connectivity failures longer than
            this ends the failure window. None (the default): half of
            ``open_after_s``, i.e. 5 s with the defaults.
        probe: called (outside the lock) to test Kafka when half-open; returns
            True if a broker answered. Without one, the next publish is the probe:
            one event is let through (the others are refused until it is reported,
            or for ``reset_timeout_s``), and a connectivity failure while half-open
            opens the circuit again.
        on_change: called with the new state on every transition.
        clock: monotonic seconds (injectable for tests).
        name: whose breaker this is, in logs and metrics. None: the owner names it
            (``"publisher"`` for ``Publisher(circuit_breaker=...)``, ``"relay"`` for
            an :class:`~eventwire.outbox.OutboxRelay`).
    """

    def __init__(
        self,
        *,
        open_after_s: float = 10.0,
        reset_timeout_s: float = 5.0,
        quiet_after_s: float | None = None,
        probe: Callable[[], bool] | None = None,
        on_change: Callable[[BreakerState], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
        name: str | None = None,
    ) -> None:
        for arg, value, positive in (
            ("open_after_s", open_after_s, False),
            ("reset_timeout_s", reset_timeout_s, False),
            ("quiet_after_s", quiet_after_s, True),
        ):
            if value is not None:
                check_finite_seconds(
                    value,
                    f"CircuitBreaker({arg}=)",
                    positive=positive,
                    hint=" (0 would end the failure window at every failure: the circuit "
                    "would never open)"
                    if arg == "quiet_after_s"
                    else "",
                )
        self.name = name
        self.open_after_s = open_after_s
        self.reset_timeout_s = reset_timeout_s
        self.quiet_after_s = open_after_s / 2 if quiet_after_s is None else quiet_after_s
        self._probe = probe
        self._on_change = on_change
        self._observers: tuple[Callable[[BreakerState], None], ...] = ()
        self._clock = clock
        self._lock = threading.Lock()
        self._state = BreakerState.CLOSED
        self._failing_since: float | None = None
        self._last_failure_at = 0.0
        self._opened_at = 0.0
        self._probing = False
        #: Without a probe: when the event let through as the half-open trial went out.
        self._trial_at: float | None = None
        #: Openings from CLOSED so far: the outage the probe cycle's log lines belong to.
        self._outages = 0
        self.last_error = ""

    @property
    def failing(self) -> bool:
        """True while connectivity failures are being counted (cheap, lock-free read)."""
        return self._failing_since is not None or self._state is not BreakerState.CLOSED

    @property
    def state(self) -> BreakerState:
        """The current state (OPEN turns HALF_OPEN lazily, when asked)."""
        with self._lock:
            self._maybe_half_open()
            return self._state

    def record_failure(self, code: str, reason: str = "") -> None:
        """Note an error; only connectivity codes can open the circuit.

        ``reason`` is librdkafka's text; one saying "N identical error(s)
        suppressed" (N >= 2) shows the failures went on through any pause.
        """
        if code not in CONNECTIVITY_CODES:
            return
        now = self._clock()
        suppressed = _SUPPRESSED.search(reason) if reason else None
        kept_failing = suppressed is not None and int(suppressed.group(1)) >= 2
        with self._lock:
            self.last_error = f"{code}: {reason}" if reason else code
            if self._failing_since is None or (
                now - self._last_failure_at > self.quiet_after_s and not kept_failing
            ):
                self._failing_since = now  # a new failure window
            self._last_failure_at = now
            if (
                self._state is BreakerState.CLOSED
                and now - self._failing_since >= self.open_after_s
            ) or (self._state is BreakerState.HALF_OPEN and self._probe is None):
                # (Half-open without a probe: the events let through are the probe, and
                # a connectivity failure says Kafka is still unreachable.)
                self._transition(BreakerState.OPEN, now)

    def record_success(self) -> None:
        """A delivery succeeded: Kafka is reachable, close the circuit."""
        with self._lock:
            self._failing_since = None
            if self._state is not BreakerState.CLOSED:
                self._transition(BreakerState.CLOSED, self._clock())

    def allow(self) -> bool:
        """May an event be sent to Kafka now? Runs the half-open probe if due."""
        with self._lock:
            self._maybe_half_open()
            state = self._state
            if state is BreakerState.CLOSED:
                return True
            if state is BreakerState.OPEN or self._probing:
                return False
            if self._probe is None:
                # No probe: let one event test the water; the rest wait for its outcome
                # (a delivery closes the circuit, a connectivity failure opens it again),
                # or for reset_timeout_s, if it says neither (e.g. a permanent error).
                now = self._clock()
                if self._trial_at is not None and now - self._trial_at < self.reset_timeout_s:
                    return False
                self._trial_at = now
                return True
            self._probing = True
        ok = False
        try:
            ok = self._probe()
        finally:
            with self._lock:
                self._probing = False
                if ok:
                    self._failing_since = None
                    self._transition(BreakerState.CLOSED, self._clock())
                elif self._state is BreakerState.HALF_OPEN:
                    self._transition(BreakerState.OPEN, self._clock())
        return ok

    def observe(self, callback: Callable[[BreakerState], None]) -> None:
        """Also call ``callback(new_state)`` on every transition, after ``on_change``.

        It runs under the breaker's lock, on whichever thread caused the
        transition: it must be quick and must not call back into the breaker.
        """
        with self._lock:
            self._observers = (*self._observers, callback)

    def open_error(self, what: str) -> CircuitOpenError:
        """The error for an event refused while the circuit is open."""
        return CircuitOpenError(
            f"{what} was NOT enqueued: Kafka has been unreachable for over "
            f"{self.open_after_s:g}s ({self.last_error or 'no broker answered'}), so the "
            "circuit is open. Retry later, or configure an outbox to keep events durably "
            "while Kafka is down."
        )

    def _maybe_half_open(self) -> None:
        if self._state is BreakerState.OPEN:
            now = self._clock()
            if now - self._opened_at >= self.reset_timeout_s:
                self._transition(BreakerState.HALF_OPEN, now)

    def _transition(self, state: BreakerState, now: float) -> None:
        if state is self._state:
            return
        cycling = state is BreakerState.HALF_OPEN or (
            state is BreakerState.OPEN and self._state is BreakerState.HALF_OPEN
        )
        if state is BreakerState.OPEN and self._state is BreakerState.CLOSED:
            self._outages += 1
        self._state = state
        self._trial_at = None
        if state is BreakerState.OPEN:
            self._opened_at = now
        event = f"circuit_{state.value}"
        if cycling:  # a probe's half-open, or its failure: a retry, collapsed
            key = (self.name, id(self), self._outages, state.value)
            _log.warning(event, breaker=self.name, last_error=self.last_error, collapse=key)
        else:
            _log.warning(event, breaker=self.name, last_error=self.last_error)
        if self._on_change is not None:
            self._on_change(state)
        for observer in self._observers:
            observer(state)
