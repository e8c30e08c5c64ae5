"""The outbox sink: commit each event durably first, relay it to Kafka after.

With ``Publisher(..., outbox=store)``:

* ``publish(event)`` routes, validates and encodes the event exactly as without
  an outbox, commits it to the store (fsynced), and only then returns. From
  that moment the event survives a broker outage and a crash of this process.
* An in-process relay (a background thread, unless ``relay=False``) ships the
  committed entries; its acks settle the returned handles, so
  ``handle.result()`` still means "Kafka has it". Entries committed by a
  previous process, or with :meth:`Publisher.stage`, are shipped too.
* Handles are tracked by outbox row. Publishing again with the same
  ``event_id`` while the event is unsent (the re-send pattern) stores nothing
  new: both handles share the row, and both settle with its outcome.
* A failed commit raises the store's ``OutboxWriteError`` and settles the
  handles as failed: ``_OUTBOX_WRITE_FAILED`` when nothing was stored,
  ``_OUTBOX_WRITE_UNKNOWN`` (``possibly_written``) when the outcome is unknown
  (or the store raised something else). Either way re-send with the same
  ``event_id``.
* With ``relay=False`` (another process relays) nothing here settles the
  handles with the broker's answer: they stay pending (no done-callback runs)
  until ``close()`` settles them as ``_IN_OUTBOX``, and ``flush()`` returns at
  once. ``eventwire outbox status`` and the relay process's outbox gauges show
  what is still pending.
* ``stage(event, connection=...)`` writes the event in *your* database
  transaction: it is sent if and only if that transaction commits. It returns
  the event id, not a handle, and the event gets no span and no trace headers.
* ``flush()``/``close()`` wait (bounded) for the events this publisher published
  and still tracks (see below); staged events and other processes' events are
  not waited for. An event still in the outbox when they time out is *not* a
  failure: it is durable and will be sent by the next relay. Only events given
  up on (dead-lettered or parked) raise, for handles still held; all are logged
  and counted anyway. If events still wait while the in-process relay cannot
  run (its thread died, or its rounds keep failing on store or producer
  errors), they raise :class:`~eventwire.outbox.relay.RelayFailingError`
  instead of returning. At ``close()`` the handles still waiting settle with
  ``_IN_OUTBOX``: their ``result()`` raises DeliveryError although the event is
  durable and the next relay sends it, so the caller must not re-send it (that
  would duplicate it).
* Several publishers (processes) on one outbox: any relay may ship any row.
  While ``flush()``/``close()`` wait, the publisher asks the store every
  :data:`RECONCILE_INTERVAL_S` what became of the rows it still waits for, so a
  row another process's relay shipped settles its handle here too (delivered:
  with ``partition`` and ``offset`` -1, which only that relay saw; or failed, if
  it was dead-lettered or parked), instead of waiting out the timeout or being
  called ``_IN_OUTBOX`` at close.
* Bounded memory: the publisher holds at most :data:`TRACKED_HANDLES` handles
  strongly (their done-callbacks fire, their spans end, flush() waits for them);
  beyond that (logged once, ``outbox_handles_untracked``) it holds them weakly, so
  during a long outage the backlog costs disk, not RAM -- except for the handles
  the caller keeps. A handle the caller drops then never runs its done-callbacks
  or ends its span, and from then on ``flush()`` waits until the whole outbox has
  nothing pending (any publisher's or process's events). The relay holds at most
  ``batch_size`` entries at a time.
* The relay reports to the publisher's MeterProvider (if it has a real one; a
  ``meter_provider`` in ``relay_options`` wins), and its circuit breaker (fixed:
  the defaults of :class:`~eventwire._breaker.CircuitBreaker`; ``relay_options``
  cannot replace it) is named ``relay`` in logs and metrics.
"""

from __future__ import annotations

import itertools
import math
import threading
import time
import weakref
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from opentelemetry.metrics import NoOpMeterProvider

from eventwire._breaker import CircuitBreaker, connection_probe
from eventwire._errors import (
    ConfigurationError,
    DeliveryError,
    OutboxWriteError,
    PublisherStateError,
)
from eventwire.observability.logging import get_logger
from eventwire.outbox.base import EventIdConflictError, OutboxEntry, OutboxStore
from eventwire.outbox.relay import OutboxRelay, RelayFailingError
from eventwire.transports.base import BaseTransport, factory_of

if TYPE_CHECKING:
    from collections.abc import Callable

    from eventwire._core import PublisherCore
    from eventwire._handle import DeliveryHandle
    from eventwire._record import Record
    from eventwire.transports.base import ReportMessage

__all__ = ["TRACKED_HANDLES", "OutboxSink"]

_log = get_logger("eventwire.outbox")

#: Handles held strongly per publisher while their events wait for the relay (~0.5 kB
#: each); beyond that they are held weakly.
TRACKED_HANDLES = 50_000
#: Seconds between two questions to the store, while flush() waits, about the rows
#: this publisher still waits for (shipped by another process's relay?).
RECONCILE_INTERVAL_S = 0.25
#: Rows asked about per question (the oldest waiting first).
_RECONCILE_ROWS = 2_000


class _ShippedElsewhere:
    """The report of a row another process's relay shipped: where, only it knows."""

    __slots__ = ("_topic",)

    def __init__(self, topic: str) -> None:
        self._topic = topic

    def topic(self) -> str:
        return self._topic

    def partition(self) -> int:
        return -1

    def offset(self) -> int:
        return -1

    def timestamp(self) -> tuple[int, int]:
        return (0, -1)


class OutboxSink:
    """Commit-then-relay publishing for one :class:`Publisher` (see module docs).

    Raises:
        ConfigurationError: no bootstrap servers, config or transport to relay to.
    """

    def __init__(
        self,
        core: PublisherCore,
        store: OutboxStore,
        *,
        start_relay: bool,
        relay_options: Mapping[str, Any] | None,
    ) -> None:
        self.core = core
        self.store = store
        self._tracked = _Tracker()
        self.relay: OutboxRelay | None = None
        if start_relay:
            options = dict(relay_options or {})
            # The provider the publisher resolved at creation, not the global one of
            # now; no-op when the publisher has no metrics.
            metrics = core.metrics
            options.setdefault(
                "meter_provider",
                metrics.meter_provider if metrics is not None else NoOpMeterProvider(),
            )
            self.relay = OutboxRelay(
                store,
                self._transport_factory(),
                listener=self,
                breaker=CircuitBreaker(name="relay", probe=connection_probe(self._relay_transport)),
                **options,
            )
            self.relay.start()

    def _relay_transport(self) -> BaseTransport | None:
        return None if self.relay is None else self.relay.transport

    def _transport_factory(self) -> Callable[[], BaseTransport]:
        given = self.core.options.transport
        if given is not None:
            return factory_of(given)  # later calls re-create it (same log)
        if self.core.config is None:
            raise ConfigurationError(
                "outbox mode needs bootstrap servers, a config= or a transport= to relay to"
            )
        # the relay's producer does not feed the publisher's queue and broker gauges
        return lambda: self.core.kafka_transport(connect_timeout=None, measured=False)

    # -- publishing -----------------------------------------------------------------------
    def try_send(self, record: Record) -> bool:
        """:meth:`send`; a commit never waits for room, so always True."""
        self.send(record)
        return True

    def send(self, record: Record) -> None:
        """Commit one event durably (past the close gate); the relay's ack settles its handle.

        Raises:
            PublisherStateError: ``close()`` has begun; nothing was written.
            OutboxWriteError: and the others of :meth:`send_many`.
        """
        try:
            with self.core.ledger.gate():
                self._commit([record])
        except PublisherStateError:
            if record.handle._done:
                raise
            # refused at the gate: settled _CLOSED (its span ends), as in direct mode
            raise self.core.ledger.refuse_closed(record.handle, "written to the outbox") from None

    def send_many(self, records: list[Record]) -> None:
        """Commit several events in ONE transaction (one fsync): all of them, or none.

        The records were prepared untraced: their spans start here.

        Raises:
            PublisherStateError: ``close()`` has begun; nothing was written.
            OutboxWriteError: as the store raised it; the handles are settled as
                failed: ``_OUTBOX_WRITE_FAILED`` (nothing stored) or, with
                ``possibly_written``, ``_OUTBOX_WRITE_UNKNOWN`` (maybe stored).
                Either way a re-send with the same ``event_id`` is safe: the outbox
                stores an unsent event once.
            Exception: anything else the store raised (the handles are settled
                ``_OUTBOX_WRITE_UNKNOWN``: the store did not say what happened).
        """
        with self.core.ledger.gate():  # (refused: the records were not traced yet)
            self.core.trace_batch(records)  # one send span for the batch
            self._commit(records)

    def _commit(self, records: list[Record]) -> None:
        """Add the records to the store in one commit; track their handles by outbox row."""
        entries, token = self.begin_commit(records)
        try:
            rows = self.store.add(entries)
        except BaseException as exc:
            self.commit_failed(token, records, exc)
            raise
        self.committed(token, records, rows)

    # The three steps of a commit, also taken by AsyncPublisher's awaited writes.
    def begin_commit(self, records: Sequence[Record]) -> tuple[list[OutboxEntry], int]:
        """The records' entries, and a token for :meth:`committed`/:meth:`commit_failed`."""
        return self.entries_of(records), self._tracked.begin()

    @staticmethod
    def entries_of(records: Sequence[Record]) -> list[OutboxEntry]:
        """The outbox entries of these records, in order."""
        return [_entry(r) for r in records]

    def forget_commit(self, token: int) -> None:
        """End a commit that stored nothing, without settling its records (tried again)."""
        self._tracked.end(token)

    def commit_failed(self, token: int, records: Sequence[Record], exc: BaseException) -> None:
        """Settle the records' handles as failed by ``exc`` (what the store's add raised)."""
        self.forget_commit(token)
        stored = isinstance(exc, OutboxWriteError) and not exc.possibly_written
        code = "_OUTBOX_WRITE_FAILED" if stored else "_OUTBOX_WRITE_UNKNOWN"
        if isinstance(exc, EventIdConflictError):  # refused before anything was stored
            code = "_EVENT_ID_CONFLICT"
        for record in records:
            handle = record.handle
            self.core.ledger.abandon(handle, handle.failure_from(code, str(exc)))

    def asks_store(self, rows: Sequence[int]) -> bool:
        """Whether :meth:`committed` of ``rows`` will read the store (then call it in a thread).

        It will when a "given up" report of one of them came before the add returned.
        """
        return self._tracked.early_given_up(rows)

    def committed(self, token: int, records: Sequence[Record], rows: Sequence[int]) -> None:
        """Track the committed records' handles by their outbox ``rows``.

        Reads the store for a row reported given up before this returned (see
        :meth:`_Tracker.end`): :meth:`asks_store` says so beforehand.
        """
        handles = [r.handle for r in records]
        early = self._tracked.end(token, rows, handles, self._given_up_in_store)
        try:
            for handle, outcome in early:  # the relay was faster than add() returned
                self._settle(handle, outcome)
        finally:
            self._tracked.settled(len(early))
        if self._tracked.closed:
            # A commit that outlasted close()'s wait: the event is durable, and close()
            # has already settled the others; settle these the same way.
            for handle in self._tracked.take_all():
                self.core.ledger.release(handle, handle.failure_from("_IN_OUTBOX", ""))

    def stage(self, record: Record, connection: Any) -> str:
        """Add the (untraced) record to the caller's open transaction; return its event id."""
        self.store.add(self.entries_of([record]), connection=connection)
        return record.handle.event_id

    # -- the relay's listener ------------------------------------------------------------
    def delivered(self, row_id: int, event_id: str, msg: ReportMessage) -> None:
        """Settle every handle of outbox row ``row_id`` (acknowledged by Kafka)."""
        self._settle_all(self._tracked.report(row_id, (msg, "", "")), (msg, "", ""))

    def given_up(self, row_id: int, event_id: str, code: str, reason: str) -> None:
        """Settle every handle of outbox row ``row_id`` (dead-lettered or parked) as failed."""
        self._settle_all(self._tracked.report(row_id, (None, code, reason)), (None, code, reason))

    def _settle_all(self, handles: list[DeliveryHandle], outcome: _Outcome) -> None:
        """Settle handles the tracker handed over; flush() counts them until done."""
        try:
            for handle in handles:
                self._settle(handle, outcome)
        finally:
            self._tracked.settled(len(handles))

    def _given_up_in_store(self, row: int) -> bool:
        """Whether the store has ``row`` given up (parked or dead-lettered) now.

        Asked of an early "given up" report (see :meth:`_Tracker.end`). A store
        error counts as yes: the report is then taken, as it always was.
        """
        try:
            state = self.store.row_states([row]).get(row)
        except Exception as exc:
            _log.warning("outbox_status_failed", error=repr(exc), collapse=type(exc).__name__)
            return True
        return state is not None and state.state in ("parked", "dead_lettered")

    def _settle(self, handle: DeliveryHandle, outcome: _Outcome) -> None:
        msg, code, reason = outcome
        failure = None if msg is not None else handle.failure_from(code, reason)
        self.core.ledger.settle(handle, msg, failure)

    # -- flush and close ---------------------------------------------------------------------
    def flush(self, timeout: float) -> None:
        """Wait up to ``timeout`` s for the relay to settle this publisher's tracked handles.

        Once handles overflowed :data:`TRACKED_HANDLES`, also until the whole outbox
        has nothing pending. Without a relay (``relay=False``) it returns at once.
        An event still waiting at the timeout is not a failure (it is durable) --
        unless the relay cannot run.

        Raises:
            DeliveryError: events given up on (dead-lettered or parked) whose
                handles are still held; the others are logged and counted by the
                relay. If the relay is failing too, the message says so.
            RelayFailingError: events are still waiting and the in-process relay
                cannot ship them: its thread died (raised without waiting), or its
                rounds (store or producer errors) still fail at the timeout. The
                events stay in the outbox; the relay keeps retrying.
        """
        relay = self.relay
        deadline = time.monotonic() + timeout
        next_reconcile = time.monotonic() + RECONCILE_INTERVAL_S
        while relay is not None and relay.running and time.monotonic() < deadline:
            if self._all_settled():
                break
            time.sleep(0.1 if self._overflowed else 0.01)
            if time.monotonic() >= next_reconcile:
                self.reconcile()
                next_reconcile = time.monotonic() + RECONCILE_INTERVAL_S
        problem = None
        if relay is not None and not self._all_settled():
            problem = relay.problem()
        context = f"flush({timeout:g}) with outbox"
        if problem is not None:
            context += f"; the relay is failing too: {problem}"
        error = self.core.ledger.failures_error(False, context)
        if error is not None:
            raise error
        if problem is not None:
            raise RelayFailingError(problem)

    def _all_settled(self) -> bool:
        """True when no tracked handle waits (and, past the cap, nothing is pending)."""
        return not self.in_flight and (not self._overflowed or self._drained())

    def close(self, timeout: float) -> None:
        """After the close gate shut: flush, stop the relay, in ``timeout``; events stay durable.

        The relay is stopped and the handles still waiting settle with
        ``_IN_OUTBOX`` even when the flush raises.

        Raises:
            DeliveryError, RelayFailingError: as :meth:`flush`.
        """
        error: DeliveryError | None = None
        deadline = time.monotonic() + timeout
        try:
            self.flush(timeout)
        except DeliveryError as exc:
            error = exc  # raised below, with what settles meanwhile
        finally:
            if self.relay is not None:
                # What is left of the one timeout (at most 10 s): a round still waiting
                # for acks is cut short, and its entries go out with the next relay.
                self.relay.stop(max(0.0, min(deadline - time.monotonic(), 10.0)))
            # rows another process's relay shipped are not _IN_OUTBOX; nor are those of
            # this relay's round still stuck (a slow done-callback) when stop() gave up
            self.reconcile(leave_in_hand=False)
            for handle in self._tracked.take_all():
                # Not a failure: the event is committed and the next relay sends it.
                self.core.ledger.release(handle, handle.failure_from("_IN_OUTBOX", ""))
            try:
                self.core.finish_close(0)
            except DeliveryError as late:
                if error is None:
                    raise
                error = DeliveryError(
                    [*error.failures, *late.failures],
                    context=f"close({timeout:g}) with outbox",
                    not_kept=error.not_kept + late.not_kept,
                )
        if error is not None:
            raise error

    def reconcile(self, *, leave_in_hand: bool = True) -> int:
        """Settle the waiting handles whose rows the store says are no longer pending.

        For rows another process's relay shipped or gave up on. This publisher's
        relay tells it directly, with the partition and offset Kafka gave: the rows
        it still holds (:meth:`OutboxRelay.in_hand`, read *after* the store, so a
        row it marked sent just before is still there) are left to it. Returns how
        many rows were settled; a store error is logged and counts as nothing
        learned. ``leave_in_hand=False`` (at close, the relay stopped or given up on)
        settles those rows from the store too.
        """
        seen = self._tracked.waiting_handles(_RECONCILE_ROWS)
        if not seen:
            return 0
        try:
            states = self.store.row_states(list(seen))
        except Exception as exc:
            _log.warning("outbox_status_failed", error=repr(exc), collapse=type(exc).__name__)
            return 0
        relay = self.relay
        ours = relay.in_hand() if relay is not None and leave_in_hand else frozenset()
        settled = 0
        for row, handles in seen.items():
            state = states.get(row)
            if (state is not None and state.state == "pending") or row in ours:
                continue
            settled += 1
            # only the handles seen before the store was read: one reported since, or
            # added since to a row requeued since, is not this read's to settle
            taken = self._tracked.report_seen(row, handles)
            if state is None or state.state == "sent":  # (only sent rows are ever deleted)
                # a row's handles are one event's: one topic
                shipped = _ShippedElsewhere(taken[0].topic if taken else "")
                self._settle_all(taken, (shipped, "", ""))
                continue
            code, _, reason = (state.last_error or "_GIVEN_UP: ").partition(": ")
            self._settle_all(taken, (None, code, reason))
        return settled

    @property
    def in_flight(self) -> int:
        """Events published here, not yet acknowledged, whose handles are still held."""
        return self._tracked.waiting()

    @property
    def _overflowed(self) -> bool:
        return self._tracked.overflowed

    def _drained(self) -> bool:
        """True when the outbox has nothing pending (any publisher's events).

        Only asked after handles overflowed TRACKED_HANDLES (a status() count is not
        free), so flush() still waits for the untracked events this publisher wrote.
        """
        try:
            return self.store.status().pending == 0
        except Exception as exc:  # a store error must not turn flush into a crash
            _log.warning("outbox_status_failed", error=repr(exc), collapse=type(exc).__name__)
            return True


def _entry(record: Record) -> OutboxEntry:
    handle = record.handle
    return OutboxEntry(
        handle.event_id,
        handle.event_type,
        record.topic,
        record.key,
        record.value,
        tuple(record.headers),
    )


#: What the relay said of a row: (ack, "", "") or (None, code, reason).
_Outcome = tuple["ReportMessage | None", str, str]


class _Tracker:
    """The handles of one publisher's outbox events, by outbox row id; thread-safe.

    Several handles may share a row (publishes of one ``event_id`` while it is
    unsent). Up to :data:`TRACKED_HANDLES` handles are held strongly; beyond that a
    row's only handle is held weakly (see "Bounded memory" in the module docs).
    The relay may report a row before ``add()`` has returned its id: while adds are
    in flight such reports are kept, and matched when the add ends.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._strong: dict[int, list[DeliveryHandle]] = {}
        self._count = 0
        self._weak: weakref.WeakValueDictionary[int, DeliveryHandle] = weakref.WeakValueDictionary()
        self.overflowed = False
        #: True once close() took every handle: later adds are settled at once.
        self.closed = False
        # Adds and reports are numbered from one sequence: a report matches an add only
        # if it came after the add began (an older one is of the row's past, e.g. a
        # "given up" before a re-publish requeued the parked row).
        self._seq = itertools.count()
        self._adds: set[int] = set()  # adds in flight, by the number they began with
        self._early: dict[int, tuple[int, _Outcome]] = {}  # row -> (report number, outcome)
        #: Handles taken from tracking to be settled and not settled yet (the settling
        #: thread calls :meth:`settled`): still waiting, for flush() -- except on the
        #: thread settling them (a done-callback's own flush() must not wait for itself).
        self._settling = 0
        self._own = threading.local()

    def begin(self) -> int:
        """Note an add() starting; return its token (its number) for :meth:`end`."""
        with self._lock:
            token = next(self._seq)
            self._adds.add(token)
            return token

    def end(
        self,
        token: int,
        rows: Sequence[int] = (),
        handles: Sequence[DeliveryHandle] = (),
        given_up: Callable[[int], bool] | None = None,
    ) -> list[tuple[DeliveryHandle, _Outcome]]:
        """Track ``handles`` by ``rows`` (none if the add failed); return those already reported.

        The returned handles count as waiting until :meth:`settled`. An early
        "given up" report is this add's outcome only if ``given_up(row)`` (asked
        under the lock, so no later report slips past) says the store still has the
        row given up: else the add requeued the row, parked before the add but
        reported after it began (a re-send of a parked event starts over), and the
        handle waits for the relay's next report.
        """
        early: list[tuple[DeliveryHandle, _Outcome]] = []
        with self._lock:
            self._adds.discard(token)
            for row, handle in zip(rows, handles, strict=True):
                reported = self._early.get(row)
                if reported is not None and reported[0] > token:
                    if reported[1][0] is None and given_up is not None and not given_up(row):
                        self._hold(row, handle)  # requeued: this add starts it over
                        continue
                    del self._early[row]
                    early.append((handle, reported[1]))
                else:
                    self._hold(row, handle)
            self._handed(len(early))
            oldest = min(self._adds, default=math.inf)
            while self._early:  # reports older than every add in flight match none
                row, (number, _) = next(iter(self._early.items()))
                if number >= oldest:
                    break
                del self._early[row]
        return early

    def _hold(self, row: int, handle: DeliveryHandle) -> None:
        if self._count < TRACKED_HANDLES or row in self._strong or row in self._weak:
            self._strong.setdefault(row, []).append(handle)
            self._count += 1
            return
        self._weak[row] = handle
        if not self.overflowed:
            self.overflowed = True
            _log.warning(
                "outbox_handles_untracked",
                tracked=TRACKED_HANDLES,
                hint="more events wait for the relay than are tracked; handles you drop "
                "from now on are not kept (their events are safe on disk)",
            )

    def early_given_up(self, rows: Sequence[int]) -> bool:
        """Whether a "given up" report is kept for one of ``rows`` (see :meth:`end`)."""
        if not self._early:  # nearly always: no lock taken
            return False
        with self._lock:
            return any(
                (kept := self._early.get(row)) is not None and kept[1][0] is None for row in rows
            )

    def report(self, row: int, outcome: _Outcome) -> list[DeliveryHandle]:
        """Stop tracking ``row``; its live handles.

        While adds are in flight the outcome is kept too: one of them may return
        this row (a publish of the same ``event_id`` that found it unsent).
        The handles count as waiting until :meth:`settled`.
        """
        with self._lock:
            handles = self._strong.pop(row, [])
            self._count -= len(handles)
            weak = self._weak.pop(row, None)
            if weak is not None:
                handles.append(weak)
            if self._adds:
                self._early.pop(row, None)  # re-inserted last: the dict stays in order
                self._early[row] = (next(self._seq), outcome)
            self._handed(len(handles))
        return handles

    def report_seen(self, row: int, seen: Sequence[DeliveryHandle]) -> list[DeliveryHandle]:
        """Stop tracking those of ``seen`` still tracked by ``row``; return them.

        For what was learned about ``row`` elsewhere (the store) while ``seen`` were
        its handles: a handle already reported, or added since (to a row requeued
        since), is left alone, and no early report is kept for adds in flight.
        The handles count as waiting until :meth:`settled`.
        """
        ids = {id(h) for h in seen}  # ``seen`` holds them: the ids stay theirs
        with self._lock:
            held = self._strong.get(row, [])
            taken = [h for h in held if id(h) in ids]
            if taken:
                kept = [h for h in held if id(h) not in ids]
                if kept:
                    self._strong[row] = kept
                else:
                    del self._strong[row]
                self._count -= len(taken)
            weak = self._weak.get(row)
            if weak is not None and id(weak) in ids:
                del self._weak[row]
                taken.append(weak)
            self._handed(len(taken))
        return taken

    def _handed(self, count: int) -> None:
        """``count`` handles go to this thread to be settled (under the lock)."""
        self._settling += count
        self._own.count = getattr(self._own, "count", 0) + count

    def settled(self, count: int) -> None:
        """Note that ``count`` handles handed over to this thread are settled now."""
        with self._lock:
            self._settling -= count
            self._own.count -= count

    def waiting_handles(self, limit: int) -> dict[int, list[DeliveryHandle]]:
        """The live waiting handles of up to ``limit`` rows, oldest row first."""
        with self._lock:
            rows = {
                row: waiting
                for row, hs in self._strong.items()
                if (waiting := [h for h in hs if not h._done])
            }
            for row, h in self._weak.items():
                if not h._done:
                    rows.setdefault(row, []).append(h)
        return dict(itertools.islice(rows.items(), limit))

    def take_all(self) -> list[DeliveryHandle]:
        """Stop tracking everything, for good (``closed``); the live handles."""
        with self._lock:
            self.closed = True
            left = [h for hs in self._strong.values() for h in hs]
            left.extend(self._weak.values())
            self._strong.clear()
            self._weak.clear()
            self._count = 0
        return left

    def waiting(self) -> int:
        """Tracked handles not settled yet, and those being settled now."""
        with self._lock:
            weak = sum(1 for h in self._weak.values() if not h._done)
            strong = sum(1 for hs in self._strong.values() for h in hs if not h._done)
            return weak + strong + self._settling - getattr(self._own, "count", 0)
