"""The relay: moves committed outbox entries to Kafka, at least once, in per-key order.

Each round it claims a batch (a lease, so a crashed relay's entries come back),
sends every entry with its stored bytes and headers (so ``ce_id`` is the same on
every re-send), waits for the acks, and marks the acknowledged entries sent.
A round costs a fixed number of store transactions whatever its size: one claim,
one ``mark_sent`` for the acknowledged entries, and one release of the failed and
held-back ones (``mark_retry_many`` where the store has it; dead letters and parked
entries, rare, are marked one by one).
With the built-in stores, a round claims the next batch while its own acks come
in (the claim passes over the round's entries, which are leased to it, instead of
holding their keys back); the next round sends that batch only after this one is
settled, and holds back its entries of every key this round held back, so the
next batch is sent exactly as if it had been claimed after the settle. A relay
that stops, or pauses for its breaker, releases such a batch unattempted. In the
loops of :meth:`OutboxRelay.run` and :meth:`OutboxRelay.drain`, the acks of a
round whose next batch was claimed ahead are marked sent by the next round's
claim, in its transaction: a draining relay then makes one store transaction per
round.
A round's entries share one enqueue deadline (``ack_timeout``); once an entry of
a (topic, key) is not enqueued (the local queue stayed full, Kafka refused it,
or the producer hit a fatal error), the later entries of that key are held back
to a later round, unsent and with no backoff, so a key's events never overtake
one another. The same holds for a failed delivery report: once an entry's report
fails and the entry will be retried, the later entries of its key in that round
are not marked sent even if Kafka acknowledged them; they go out again after it.
(Such a gap -- a later event written while an earlier one failed -- comes from
librdkafka when a message times out; the log then holds the later event both
before and after the earlier one, and its *last* copy is in order.)
A held-back entry's claim does not count as an attempt (``max_attempts``).
Retriable failures are rescheduled with capped exponential backoff and jitter.
Permanent failures, and retriable ones past ``max_attempts`` or ``max_age_s``, go
to a dead-letter topic (``<topic>.dlq`` by default); they are parked in the
outbox only with ``dead_letter=None`` or when the dead-letter send fails. A crash
at any point loses nothing: at worst an entry whose ack arrived but whose
``mark_sent`` did not commit is sent again, with the same ``ce_id``, for
consumers to de-duplicate.

:meth:`OutboxRelay.run` survives errors of its store and its transport anywhere
in its loop (claiming, marking, cleaning up, the heartbeat, creating a
producer): it logs each distinct error once (``outbox_relay_failing``, then
``outbox_relay_recovered``), counts it, backs off (capped exponential, at most
:data:`MAX_ERROR_BACKOFF_S`) and tries again. :meth:`OutboxRelay.problem` says
when it cannot ship events (a publisher's ``flush()`` raises
:class:`RelayFailingError` with it), and every few seconds it writes a heartbeat
to the store with its last error, which ``eventwire outbox status`` shows.

Retry scheduling lives in the store (``next_attempt_at``), not in a retry
library's in-process loop, because it must survive restarts of the relay.

With a real MeterProvider the relay counts each outcome in
``eventwire_outbox_relayed_total{topic,outcome}``, each error of its loop in
``eventwire_outbox_relay_errors_total{step}``, and reports the store's depth,
oldest pending age and, if it has one, its breaker's state (see
:mod:`eventwire.observability.relay_metrics`).
"""

from __future__ import annotations

import contextlib
import inspect
import itertools
import math
import operator
import os
import random
import socket
import threading
import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, NoReturn, Protocol, TypeVar, cast

import msgspec

from eventwire import _fork
from eventwire._breaker import CircuitBreaker
from eventwire._errors import (
    ConfigurationError,
    ErrorClass,
    EventwireError,
    PublisherStateError,
    RoutingError,
)
from eventwire._policy import classify, meaning
from eventwire._timeouts import check_finite_seconds
from eventwire.observability.logging import get_logger
from eventwire.observability.relay_metrics import (
    RelayMetrics,
    RelayOutcome,
    RelayStep,
    make_relay_metrics,
)
from eventwire.outbox._relay_health import StepErrors
from eventwire.outbox.base import ClaimedEntry, OutboxStore
from eventwire.outbox.dead_letter import DeadLetterPolicy, dead_letter_headers
from eventwire.transports.base import (
    BaseTransport,
    ReportError,
    ReportMessage,
    SendRejected,
    TransportQueueFull,
    send_within,
)

if TYPE_CHECKING:
    from opentelemetry.metrics import MeterProvider

__all__ = [
    "MAX_ERROR_BACKOFF_S",
    "OutboxRelay",
    "RelayFailingError",
    "RelayListener",
    "RelayStats",
]

_log = get_logger("eventwire.outbox")
_T = TypeVar("_T")

#: The longest pause between two tries of a relay loop whose store or transport fails.
MAX_ERROR_BACKOFF_S = 10.0
#: Seconds between two heartbeats written to the store by :meth:`OutboxRelay.run`.
HEARTBEAT_INTERVAL_S = 5.0
#: Seconds between two deletions of long-sent entries by :meth:`OutboxRelay.run`.
CLEANUP_INTERVAL_S = 60.0
#: Relay-internal result of an entry not tried this round because an earlier entry
#: of its (topic, key) was not enqueued; it goes out in a later round, in order.
_HELD_BACK = "_HELD_BACK"
#: Results of sends a stopping relay made: refused by its closed producer or purged
#: by close(); not attempts of the entry (it goes out with the next relay).
_STOPPED_CODES = frozenset({"_DESTROY", "_PURGE_QUEUE", "_PURGE_INFLIGHT"})
#: The broker refused the record *batch* an entry went in as larger than the topic's
#: ``max.message.bytes`` (the limit applies to a batch): an entry batched with an
#: oversized one gets it too. Such an entry is sent again alone before it is given up.
_BATCH_TOO_LARGE = "MSG_SIZE_TOO_LARGE"
#: Steps whose failure stops events from moving (see :meth:`OutboxRelay.problem`).
_BLOCKING_STEPS = frozenset({"round"})
#: The health state of a relay whose last round delivered nothing and has entries to
#: try again (Kafka unreachable, or refusing for a while): shown in its heartbeat, not a
#: failure of the loop (see :meth:`OutboxRelay.problem`).
_DELIVERY = "delivery"
_NOT_DELIVERING_HINT = (
    "the events wait in the outbox and go out once Kafka takes them; check the brokers "
    "and the relay's Kafka config"
)


#: The result of an entry whose report did not come within ``ack_timeout``.
_NO_ACK = ("_FLUSH_TIMEOUT", "no ack within ack_timeout")
#: A claimed entry's row id (for the ids in hand, built in C per round).
_ID = operator.attrgetter("id")


class RelayFailingError(EventwireError):
    """The outbox relay cannot ship events: its store or producer fails, or its thread died.

    Nothing is lost: the events stay committed in the outbox and are sent once a
    relay runs again. ``reason`` says what fails (the relay's last error).
    ``Publisher.flush()``/``close()`` with an outbox raise it instead of returning
    as if the relay were merely slow.
    """

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(
            f"the outbox relay is failing: {reason}. The events are safe in the outbox "
            "and are sent once a relay runs again; fix the database or Kafka connection "
            "(see `eventwire outbox status` and the outbox_relay_failing log)."
        )


@dataclass
class RelayStats:
    """Running totals of one relay."""

    rounds: int = 0
    sent: int = 0
    retried: int = 0
    dead_lettered: int = 0
    parked: int = 0
    transport_restarts: int = 0
    #: Entries put back untried because an earlier entry of their key was not enqueued.
    held_back: int = 0
    #: Errors of the relay loop's steps (store or transport), each retried.
    errors: int = 0


class RelayListener(Protocol):
    """Told each entry's final outcome (e.g. an in-process publisher settling handles).

    ``row_id`` is the outbox row (:attr:`ClaimedEntry.id`): several publishes with
    the same ``event_id`` may share one row, and one ``event_id`` may have several
    rows over time, so the row, not the event id, identifies what was delivered.
    """

    def delivered(self, row_id: int, event_id: str, msg: ReportMessage) -> None:
        """Kafka acknowledged the event of outbox row ``row_id`` on its own topic."""
        ...

    def given_up(self, row_id: int, event_id: str, code: str, reason: str) -> None:
        """The event was dead-lettered or parked: it will not reach its topic as is."""
        ...


class _Outcome(msgspec.Struct, gc=False):
    """The delivery callback of one entry (one object, no closure).

    A msgspec Struct, built in C (one per row sent), and not tracked by the garbage
    collector: it refers only to the round's two dicts, which never refer back to it.
    """

    entry_id: int
    results: dict[int, tuple[str, str] | None]
    messages: dict[int, ReportMessage] | None = None

    def __call__(self, err: ReportError | None, msg: ReportMessage) -> None:
        self.results[self.entry_id] = None if err is None else (err.name(), err.str())
        if err is None and self.messages is not None:
            self.messages[self.entry_id] = msg


class _ClaimAhead(Protocol):
    def __call__(
        self,
        limit: int,
        *,
        owner: str,
        lease_s: float,
        in_flight: Collection[int],
        sent: Sequence[int] = (),
    ) -> list[ClaimedEntry]: ...


def _claim_ahead(store: OutboxStore) -> _ClaimAhead | None:
    """The store's claim that passes over entries in flight and marks others sent, or None.

    Both built-in stores have it: one transaction marks the last round's acked
    entries sent and claims the next batch, while this round's acks come in, so
    the store's work overlaps Kafka's instead of following it.

    None for a subclass that overrides ``claim_batch`` or ``mark_sent`` (e.g. to
    gate, count or fail them): its relay claims once per round, after the settle,
    and marks each round's acks right away, through its own methods.
    """
    cls = type(store)
    if not getattr(cls, "_CLAIM_AHEAD", False):
        return None
    definer = next((c for c in cls.__mro__ if "_claim_passing" in vars(c)), None)
    if definer is None or any(
        getattr(cls, name) is not vars(definer).get(name) for name in ("claim_batch", "mark_sent")
    ):
        return None
    return cast("_ClaimAhead", store._claim_passing)  # type: ignore[attr-defined]


#: The largest ``batch_size``: a round's entries are held in memory (and a larger
#: number overflows SQLite's fetch size, failing every round).
MAX_BATCH_SIZE = 1_000_000


def _check_settings(
    *, batch_size: object, max_attempts: object, max_age_s: object, **seconds: object
) -> None:
    """Refuse a relay setting that would stall or break it, naming it (ConfigurationError).

    ``batch_size=0`` would claim nothing forever, ``ack_timeout=0`` re-send every event
    each round, and a NaN or infinite time break the waits; the checks match
    ``eventwire outbox relay``'s settings.
    """
    for name, value in (("batch_size", batch_size), ("max_attempts", max_attempts)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigurationError(
                f"OutboxRelay {name} must be a whole number >= 1, not {value!r}"
            )
    if cast("int", batch_size) > MAX_BATCH_SIZE:
        raise ConfigurationError(
            f"OutboxRelay batch_size must be in 1..{MAX_BATCH_SIZE:_} (entries claimed per "
            f"round, held in memory), not {batch_size!r}"
        )
    if max_age_s is not None:
        seconds["max_age_s"] = max_age_s
    for name, value in seconds.items():
        check_finite_seconds(value, f"OutboxRelay {name}", positive=name not in _MAY_BE_ZERO)


#: Relay times that may be 0: no sleep between idle rounds; delete sent rows at once;
#: retry at once.
_MAY_BE_ZERO = frozenset({"idle_interval_s", "cleanup_after_s", "base_backoff_s", "max_backoff_s"})


class OutboxRelay:
    """Ships outbox entries to Kafka.

    Args:
        store: the outbox to drain.
        transport_factory: makes a transport (called again after every fatal
            producer error, with no budget; logged as ``producer_recreated``), e.g.
            ``lambda: KafkaTransport(config, connect_timeout=None)``.
        batch_size: entries claimed per round (1 to :data:`MAX_BATCH_SIZE`, a
            million); bounds memory during long outages.
        lease_s: how long a claim lasts before another relay may take the entries.
        ack_timeout: how long a round waits for acks before rescheduling stragglers
            (and before a breaker hears of the round's failures); also how long
            the round's sends together may wait for room in a full local queue.
        base_backoff_s / max_backoff_s: capped exponential backoff with equal jitter
            for retriable failures: after attempt n the entry waits a random time
            between cap/2 and cap, cap = min(max_backoff_s, base_backoff_s * 2**(n-1))
            (0.5 s doubling up to 60 s by default).
        max_attempts: after this many attempts a retriable failure is given up on too
            (1000 by default: about 12 h of backoff on average).
        max_age_s: a deadline: an entry still failing this long after it was
            committed (by the store's clock) is given up on (dead-lettered or
            parked). None: no deadline.
        idle_interval_s: how long :meth:`run` sleeps after a round found nothing.
        cleanup_after_s: sent entries older than this are deleted (checked every
            :data:`CLEANUP_INTERVAL_S` by :meth:`run`).
        listener: told each entry's final outcome (delivered, or given up), by
            outbox row (see :class:`RelayListener`).
        breaker: a :class:`~eventwire._breaker.CircuitBreaker`; while it is open the
            relay sends nothing (entries wait on disk) and probes Kafka instead.
            Unnamed, it is named ``"relay"`` (in logs and metrics). It hears of
            connectivity errors from librdkafka as they happen (also mid-round)
            and of each round's results, so it opens ``open_after_s`` into an outage.
            None (the default): no breaker. ``eventwire outbox relay`` passes one
            when its settings turn it on (``breaker = true``, ``--breaker``), and
            ``Publisher(outbox=...)`` always passes one.
        dead_letter: where permanent failures (and exhausted retries) go: a
            :class:`DeadLetterPolicy` (default ``<topic>.dlq``), or None to only
            park them in the outbox. If the dead-letter send fails too (Kafka
            unreachable), the entry is parked in the outbox instead.
        meter_provider: the OpenTelemetry MeterProvider for the relay's metrics;
            default: the global one, and no metrics work at all if that is not an
            SDK provider (see :mod:`eventwire.observability.relay_metrics`).
    """

    def __init__(
        self,
        store: OutboxStore,
        transport_factory: Callable[[], BaseTransport],
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
        _check_settings(
            batch_size=batch_size,
            max_attempts=max_attempts,
            lease_s=lease_s,
            ack_timeout=ack_timeout,
            base_backoff_s=base_backoff_s,
            max_backoff_s=max_backoff_s,
            max_age_s=max_age_s,
            idle_interval_s=idle_interval_s,
            cleanup_after_s=cleanup_after_s,
        )
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
        #: Guards _stopping against a replacement producer being made meanwhile.
        self._restart_lock = threading.Lock()
        #: True once stop() began: no new producer is made, and what the round still
        #: sends is refused by the closed one and put back unattempted.
        self._stopping = False
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
        #: When :meth:`stop` must be done (the thread's last store calls are bounded by it).
        self._stop_deadline: float | None = None
        self._thread: threading.Thread | None = None
        self._last_cleanup = time.monotonic()
        self._last_heartbeat = -math.inf  # the first loop writes one
        #: Inside run(): heartbeats are written while a round waits for its acks too.
        self._beating = False
        #: The steps of the loop failing now; read by problem() from other threads.
        self._health = StepErrors(self.owner, self._count_error)
        self._died: str | None = None
        #: The store's claim that passes over a batch in flight, if it has one.
        self._claim_ahead = _claim_ahead(store)
        #: The next batch, claimed while the last round's acks came in, and the
        #: groups that round held back (the batch's entries of them are held back too).
        self._ahead: list[ClaimedEntry] = []
        self._ahead_blocked: set[tuple[str, bytes]] = set()
        #: The groups the last _settle held back.
        self._settled_blocked: set[tuple[str, bytes]] = set()
        #: The acked entries of the last round (and their messages, for a listener),
        #: not yet marked sent: the next claim ahead marks them in its transaction.
        self._unmarked: list[ClaimedEntry] = []
        self._unmarked_messages: dict[int, ReportMessage] | None = None
        #: Whether the round settling now leaves its acks to the next claim ahead.
        self._defer_marks = False
        #: The ids of the entries whose outcome this relay has yet to tell its
        #: listener (see :meth:`in_hand`); replaced whole, never mutated in place.
        self._in_hand: frozenset[int] = frozenset()
        #: Entries whose record batch the broker refused as too large: each goes out
        #: again in a record batch of its own (_send_all); refused alone, it is given up.
        self._alone: set[int] = set()
        #: True in a forked child: the relay (its producer, its leases) is the parent's.
        self._inherited = False
        _fork.register(self)

    def __reduce__(self) -> NoReturn:
        _fork.refuse_pickling(
            self,
            "a Kafka producer, its store's connection and its thread",
            "Create the relay, and its store, in the process that runs it.",
        )

    def _after_fork_in_child(self) -> None:
        """In a forked child: give up this copy of the parent's relay.

        librdkafka's threads do not survive a fork, and the batches this relay
        claimed are the parent's to send and mark. Every later use raises
        :class:`PublisherStateError`; :meth:`stop` releases nothing and leaves the
        parent's producer alone (see :mod:`eventwire._fork`).
        """
        self._inherited = True
        self._thread = None  # the parent's: problem() must not report it dead here
        _fork.abandon(self._transport)

    def _check_own(self) -> None:
        if self._inherited:
            raise PublisherStateError(
                "this OutboxRelay was created before os.fork() and cannot be used in the "
                "child process (librdkafka's threads do not survive a fork, and its "
                "claimed batches are the parent's). Create the relay in the child, e.g. "
                "in a post-fork hook; the outbox store may be inherited"
            )

    @property
    def transport(self) -> BaseTransport:
        """The transport in use now (a new one after a fatal producer error)."""
        return self._transport

    def _on_fatal(self, code: str, reason: str) -> None:
        self._fatal = True

    # -- one round ------------------------------------------------------------------------
    def run_once(self) -> int:
        """Run one round; return how many entries were claimed.

        A transport left unusable by a fatal error is replaced first. The entries
        Kafka acknowledged are marked sent before this returns.

        Raises:
            Exception: whatever the store (claim, mark) or the transport factory
                raises; :meth:`run` survives it, a caller of ``run_once`` must too.
                Entries claimed by a failed round come back when their lease ends.
            PublisherStateError: the relay was created before ``os.fork()`` (this
                is the child): create one in the child.
        """
        self._check_own()
        return self._round(defer_marks=False)

    def _round(self, *, defer_marks: bool) -> int:
        """One round (see :meth:`run_once`).

        ``defer_marks`` (the loops of :meth:`run` and :meth:`drain`): when the next
        batch was claimed ahead, this round's acked entries are marked sent by the
        next round's claim ahead, in its transaction, while that round's acks come
        in. Until then they stay leased to this relay; a crash in between sends
        them again (same ``ce_id``), as a crash between an ack and its mark always
        could. Whatever stops the loop marks them first (:meth:`_release_ahead`).
        """
        if self._stopping:
            self._release_ahead()
            return 0
        if self._fatal:
            self._restart_transport()
        if self.breaker is not None and not self.breaker.allow():
            self._release_ahead()
            return 0  # Kafka is unreachable: the backlog stays on disk
        # a batch claimed ahead goes out with the groups its predecessor held back held
        claimed, held = self._ahead, self._ahead_blocked
        self._ahead, self._ahead_blocked = [], set()
        if not claimed:
            held = set()
            self._mark_unmarked()  # its claim ahead failed: marked before claiming anew
            claimed = self.store.claim_batch(
                self.batch_size, owner=self.owner, lease_s=self.lease_s
            )
        if not claimed:
            return 0
        if self.listener is not None:
            # in hand before any of them can be marked sent (the claim ahead below marks
            # the last round's acks), until the round has told the listener their outcome
            self._in_hand = frozenset(map(_ID, itertools.chain(claimed, self._unmarked)))
        try:
            return self._send_and_settle(claimed, held, defer_marks=defer_marks)
        finally:
            self._hold_in_hand()

    def _send_and_settle(
        self, claimed: list[ClaimedEntry], held: set[tuple[str, bytes]], *, defer_marks: bool
    ) -> int:
        """Send a claimed batch, wait for its acks, and settle it (see :meth:`_round`)."""
        results: dict[int, tuple[str, str] | None] = {}
        # the acks' messages are kept only for a listener
        messages: dict[int, ReportMessage] | None = {} if self.listener is not None else None
        all_enqueued = self._send_all(claimed, results, messages, held)
        ahead: list[ClaimedEntry] = []
        try:
            # a round that held entries back (full local queue, refusals) claims no
            # batch ahead: its entries of the held keys would only be held back too
            ahead = self._claim_next(claimed) if all_enqueued else []
            self._mark_unmarked()  # no claim ahead took them: on their own, as acks come in
            self._wait_for_acks()
            self._settled_blocked = set()
            self._defer_marks = defer_marks and bool(ahead)
            self._settle(claimed, results, messages)
        except BaseException:
            with contextlib.suppress(Exception):  # else its lease ends
                self._release(ahead)
            raise
        if ahead:
            self._ahead, self._ahead_blocked = ahead, self._settled_blocked
        self.stats.rounds += 1
        return len(claimed)

    def _wait_for_acks(self) -> None:
        """Wait up to ``ack_timeout`` for the round's reports; under :meth:`run`, beating.

        A round whose broker does not answer waits the whole ``ack_timeout`` (30 s by
        default). The heartbeat keeps its :data:`HEARTBEAT_INTERVAL_S` meanwhile, so
        ``eventwire outbox status`` shows a relay that waits, not a dead one.
        """
        if not self._beating:
            self._transport.flush(self.ack_timeout)
            return
        deadline = time.monotonic() + self.ack_timeout
        while True:
            began = time.monotonic()
            left = deadline - began
            piece = max(0.0, min(left, HEARTBEAT_INTERVAL_S))
            if self._transport.flush(piece) == 0 or left <= HEARTBEAT_INTERVAL_S:
                return
            if time.monotonic() - began < piece / 2:
                # A transport whose flush() does not wait (one holding reports it will not
                # serve yet, as MemoryTransport.pause does): waiting here would only spin.
                return
            self._beat_if_due()

    def _beat_if_due(self) -> None:
        now = time.monotonic()
        if now - self._last_heartbeat >= HEARTBEAT_INTERVAL_S:
            self._last_heartbeat = now
            self._step("heartbeat", self._heartbeat)

    def _hold_in_hand(self) -> None:
        """Keep in hand only what is still to be told: the batch claimed ahead, unmarked acks."""
        if self.listener is not None:
            self._in_hand = frozenset(map(_ID, itertools.chain(self._ahead, self._unmarked)))

    def in_hand(self) -> frozenset[int]:
        """The ids of the entries whose outcome this relay has yet to tell its listener.

        Kept only for a relay with a listener (else empty).

        Claimed and not yet settled, or acknowledged and not yet marked sent (or
        marked, with the listener not yet told). A listener that also asks the
        store what became of its rows (the publisher's reconcile, from another
        thread) must leave these to the relay: one marked ``sent`` is reported with
        its partition and offset right after the mark. Read the store first and
        this second: an entry marked sent before the read is in this set until
        its report is made. Safe to call from any thread.
        """
        return self._in_hand

    def _claim_next(self, sent: list[ClaimedEntry]) -> list[ClaimedEntry]:
        """Claim the next batch while ``sent``'s acks come in; [] if not worth it or failing.

        Only after a full batch (more is likely waiting), with a store that can pass
        over the entries in flight. A failing claim is not this round's error: the
        next round's own claim meets (and reports) it.
        """
        claim = self._claim_ahead
        if claim is None or len(sent) < self.batch_size or self._fatal or self._stopping:
            return []
        unmarked = self._unmarked
        try:
            batch = claim(
                self.batch_size,
                owner=self.owner,
                lease_s=self.lease_s,
                in_flight=[item.id for item in sent],
                sent=[item.id for item in unmarked],
            )
        except Exception:
            return []  # the last round's acks stay unmarked: marked on their own next
        if unmarked:
            self._marked(unmarked, self._unmarked_messages)
        return batch

    def _mark_unmarked(self) -> None:
        """Mark the last round's acked entries sent now, if no claim ahead did."""
        if self._unmarked:
            self.store.mark_sent([item.id for item in self._unmarked])
            self._marked(self._unmarked, self._unmarked_messages)

    def _marked(self, acked: list[ClaimedEntry], messages: dict[int, ReportMessage] | None) -> None:
        """Count entries marked sent and tell the listener (in claim order)."""
        self._unmarked, self._unmarked_messages = [], None
        self.stats.sent += len(acked)
        if self.metrics is not None:
            self.metrics.count("delivered", [item.entry.topic for item in acked])
        if self.listener is not None and messages is not None:
            for item in acked:
                msg = messages.get(item.id)
                if msg is not None:
                    self.listener.delivered(item.id, item.entry.event_id, msg)

    def _release_ahead(self) -> None:
        """Put back, unattempted, a batch claimed ahead and not sent (a stop, an open breaker).

        Its entries are claimable again at once; otherwise they would wait for
        their lease to end. The last round's acked entries are marked sent first.
        Raises what the store raises (the leases then end).
        """
        try:
            self._mark_unmarked()
        finally:
            ahead, self._ahead, self._ahead_blocked = self._ahead, [], set()
            try:
                self._release(ahead)
            finally:
                self._hold_in_hand()

    def _release(self, batch: list[ClaimedEntry]) -> None:
        if batch:
            note = f"{_HELD_BACK}: claimed ahead, not sent"
            self._mark_retries([(item.id, note, 0.0, False) for item in batch])

    def _send_all(
        self,
        claimed: list[ClaimedEntry],
        results: dict[int, tuple[str, str] | None],
        messages: dict[int, ReportMessage] | None,
        held: set[tuple[str, bytes]] | None = None,
    ) -> bool:
        """Enqueue a round's entries in claim order, never letting a key's entries overtake.

        Returns True if every entry was enqueued.

        The round shares one enqueue deadline (``ack_timeout`` from now). Once an
        entry is not enqueued (queue still full at the deadline, or refused), the
        later entries of its (topic, key) are held back (``_HELD_BACK``), and after a
        fatal producer error all the rest are. The entries of the groups ``held``
        (those the previous round held back, when this batch was claimed ahead of
        its settle) are held back from the start.
        """
        deadline = time.monotonic() + self.ack_timeout
        stopped: set[tuple[str, bytes]] = set(held) if held else set()
        alone = self._alone
        for item in claimed:
            e = item.entry
            group = (e.topic, e.key or b"")  # None and b"" share one order
            if self._fatal or group in stopped:
                results[item.id] = (_HELD_BACK, "an earlier event of its key was not sent")
            elif alone and item.id in alone:
                # In a record batch of its own (its batch was refused as too large): what
                # is queued goes out first, and nothing joins it until it is acknowledged.
                self._transport.flush(self.ack_timeout)
                sent = self._send(item, results, messages, deadline)
                self._transport.flush(self.ack_timeout)
                if not sent:
                    stopped.add(group)
            elif not self._send(item, results, messages, deadline):
                stopped.add(group)
        return not stopped and not self._fatal

    def _send(
        self,
        item: ClaimedEntry,
        results: dict[int, tuple[str, str] | None],
        messages: dict[int, ReportMessage] | None,
        deadline: float,
    ) -> bool:
        """Enqueue one entry, waiting for queue space until ``deadline``; True if enqueued.

        The common case is one call to the transport: no closure, no wait.
        """
        e = item.entry
        outcome = _Outcome(item.id, results, messages)
        try:
            self._transport.send(e.topic, e.key, e.value, list(e.headers), outcome)
        except TransportQueueFull:
            return self._send_when_room(item, outcome, results, deadline)
        except SendRejected as exc:
            return self._refused(item, exc, results)
        return True

    def _send_when_room(
        self,
        item: ClaimedEntry,
        outcome: _Outcome,
        results: dict[int, tuple[str, str] | None],
        deadline: float,
    ) -> bool:
        """Enqueue one entry once the full queue has room, until ``deadline``; True if enqueued."""
        e = item.entry
        transport = self._transport
        refused: SendRejected | None = None

        def send() -> bool:
            nonlocal refused
            try:
                transport.send(e.topic, e.key, e.value, list(e.headers), outcome)
            except TransportQueueFull:
                return False
            except SendRejected as exc:
                refused = exc
            return True

        if not send_within(send, transport.wait_for_space, deadline):
            results[item.id] = ("_QUEUE_FULL", "local queue stayed full")
            return False
        if refused is not None:
            return self._refused(item, refused, results)
        return True

    def _refused(
        self, item: ClaimedEntry, exc: SendRejected, results: dict[int, tuple[str, str] | None]
    ) -> bool:
        """Record a send the transport refused (a fatal refusal stops the round); False.

        A refusal as too large at send time judged the record alone (librdkafka's
        ``message.max.bytes``): permanent, unlike the broker's refusal of a batch.
        """
        results[item.id] = (exc.code, exc.reason)
        if exc.code == _BATCH_TOO_LARGE:
            self._alone.add(item.id)
        if exc.fatal:
            self._fatal = True
        return False

    def _settle(
        self,
        claimed: list[ClaimedEntry],
        results: dict[int, tuple[str, str] | None],
        messages: dict[int, ReportMessage] | None = None,
    ) -> None:
        """Mark the acked entries sent (telling the listener); reschedule or give up the rest.

        Per (topic, key), in claim order: once an entry failed and will be tried
        again, the later entries of its key are held back too, acknowledged or not.
        While ``_defer_marks`` is set (by :meth:`_round`), the acked entries are
        left to the next claim ahead to mark.
        """
        self._feed_breaker(claimed, results)
        acked: list[ClaimedEntry] = []
        failed: list[ClaimedEntry] = []
        blocked: set[tuple[str, bytes]] = set()
        for item in claimed:
            group = (item.entry.topic, item.entry.key or b"")
            result = results.get(item.id, _NO_ACK)
            if group in blocked and (result is None or result[0] == _HELD_BACK):
                # written (or not) after an earlier event of its key failed: it goes
                # out again after that one, so its last copy in the log is in order
                results[item.id] = (_HELD_BACK, "an earlier event of its key failed")
                failed.append(item)
            elif result is None:
                acked.append(item)
            else:
                failed.append(item)
                if result[0] == _HELD_BACK or not self._gives_up(item, result[0]):
                    blocked.add(group)
        self._settled_blocked = blocked
        if self._alone and acked:
            self._alone.difference_update(item.id for item in acked)
        if acked and self._defer_marks:
            self._unmarked, self._unmarked_messages = acked, messages
        elif acked:
            self.store.mark_sent([item.id for item in acked])
            self._marked(acked, messages)
        retrying, held = self._reschedule(failed, results)
        if acked or (retrying is None and not held):
            # delivered, or nothing left to try again (given up: dead-lettered, parked)
            self._health.clear(_DELIVERY)
        elif retrying is not None:
            self._health.note(
                _DELIVERY,
                f"no event of the last round was delivered ({retrying}), so they wait "
                "in the outbox",
                _NOT_DELIVERING_HINT,
            )

    def _reschedule(
        self, failed: list[ClaimedEntry], results: dict[int, tuple[str, str] | None]
    ) -> tuple[str | None, bool]:
        """Retry each failed entry after a backoff, or give it up; put held-back ones back.

        A held-back entry, and one a stopping relay could not send, was never
        attempted: it is claimable again at once (after its key's blocker) and its
        claim does not count toward ``max_attempts``. Returns the first error
        (``"code: reason"``) of an entry to be tried again after a backoff, if any,
        and whether any entry was put back unattempted.
        """
        given_up: list[tuple[ClaimedEntry, str, str]] = []
        retried: list[str] = []
        first_retry: str | None = None
        held = False
        marks: list[tuple[int, str, float, bool]] = []
        for item in failed:
            code, reason = results.get(item.id) or _NO_ACK
            if code == _HELD_BACK or (self._stopping and code in _STOPPED_CODES):
                marks.append((item.id, f"{code}: {reason}", 0.0, False))
                self.stats.held_back += 1
                held = True
            elif self._gives_up(item, code):
                self._alone.discard(item.id)
                given_up.append((item, code, reason))
            elif code == _BATCH_TOO_LARGE:  # its batch, maybe not it: again alone, at once
                self._alone.add(item.id)
                marks.append((item.id, f"{code}: {reason}", 0.0, False))
                self.stats.retried += 1
            else:
                marks.append((item.id, f"{code}: {reason}", self.backoff(item.attempts + 1), True))
                self.stats.retried += 1
                retried.append(item.entry.topic)
                first_retry = first_retry or f"{code}: {reason}"
        self._mark_retries(marks)
        if retried and self.metrics is not None:
            self.metrics.count("retried", retried)
        if given_up:
            self._dead_letter(given_up)
        return first_retry, held

    def _mark_retries(self, marks: list[tuple[int, str, float, bool]]) -> None:
        """Release these leases (``(id, error, delay_s, counted)``) as ``mark_retry`` does.

        In one transaction if the store has ``mark_retry_many`` (both built-in
        stores do), else one by one.
        """
        if not marks:
            return
        owner = self.owner
        many = getattr(self.store, "mark_retry_many", None)
        if many is not None:
            many(marks, owner=owner)
            return
        for entry_id, error, delay_s, counted in marks:
            self.store.mark_retry(entry_id, error, delay_s, counted=counted, owner=owner)

    def _gives_up(self, item: ClaimedEntry, code: str) -> bool:
        """True for a permanent failure, or a retriable one past max_attempts/max_age_s.

        A broker's MSG_SIZE_TOO_LARGE is permanent only for an entry sent alone: it
        refuses a whole record batch, so an entry batched with an oversized one gets
        it too, and is sent again alone first (not counted as an attempt).
        """
        if code == _BATCH_TOO_LARGE and item.id not in self._alone:
            return False
        too_old = self.max_age_s is not None and item.age_s > self.max_age_s
        return (
            classify(code) is ErrorClass.PERMANENT
            or item.attempts + 1 >= self.max_attempts
            or too_old
        )

    def _dead_letter(self, given_up: list[tuple[ClaimedEntry, str, str]]) -> None:
        """Send each given-up entry to its dead-letter topic; park what cannot be sent.

        Except while stopping: a dead letter the closing producer did not send
        (refused or purged) is put back, unattempted, for the next relay to give up
        again, not parked. A close that timed out has already told the publisher
        the entry waits in the outbox, and a parked entry waits for nobody.
        """
        results = self._send_dead_letters(given_up) if self.dead_letter is not None else {}
        if self._stopping and self.dead_letter is not None:
            back = [g for g in given_up if results.get(g[0].id, _NO_ACK) is not None]
            note = f"{_HELD_BACK}: stopped before its dead letter was sent"
            self._mark_retries([(item.id, note, 0.0, False) for item, _, _ in back])
            self.stats.held_back += len(back)
            given_up = [g for g in given_up if results.get(g[0].id, _NO_ACK) is None]
        for item, code, reason in given_up:
            if item.id in results and results[item.id] is None:
                self.store.mark_sent([item.id], dead_lettered=f"{code}: {reason}")
                self.stats.dead_lettered += 1
                outcome: RelayOutcome = "dead_lettered"
                event = "dead_lettered"
            elif self.store.park(item.id, f"{code}: {reason}", owner=self.owner):
                self.stats.parked += 1
                outcome, event = "parked", "outbox_parked"
            else:  # another relay took the entry over (our round outlasted the lease)
                continue
            if self.metrics is not None:
                self.metrics.count(outcome, (item.entry.topic,))
            if self.listener is not None:
                self.listener.given_up(item.id, item.entry.event_id, code, reason)
            _log.error(
                event,
                event_id=item.entry.event_id,
                event_type=item.entry.event_type,
                topic=item.entry.topic,
                code=code,
                attempts=item.attempts + 1,
            )

    def _send_dead_letters(
        self, given_up: list[tuple[ClaimedEntry, str, str]]
    ) -> dict[int, tuple[str, str] | None]:
        """Send the dead letters and wait for their acks; each entry's result."""
        assert self.dead_letter is not None
        results: dict[int, tuple[str, str] | None] = {}
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
                self._transport.send(dlq_topic, e.key, e.value, headers, _Outcome(item.id, results))
            except (SendRejected, TransportQueueFull, RoutingError) as exc:
                results[item.id] = ("_DLQ_SEND_FAILED", str(exc))
        self._wait_for_acks()
        return results

    def _feed_breaker(
        self, claimed: list[ClaimedEntry], results: dict[int, tuple[str, str] | None]
    ) -> None:
        if self.breaker is None:
            return
        outcomes = [results.get(item.id, _NO_ACK) for item in claimed]
        if any(o is None for o in outcomes):
            self.breaker.record_success()
            return
        for outcome in outcomes:
            if outcome is not None and outcome[0] != _HELD_BACK:
                self.breaker.record_failure(*outcome)

    def backoff(self, attempts: int) -> float:
        """Seconds to wait before attempt ``attempts + 1``: capped exponential, equal jitter."""
        # The exponent is capped first: 2.0 ** 1024 overflows a float (attempt 1025 of an
        # entry with a large max_attempts, or the 1025th failing loop of a long outage),
        # and any exponent past 64 is past every cap anyway.
        cap = min(self.max_backoff_s, self.base_backoff_s * 2.0 ** min(max(0, attempts - 1), 64))
        return random.uniform(cap / 2, cap)

    def _restart_transport(self) -> None:
        """Replace the transport after a fatal error; raises what the factory raises.

        Never once :meth:`stop` has begun: a producer made then would never be closed.
        """
        with self._restart_lock:
            if self._stopping:
                return
            _log.warning("producer_recreated", reason="fatal producer error")
            try:
                self._transport.close(0)
            except Exception:
                _log.exception("transport_close_failed")
            self._transport = self._attach(self._factory())
            self._fatal = False
            self.stats.transport_restarts += 1

    def _attach(self, transport: BaseTransport) -> BaseTransport:
        """Listen to ``transport``'s fatal errors, and feed its client errors to the breaker.

        librdkafka reports ``_ALL_BROKERS_DOWN``/``_TRANSPORT`` as they happen, so the
        breaker can open while a round still waits for acks, not only after it.
        """
        transport.on_fatal(self._on_fatal)
        if self.breaker is not None:
            transport.on_error(self.breaker.record_failure)
        return transport

    # -- the loop ---------------------------------------------------------------------------
    def run(self, stop: threading.Event | None = None) -> None:
        """Relay until ``stop`` (or :meth:`stop`) is set; idle rounds sleep briefly.

        Never returns early on an error of the store or the transport (any
        ``Exception``): the failing step is logged (once per distinct error),
        counted (``stats.errors``, ``eventwire.outbox.relay_errors``), reported by
        :meth:`problem` and the heartbeat, and tried again after a capped
        exponential backoff. Every :data:`HEARTBEAT_INTERVAL_S` it writes a
        heartbeat (owner, last error) to the store; once stopped it deletes it (a
        relay that dies instead leaves it, which ``outbox status`` shows as stale).
        Raises PublisherStateError at once in a forked child (see :meth:`run_once`).
        """
        self._check_own()
        stop = stop or self._stop
        failing_loops = 0
        self._beating = True
        try:
            while not stop.is_set():
                errors = self.stats.errors
                moved = self._step("round", self._run_round)  # (beats while it waits for acks)
                now = time.monotonic()
                if now - self._last_cleanup > CLEANUP_INTERVAL_S:
                    self._last_cleanup = now
                    self._step("cleanup", self._cleanup)
                self._beat_if_due()
                if self.stats.errors > errors:
                    failing_loops += 1
                    stop.wait(min(MAX_ERROR_BACKOFF_S, self.backoff(failing_loops)))
                else:
                    failing_loops = 0
                    if not moved:
                        stop.wait(self.idle_interval_s)
        finally:
            self._beating = False
        self._step("round", self._release_ahead)
        self._step("heartbeat", self._forget_heartbeat)

    def _forget_heartbeat(self) -> None:
        """A relay stopped on purpose leaves no heartbeat for ``outbox status`` to call stale.

        (A relay that dies keeps its last one: STALE then says something is wrong.)
        Stores without ``forget_relay`` keep it until ``cleanup`` deletes it a day on.
        Stopped by :meth:`stop`, the delete waits no longer than what is left of its
        timeout (a store whose ``forget_relay`` takes ``timeout_s``); past it the
        heartbeat is kept, and ``outbox_relay_heartbeat_kept`` says so.
        """
        forget = getattr(self.store, "forget_relay", None)
        if forget is None:
            return
        deadline = self._stop_deadline
        if deadline is None or "timeout_s" not in inspect.signature(forget).parameters:
            forget(self.owner)
            return
        left = deadline - time.monotonic()
        if left <= 0:  # (e.g. the last round waited for acks from an unreachable Kafka)
            reason = "the stop timeout ran out before the relay's last round ended"
        elif forget(self.owner, timeout_s=left) is False:
            reason = "the store was busy past the stop timeout"
        else:
            return
        _log.warning("outbox_relay_heartbeat_kept", owner=self.owner, reason=reason)

    def _run_round(self) -> int:
        return self._round(defer_marks=True)

    def _step(self, step: RelayStep, action: Callable[[], _T]) -> _T | None:
        """Run one step of the loop; its error is logged once, counted, and kept (None)."""
        return self._health.run(step, action)

    def _count_error(self, step: str) -> None:
        self.stats.errors += 1
        if self.metrics is not None:
            self.metrics.count_error(cast("RelayStep", step))

    def _cleanup(self) -> None:
        self.store.cleanup(self.cleanup_after_s)

    def _heartbeat(self) -> None:
        self.store.heartbeat(self.owner, self.last_error())

    def last_error(self) -> str | None:
        """The errors of the loop's steps that fail now (``"step: error"``), or None."""
        return self._health.last_error()

    def problem(self) -> str | None:
        """Why this relay's thread ships nothing now, or None if it is not known to fail.

        Something is said when the thread started by :meth:`start` died, or when
        its rounds (claiming, marking, creating a producer) fail and have not
        succeeded since. Cleanup and heartbeat errors are logged and counted but
        are not a problem here: events still move. A Kafka outage is not one
        either: the relay is working, the events wait on disk. (It does show in
        :meth:`last_error` and the heartbeat, as ``delivery: ...``, from a round
        that delivered nothing and has entries to try again until one delivers.)
        """
        if self._died is not None:
            return f"the relay thread died: {self._died}"
        thread = self._thread
        if thread is not None and not thread.is_alive() and not self._stop.is_set():
            return "the relay thread died"
        return self._health.problem(_BLOCKING_STEPS)

    def drain(self, timeout: float) -> bool:
        """Run rounds until nothing is claimable or ``timeout``; True if the outbox is empty.

        Raises whatever the store raises, and PublisherStateError in a forked
        child (see :meth:`run_once`).
        """
        self._check_own()
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline:
                if self._round(defer_marks=True) == 0:
                    status = self.store.status()
                    if status.pending == 0:
                        return True
                    time.sleep(self.idle_interval_s)
        finally:
            with contextlib.suppress(Exception):  # else its lease ends
                self._release_ahead()
        return self.store.status().pending == 0

    def start(self) -> OutboxRelay:
        """Run the relay in a background daemon thread (``eventwire-relay``).

        Raises:
            PublisherStateError: the relay was created before ``os.fork()`` (this
                is the child): create one in the child.
        """
        self._check_own()
        if self._thread is None:
            self._stop.clear()
            self._stop_deadline = None
            self._died = None
            self._thread = threading.Thread(
                target=self._run_thread, name="eventwire-relay", daemon=True
            )
            self._thread.start()
        return self

    @property
    def running(self) -> bool:
        """True while the thread started by :meth:`start` is alive."""
        thread = self._thread
        return thread is not None and thread.is_alive()

    def _run_thread(self) -> None:
        try:
            self.run()
        except BaseException as exc:  # run() survives Exception; this is the last word
            self._died = f"{type(exc).__name__}: {exc}"
            _log.critical("outbox_relay_died", error=self._died, owner=self.owner, exc_info=exc)
            raise

    def on_its_thread(self) -> bool:
        """True when called on the thread :meth:`start` runs the relay on."""
        thread = self._thread
        return thread is not None and thread is threading.current_thread()

    def stop(self, timeout: float = 30.0) -> None:
        """Stop the background thread and close the transport, within ``timeout`` s.

        The thread finishes its round if it can within ``timeout``; otherwise the
        transport is closed under it: what it still sends is refused, what it sent is
        purged, and those entries go out with the next relay, unattempted. No
        producer is made after this begins, and none is left open when it returns.
        The relay's gauges (outbox depth and age, breaker state) stop reporting.
        """
        deadline = time.monotonic() + timeout
        self._stop_deadline = deadline
        self._stop.set()
        if self._inherited:
            return  # the parent's producer and batches: not this process's to close
        with self._restart_lock:
            self._stopping = True
        if self._thread is not None:
            self._thread.join(timeout)
            finished = not self._thread.is_alive()
            self._thread = None
        else:
            finished = True
        if finished:  # a batch claimed ahead by run_once() calls (its thread releases its own)
            with contextlib.suppress(Exception):  # else its lease ends
                self._release_ahead()
        if self.metrics is not None:
            self.metrics.close()
        self._transport.close(max(0.0, min(deadline - time.monotonic(), 5.0)))
