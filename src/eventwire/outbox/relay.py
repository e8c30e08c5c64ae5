"""The relay: moves committed outbox entries to Kafka, at least once, in per-key order.

Each round it claims a batch (a lease, so a crashed relay's entries come back),
sends every entry with its stored bytes and headers (so ``ce_id`` is the same on
every re-send), waits for the acks, and marks the acknowledged entries sent.
Retriable failures are rescheduled with capped exponential backoff and jitter.
Permanent failures, and retriable ones past ``max_attempts`` or ``max_age_s``, go
to a dead-letter topic (``<topic>.dlq`` by default); they are parked in the
outbox only with ``dead_letter=None`` or when the dead-letter send fails. A crash
at any point loses nothing: at worst an entry whose ack arrived but whose
``mark_sent`` did not commit is sent again, with the same ``ce_id``, for
consumers to de-duplicate.

Retry scheduling lives in the store (``next_attempt_at``), not in a retry
library's in-process loop, because it must survive restarts of the relay.

With a real MeterProvider the relay counts each outcome in
``eventwire_outbox_relayed_total{topic,outcome}`` and reports the store's depth,
oldest pending age and, if it has one, its breaker's state (see
:mod:`eventwire.middleware.reliability_metrics`).
"""

from __future__ import annotations

import os
import random
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import structlog

from eventwire._breaker import CircuitBreaker
from eventwire._dlq import DeadLetterPolicy, dead_letter_headers
from eventwire._errors import ErrorClass, RoutingError
from eventwire._policy import classify, meaning
from eventwire.middleware.reliability_metrics import (
    RelayMetrics,
    RelayOutcome,
    make_relay_metrics,
)
from eventwire.outbox.base import ClaimedEntry, OutboxStore
from eventwire.transports.base import (
    ReportError,
    ReportMessage,
    SendRejected,
    Transport,
    TransportQueueFull,
)

if TYPE_CHECKING:
    from opentelemetry.metrics import MeterProvider

__all__ = ["OutboxRelay", "RelayListener", "RelayStats"]

_log = structlog.get_logger("eventwire.outbox")


@dataclass
class RelayStats:
    """Running totals of one relay."""

    rounds: int = 0
    sent: int = 0
    retried: int = 0
    dead_lettered: int = 0
    parked: int = 0
    transport_restarts: int = 0


class RelayListener(Protocol):
    """Told each entry's final outcome (e.g. an in-process publisher settling handles)."""

    def delivered(self, event_id: str, msg: ReportMessage) -> None:
        """Kafka acknowledged the event on its own topic."""
        ...

    def given_up(self, event_id: str, code: str, reason: str) -> None:
        """The event was dead-lettered or parked: it will not reach its topic as is."""
        ...


class _Outcome:
    """The delivery callback of one entry (one object, no closure)."""

    __slots__ = ("entry_id", "messages", "results")

    def __init__(
        self,
        entry_id: int,
        results: dict[int, tuple[str, str] | None],
        messages: dict[int, ReportMessage] | None = None,
    ) -> None:
        self.entry_id = entry_id
        self.results = results
        self.messages = messages

    def __call__(self, err: ReportError | None, msg: ReportMessage) -> None:
        self.results[self.entry_id] = None if err is None else (err.name(), err.str())
        if err is None and self.messages is not None:
            self.messages[self.entry_id] = msg


class OutboxRelay:
    """Ships outbox entries to Kafka.

    Args:
        store: the outbox to drain.
        transport_factory: makes a transport (called again after every fatal
            producer error, with no budget; logged as ``producer_recreated``), e.g.
            ``lambda: KafkaTransport(config, connect_timeout=None)``.
        batch_size: entries claimed per round; bounds memory during long outages.
        lease_s: how long a claim lasts before another relay may take the entries.
        ack_timeout: how long a round waits for acks before rescheduling stragglers
            (and before a breaker hears of the round's failures).
        base_backoff_s / max_backoff_s: capped exponential backoff with equal jitter
            for retriable failures: after attempt n the entry waits a random time
            between cap/2 and cap, cap = min(max_backoff_s, base_backoff_s * 2**(n-1))
            (0.5 s doubling up to 60 s by default).
        max_attempts: after this many attempts a retriable failure is given up on too
            (1000 by default: about 12 h of backoff on average).
        max_age_s: a deadline: an entry still failing this long after it was
            committed is given up on (dead-lettered or parked). None: no deadline.
        listener: told each entry's final outcome (delivered, or given up).
        breaker: a :class:`~eventwire._breaker.CircuitBreaker`; while it is open the
            relay sends nothing (entries wait on disk) and probes Kafka instead.
            Unnamed, it is named ``"relay"`` (in logs and metrics). It hears of
            connectivity errors from librdkafka as they happen (also mid-round)
            and of each round's results, so it opens ``open_after_s`` into an outage.
            None (the default, and ``eventwire outbox relay``): no breaker.
        dead_letter: where permanent failures (and exhausted retries) go: a
            :class:`DeadLetterPolicy` (default ``<topic>.dlq``), or None to only
            park them in the outbox. If the dead-letter send fails too (Kafka
            unreachable), the entry is parked in the outbox instead.
        meter_provider: the OpenTelemetry MeterProvider for the relay's metrics;
            default: the global one, and no metrics work at all if that is not an
            SDK provider (see :mod:`eventwire.middleware.reliability_metrics`).
    """

    def __init__(
        self,
        store: OutboxStore,
        transport_factory: Callable[[], Transport],
        *,
        batch_size: int = 1000,
        lease_s: float = 60.0,
        ack_timeout: float = 30.0,
        base_backoff_s: float = 0.5,
        max_backoff_s: float = 60.0,
        max_attempts: int = 1000,
        max_age_s: float | None = None,
        idle_interval_s: float = 0.2,
        cleanup_after_s: float = 3600.0,
        dead_letter: DeadLetterPolicy | None = DeadLetterPolicy(),  # noqa: B008 - immutable
        listener: RelayListener | None = None,
        breaker: CircuitBreaker | None = None,
        meter_provider: MeterProvider | None = None,
    ) -> None:
        self.dead_letter = dead_letter
        self.listener = listener
        self.breaker = breaker
        self.store = store
        #: None unless a real MeterProvider is configured.
        self.metrics: RelayMetrics | None = make_relay_metrics(meter_provider, store)
        if breaker is not None:
            breaker.name = breaker.name or "relay"
            if self.metrics is not None:
                self.metrics.watch_breaker(breaker)
        self._factory = transport_factory
        self._fatal = False
        self._transport = self._attach(transport_factory())
        self.batch_size = batch_size
        self.lease_s = lease_s
        self.ack_timeout = ack_timeout
        self.base_backoff_s = base_backoff_s
        self.max_backoff_s = max_backoff_s
        self.max_attempts = max_attempts
        self.max_age_s = max_age_s
        self.idle_interval_s = idle_interval_s
        self.cleanup_after_s = cleanup_after_s
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{id(self):x}"
        self.stats = RelayStats()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_cleanup = time.monotonic()

    @property
    def transport(self) -> Transport:
        """The transport in use now (a new one after a fatal producer error)."""
        return self._transport

    def _on_fatal(self, code: str, reason: str) -> None:
        self._fatal = True

    def run_once(self) -> int:
        """Run one round; return how many entries were claimed."""
        if self.breaker is not None and not self.breaker.allow():
            return 0  # Kafka is unreachable: the backlog stays on disk
        claimed = self.store.claim_batch(self.batch_size, owner=self.owner, lease_s=self.lease_s)
        if not claimed:
            return 0
        results: dict[int, tuple[str, str] | None] = {}
        messages: dict[int, ReportMessage] = {}
        for item in claimed:
            self._send(item, results, messages)
        self._transport.flush(self.ack_timeout)
        self._settle(claimed, results, messages)
        self.stats.rounds += 1
        if self._fatal:
            self._restart_transport()
        return len(claimed)

    def _send(
        self,
        item: ClaimedEntry,
        results: dict[int, tuple[str, str] | None],
        messages: dict[int, ReportMessage] | None = None,
    ) -> None:
        e = item.entry
        deadline = time.monotonic() + self.ack_timeout
        while True:
            try:
                outcome = _Outcome(item.id, results, messages)
                self._transport.send(e.topic, e.key, e.value, list(e.headers), outcome)
                return
            except TransportQueueFull:
                if time.monotonic() > deadline:
                    results[item.id] = ("_QUEUE_FULL", "local queue stayed full")
                    return
                self._transport.wait_for_space(0.05)
            except SendRejected as exc:
                results[item.id] = (exc.code, exc.reason)
                if exc.fatal:
                    self._fatal = True
                return

    def _settle(
        self,
        claimed: list[ClaimedEntry],
        results: dict[int, tuple[str, str] | None],
        messages: dict[int, ReportMessage] | None = None,
    ) -> None:
        acked = [item for item in claimed if item.id in results and results[item.id] is None]
        if acked:
            self.store.mark_sent([item.id for item in acked])
            self.stats.sent += len(acked)
            if self.metrics is not None:
                self.metrics.count("delivered", [item.entry.topic for item in acked])
        self._feed_breaker(claimed, results)
        if self.listener is not None and messages is not None:
            for item in claimed:
                msg = messages.get(item.id)
                if msg is not None:
                    self.listener.delivered(item.entry.event_id, msg)
        given_up: list[tuple[ClaimedEntry, str, str]] = []
        retried: list[str] = []
        for item in claimed:
            if item.id in results and results[item.id] is None:
                continue
            code, reason = results.get(item.id) or ("_FLUSH_TIMEOUT", "no ack within ack_timeout")
            too_old = self.max_age_s is not None and time.time() - item.created_at > self.max_age_s
            if (
                classify(code) is ErrorClass.PERMANENT
                or item.attempts + 1 >= self.max_attempts
                or too_old
            ):
                given_up.append((item, code, reason))
            else:
                delay = self.backoff(item.attempts + 1)
                self.store.mark_retry(item.id, f"{code}: {reason}", time.time() + delay)
                self.stats.retried += 1
                retried.append(item.entry.topic)
        if retried and self.metrics is not None:
            self.metrics.count("retried", retried)
        if given_up:
            self._dead_letter(given_up)

    def _dead_letter(self, given_up: list[tuple[ClaimedEntry, str, str]]) -> None:
        """Send each given-up entry to its dead-letter topic; park what cannot be sent."""
        results: dict[int, tuple[str, str] | None] = {}
        if self.dead_letter is not None:
            now = time.time()
            for item, code, reason in given_up:
                e = item.entry
                headers = dead_letter_headers(
                    e.headers,
                    code=code,
                    reason=meaning(code, reason),
                    attempts=item.attempts + 1,
                    original_topic=e.topic,
                    first_failure_s=item.first_failed_at or now,
                    last_failure_s=now,
                )
                try:
                    dlq_topic = self.dead_letter.topic(e.topic)
                    self._transport.send(
                        dlq_topic, e.key, e.value, headers, _Outcome(item.id, results)
                    )
                except (SendRejected, TransportQueueFull, RoutingError) as exc:
                    results[item.id] = ("_DLQ_SEND_FAILED", str(exc))
            self._transport.flush(self.ack_timeout)
        for item, code, reason in given_up:
            if item.id in results and results[item.id] is None:
                self.store.mark_sent([item.id])
                self.stats.dead_lettered += 1
                outcome: RelayOutcome = "dead_lettered"
                event = "dead_lettered"
            else:
                self.store.park(item.id, f"{code}: {reason}")
                self.stats.parked += 1
                outcome, event = "parked", "outbox_parked"
            if self.metrics is not None:
                self.metrics.count(outcome, (item.entry.topic,))
            if self.listener is not None:
                self.listener.given_up(item.entry.event_id, code, reason)
            _log.error(
                event,
                event_id=item.entry.event_id,
                event_type=item.entry.event_type,
                topic=item.entry.topic,
                code=code,
                attempts=item.attempts + 1,
            )

    def _feed_breaker(
        self, claimed: list[ClaimedEntry], results: dict[int, tuple[str, str] | None]
    ) -> None:
        if self.breaker is None:
            return
        outcomes = [results.get(item.id, ("_FLUSH_TIMEOUT", "")) for item in claimed]
        if any(o is None for o in outcomes):
            self.breaker.record_success()
            return
        for outcome in outcomes:
            if outcome is not None:
                self.breaker.record_failure(*outcome)

    def backoff(self, attempts: int) -> float:
        """Seconds to wait before attempt ``attempts + 1``: capped exponential, equal jitter."""
        cap = min(self.max_backoff_s, self.base_backoff_s * 2 ** max(0, attempts - 1))
        return random.uniform(cap / 2, cap)

    def _restart_transport(self) -> None:
        _log.warning("producer_recreated", reason="fatal producer error")
        try:
            self._transport.close(0)
        except Exception:
            _log.exception("transport_close_failed")
        self._fatal = False
        self._transport = self._attach(self._factory())
        self.stats.transport_restarts += 1

    def _attach(self, transport: Transport) -> Transport:
        """Listen to ``transport``'s fatal errors, and feed its client errors to the breaker.

        librdkafka reports ``_ALL_BROKERS_DOWN``/``_TRANSPORT`` as they happen, so the
        breaker can open while a round still waits for acks, not only after it.
        """
        transport.on_fatal(self._on_fatal)
        on_error = getattr(transport, "on_error", None)
        if self.breaker is not None and on_error is not None:
            on_error(self.breaker.record_failure)
        return transport

    def run(self, stop: threading.Event | None = None) -> None:
        """Relay until ``stop`` (or :meth:`stop`) is set; idle rounds sleep briefly."""
        stop = stop or self._stop
        while not stop.is_set():
            try:
                moved = self.run_once()
            except Exception:
                _log.exception("outbox_round_failed")
                moved = 0
            if time.monotonic() - self._last_cleanup > 60:
                self._last_cleanup = time.monotonic()
                self.store.cleanup(self.cleanup_after_s)
            if not moved:
                stop.wait(self.idle_interval_s)

    def drain(self, timeout: float) -> bool:
        """Run rounds until nothing is claimable or ``timeout``; True if the outbox is empty."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.run_once() == 0:
                status = self.store.status()
                if status.pending == 0:
                    return True
                time.sleep(self.idle_interval_s)
        return self.store.status().pending == 0

    def start(self) -> OutboxRelay:
        """Run the relay in a background daemon thread."""
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self.run, name="eventwire-relay", daemon=True)
            self._thread.start()
        return self

    def stop(self, timeout: float = 30.0) -> None:
        """Stop the background thread (finishing its round) and close the transport.

        The relay's gauges (outbox depth and age, breaker state) stop reporting.
        """
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        if self.metrics is not None:
            self.metrics.close()
        self._transport.close(min(timeout, 5.0))
