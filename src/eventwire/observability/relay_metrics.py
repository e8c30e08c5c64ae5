"""OpenTelemetry metrics of the reliability features: circuit breakers and the outbox relay.

Like the publisher's (see :mod:`eventwire.observability.metrics`, whose table lists
every instrument's Prometheus name), these report only to a real (SDK)
MeterProvider: the relay's ``meter_provider=``, else the global one, and a
publisher with an outbox hands its MeterProvider to its relay. With none, a relay
or breaker does no metrics work at all.

Instruments (OpenTelemetry name: labels):

* ``eventwire.circuit.state`` (gauge: ``breaker``) is 0 closed, 1 half-open, 2 open
  (:data:`CIRCUIT_STATES`), per ``breaker`` (the breaker's name: ``publisher`` for
  ``Publisher(circuit_breaker=...)``, ``relay`` for the outbox relay's; the worst
  state if several share a name).
* ``eventwire.circuit.transitions`` (counter: ``breaker``, ``state``) counts entries
  into each ``state`` (``closed``, ``half_open``, ``open``). A publisher or relay
  without a breaker reports neither circuit instrument.
* ``eventwire.outbox.relayed`` (counter: ``topic``, ``outcome``) counts the relay's
  outcomes per entry and attempt, by original ``topic``: ``delivered``
  (acknowledged, marked sent), ``retried`` (failed, scheduled for another attempt),
  ``dead_lettered`` (given up on, sent to the dead-letter topic) and ``parked``
  (given up on, kept in the outbox) -- :data:`RELAY_OUTCOMES`.
* ``eventwire.outbox.relay_errors`` (counter: ``step``; Prometheus
  ``eventwire_outbox_relay_errors_total``) counts the errors of the relay loop's
  steps, each of which the relay survives and retries: ``round`` (claiming,
  marking, creating a producer), ``cleanup`` and ``heartbeat`` --
  :data:`RELAY_STEPS`. A series appears at its first error; a rate above zero
  for ``round`` means the relay is not shipping events.
* ``eventwire.outbox.pending_events`` and ``eventwire.outbox.oldest_pending_age``
  (gauges, seconds for the age) are read from the store (``OutboxStore.status()``,
  as ``eventwire outbox status`` shows) when collected, once per collection for
  both, and summed (depth) or maxed (age) over the distinct stores of running
  relays. ``oldest_pending_age`` is absent while nothing is pending. A store that
  cannot answer is logged (``outbox_status_failed``) and reports nothing that time.

A breaker transition costs one locked increment. A relay adds one locked pass over
each round's topics per outcome; the store is queried only by the collector, never
on the relay's path.
"""

from __future__ import annotations

import threading
import time
import weakref
from collections.abc import Iterable
from typing import TYPE_CHECKING, Literal

from opentelemetry.metrics import CallbackOptions, MeterProvider, Observation

from eventwire.observability import instrumentation_version
from eventwire.observability._provider import bound, resolve
from eventwire.observability.logging import get_logger

if TYPE_CHECKING:
    from eventwire._breaker import BreakerState, CircuitBreaker
    from eventwire.outbox.base import OutboxStatus, OutboxStore

__all__ = [
    "CIRCUIT_STATES",
    "RELAY_OUTCOMES",
    "RELAY_STEPS",
    "BreakerWatch",
    "RelayMetrics",
    "RelayOutcome",
    "RelayStep",
    "make_relay_metrics",
    "watch_breaker",
]

_log = get_logger("eventwire.outbox")

RelayOutcome = Literal["delivered", "retried", "dead_lettered", "parked"]
RELAY_OUTCOMES: tuple[RelayOutcome, ...] = ("delivered", "retried", "dead_lettered", "parked")
RelayStep = Literal["round", "cleanup", "heartbeat"]
RELAY_STEPS: tuple[RelayStep, ...] = ("round", "cleanup", "heartbeat")
#: ``BreakerState.value`` -> the value of ``eventwire.circuit.state``.
CIRCUIT_STATES = {"closed": 0, "half_open": 1, "open": 2}


# -- circuit breakers ------------------------------------------------------------------
class BreakerWatch:
    """Reports one circuit breaker: told each transition (under the breaker's lock)."""

    __slots__ = ("__weakref__", "_closed", "_group", "name", "value")

    def __init__(self, group: _CircuitInstruments, name: str) -> None:
        self._group = group
        self.name = name
        #: The breaker's state as ``eventwire.circuit.state`` reports it.
        self.value = 0
        self._closed = False

    def __call__(self, state: BreakerState) -> None:
        """Record a transition into ``state`` (nothing once closed: a reused breaker)."""
        if self._closed:
            return
        self.value = CIRCUIT_STATES[state.value]
        group = self._group
        series = (self.name, state.value)
        with group.lock:
            group.transitions[series] = group.transitions.get(series, 0) + 1

    def close(self) -> None:
        """Stop reporting the state (its transitions stay in the counter)."""
        self._closed = True
        self._group.members.discard(self)


class _CircuitInstruments:
    """The circuit-breaker instruments of one MeterProvider."""

    def __init__(self, provider: MeterProvider) -> None:
        self.lock = threading.Lock()
        #: (breaker name, state entered) -> count.
        self.transitions: dict[tuple[str, str], int] = {}
        self.members: weakref.WeakSet[BreakerWatch] = weakref.WeakSet()
        meter = provider.get_meter("eventwire", instrumentation_version())
        meter.create_observable_gauge(
            "eventwire.circuit.state",
            [self._state],
            unit="{state}",
            description="Circuit breaker state: 0 closed, 1 half-open, 2 open",
        )
        meter.create_observable_counter(
            "eventwire.circuit.transitions",
            [self._transitions],
            unit="{transition}",
            description="Circuit breaker transitions, by breaker and state entered",
        )

    def _state(self, _options: CallbackOptions) -> Iterable[Observation]:
        worst: dict[str, int] = {}
        for watch in list(self.members):
            worst[watch.name] = max(worst.get(watch.name, 0), watch.value)
        return [Observation(v, {"breaker": name}) for name, v in worst.items()]

    def _transitions(self, _options: CallbackOptions) -> Iterable[Observation]:
        with self.lock:
            counts = list(self.transitions.items())
        return [Observation(n, {"breaker": b, "state": st}) for (b, st), n in counts]


def watch_breaker(provider: MeterProvider, breaker: CircuitBreaker) -> BreakerWatch:
    """Report ``breaker`` (labelled with its ``name``) on ``provider``, a real one."""
    watch = BreakerWatch(bound(provider, _CircuitInstruments), breaker.name or "circuit")
    breaker.observe(watch)
    watch.value = CIRCUIT_STATES[breaker.state.value]
    watch._group.members.add(watch)
    return watch


# -- the outbox relay -------------------------------------------------------------------
class RelayMetrics:
    """One relay's view of its MeterProvider's outbox instruments.

    Relays sharing a MeterProvider share the ``eventwire.outbox.relayed`` counts.
    """

    __slots__ = ("__weakref__", "_breaker", "_counts", "_group", "_lock", "meter_provider", "store")

    def __init__(self, group: _OutboxInstruments, store: OutboxStore, provider: MeterProvider):
        self._group = group
        self._counts = group.counts
        self._lock = group.lock
        self._breaker: BreakerWatch | None = None
        #: The store whose depth and oldest pending age are reported.
        self.store = store
        self.meter_provider = provider
        group.members.add(self)

    def count(self, outcome: RelayOutcome, topics: Iterable[str]) -> None:
        """Add one ``outcome`` per item of ``topics`` (the entries' original topics)."""
        counts = self._counts[outcome]
        with self._lock:
            for topic in topics:
                counts[topic] = counts.get(topic, 0) + 1

    def count_error(self, step: RelayStep) -> None:
        """Add one error of the relay loop's ``step``."""
        errors = self._group.errors
        with self._lock:
            errors[step] = errors.get(step, 0) + 1

    def watch_breaker(self, breaker: CircuitBreaker) -> None:
        """Report the relay's breaker's state and transitions."""
        self._breaker = watch_breaker(self.meter_provider, breaker)

    def close(self) -> None:
        """Stop reading the store and reporting the breaker (counts stay)."""
        self._group.members.discard(self)
        if self._breaker is not None:
            self._breaker.close()


class _OutboxInstruments:
    """The outbox relay's instruments of one MeterProvider, shared by its relays."""

    #: A status read serves the other gauge of the same collection if this fresh.
    _SHARE_S = 1.0

    def __init__(self, provider: MeterProvider) -> None:
        self.lock = threading.Lock()
        #: outcome -> topic -> count, read by the observable counter when collected.
        self.counts: dict[str, dict[str, int]] = {outcome: {} for outcome in RELAY_OUTCOMES}
        #: step -> errors of the relay loop (under ``lock``).
        self.errors: dict[str, int] = {}
        self.members: weakref.WeakSet[RelayMetrics] = weakref.WeakSet()
        self._read_lock = threading.Lock()
        self._unread: tuple[float, list[OutboxStatus]] | None = None
        meter = provider.get_meter("eventwire", instrumentation_version())
        meter.create_observable_counter(
            "eventwire.outbox.relayed",
            [self._relayed],
            unit="{event}",
            description="Outbox entries the relay handled, by topic and outcome",
        )
        meter.create_observable_counter(
            "eventwire.outbox.relay_errors",
            [self._relay_errors],
            unit="{error}",
            description="Errors of the outbox relay's loop (each retried), by step",
        )
        meter.create_observable_gauge(
            "eventwire.outbox.pending_events",
            [self._pending],
            unit="{event}",
            description="Events committed to the outbox and not yet sent or given up on",
        )
        meter.create_observable_gauge(
            "eventwire.outbox.oldest_pending_age",
            [self._oldest_age],
            unit="s",
            description="Age of the oldest pending outbox event",
        )

    def _relayed(self, _options: CallbackOptions) -> Iterable[Observation]:
        with self.lock:
            counts = [(o, t, n) for o, by_topic in self.counts.items() for t, n in by_topic.items()]
        return [Observation(n, {"topic": t, "outcome": o}) for o, t, n in counts]

    def _relay_errors(self, _options: CallbackOptions) -> Iterable[Observation]:
        with self.lock:
            errors = list(self.errors.items())
        return [Observation(n, {"step": step}) for step, n in errors]

    def _statuses(self) -> list[OutboxStatus] | None:
        """Each distinct store's status, read once for both gauges; None if no relay runs."""
        stores = list({id(m.store): m.store for m in list(self.members)}.values())
        if not stores:
            return None
        with self._read_lock:
            unread, self._unread = self._unread, None
            if unread is not None and time.monotonic() - unread[0] < self._SHARE_S:
                return unread[1]
            statuses = []
            for store in stores:
                try:
                    statuses.append(store.status())
                except Exception as exc:  # a gauge callback must never raise
                    _log.warning(
                        "outbox_status_failed", store=type(store).__name__, error=repr(exc)
                    )
            self._unread = (time.monotonic(), statuses)
            return statuses

    def _pending(self, _options: CallbackOptions) -> Iterable[Observation]:
        statuses = self._statuses()
        if not statuses:
            return []
        return [Observation(sum(s.pending for s in statuses))]

    def _oldest_age(self, _options: CallbackOptions) -> Iterable[Observation]:
        ages = [s.oldest_pending_age_s for s in self._statuses() or ()]
        known = [a for a in ages if a is not None]
        return [Observation(max(known))] if known else []


def make_relay_metrics(
    meter_provider: MeterProvider | None, store: OutboxStore
) -> RelayMetrics | None:
    """A relay's metrics hook, or None when there is no real MeterProvider."""
    provider = resolve(meter_provider)
    if provider is None:
        return None
    return RelayMetrics(bound(provider, _OutboxInstruments), store, provider)
