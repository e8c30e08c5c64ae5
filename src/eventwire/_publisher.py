"""The synchronous publisher: a thin façade over the core and a sink."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable, Mapping, Sequence
from types import TracebackType
from typing import Any, Unpack

from eventwire._cloudevents import batch_event_ids, batch_events
from eventwire._core import PublisherCore
from eventwire._errors import (
    EventwireError,
    PublisherStateError,
    RoutingError,
    SerializationError,
)
from eventwire._facade import Facade, closed_after_error
from eventwire._handle import DeliveryHandle, in_done_callback
from eventwire._options import PublisherOptions, check_relay_options, resolve_options
from eventwire._record import Record
from eventwire._sink import DirectSink, Sink
from eventwire._timeouts import seconds
from eventwire.outbox.base import OutboxStore
from eventwire.outbox.sink import OutboxSink

__all__ = ["Publisher"]


class Publisher(Facade):
    """Publish typed events to Kafka, thread-safely and without blocking.

    Events are instances of msgspec Structs, dataclasses, attrs classes or pydantic
    v2 models (the last with ``eventwire[pydantic]``).

    Example::

        with Publisher("localhost:9092") as publisher:
            handle = publisher.publish(OrderPlaced(order_id="o-1", ...))
        # leaving the block flushes; undelivered events raise DeliveryError

    Promises:
        * ``publish()`` returns once the event is in the local queue (or, with an
          outbox, committed to it); the broker's answer arrives in the returned
          :class:`DeliveryHandle`. Nobody needs to call ``poll()``.
        * Every event ends delivered or reported, and each failure is reported once:
          ``flush()`` and ``close()`` raise :class:`DeliveryError` naming each event
          that did not finish and each failure the application has not observed
          (through ``result()``, ``failed()``/``failure`` or a done-callback).
        * A full local queue is waited on for at most ``enqueue_timeout`` seconds,
          then :class:`BackpressureError` is raised; no event is dropped.
        * Once ``close()`` begins, a ``publish()`` raises PublisherStateError or is
          settled and reported by that ``close()``.
        * Keys go to the same partition as with Kafka's Java clients.

    Args:
        bootstrap_servers: ``"host:port[,host:port]"`` or a list of them.
        outbox: a durable store (:class:`~eventwire.outbox.SQLiteOutbox`,
            :class:`~eventwire.outbox.postgres.PostgresOutbox`): ``publish()`` then
            returns once the event is committed there, and a relay ships it (see
            :mod:`eventwire.outbox.sink`). No broker check runs at start.
        relay: run the outbox relay in a background thread (default); False when
            a separate ``eventwire outbox relay`` process ships the events.
        relay_options: keyword arguments for :class:`~eventwire.outbox.OutboxRelay`
            (``batch_size``, ``dead_letter``, ``max_attempts`` ...), not ``breaker``;
            only with ``outbox`` (without one they raise ConfigurationError).
        options: the options shared with AsyncPublisher, see
            :class:`~eventwire._options.PublisherOptions` (``config``, ``profile``,
            ``overrides``, ``routes``, ``source``, ``codec``, ``transport``,
            ``enqueue_timeout``, ``close_timeout``, ``connect_timeout``, OpenTelemetry
            providers, ``circuit_breaker``, ``producer_restarts``). With an outbox
            ``circuit_breaker`` is ignored: the relay has its own.

    Raises:
        ConfigurationError: a bad configuration key or value (named).
        TypeError: an unknown option name.
        BrokerUnavailableError: no broker answered within ``connect_timeout``.
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
        #: Set when the close() that began closing has ended (see close()).
        self._close_done = threading.Event()
        #: ``"by"``: (pid, thread) of the close() that claimed the closing; claimed with
        #: ``dict.setdefault``, atomic in CPython (a lock could be inherited held by a fork).
        self._close_claim: dict[str, tuple[int, int]] = {}
        core = self._core = PublisherCore(resolved, direct=outbox is None)
        self._outbox: OutboxSink | None = None
        self._sink: Sink
        if outbox is not None:
            self._sink = self._outbox = OutboxSink(
                core, outbox, start_relay=relay, relay_options=relay_options
            )
        else:
            assert core.producer is not None
            core.use_breaker(resolved.circuit_breaker)
            self._sink = DirectSink(core, core.producer)
        self._try_send = self._sink.try_send
        self._send = self._sink.send

    @property
    def in_flight(self) -> int:
        """Events published and not yet acknowledged or failed.

        With an outbox: those whose handles are still held (the rest wait on disk;
        see ``eventwire outbox status`` or the ``eventwire_outbox_pending_events`` gauge).
        """
        return self._sink.in_flight

    def publish(
        self,
        event: Any,
        *,
        event_id: str | None = None,
        headers: Sequence[tuple[str, bytes]] | None = None,
    ) -> DeliveryHandle:
        """Enqueue ``event`` and return its delivery handle.

        Args:
            event: an event (Struct, dataclass, attrs or pydantic instance) with a route.
            event_id: the ``ce_id`` to use (e.g. when re-sending); a new UUIDv7 if None.
            headers: extra Kafka headers, appended after the CloudEvents ones.

        Raises:
            RoutingError: not an event class, no route, or a missing/unencodable key.
            SerializationError: the value cannot be encoded.
            DeliveryError: Kafka refused it at once (e.g. larger than message.max.bytes).
            BackpressureError: the queue stayed full for ``enqueue_timeout``.
            PublisherStateError: the publisher is closed (or closing), or was
                inherited by fork.
            ProducerFatalError: the producer hit a fatal error earlier.
            OutboxWriteError: (outbox) the commit failed, or its outcome is unknown.
        """
        core = self._core
        if core.unusable:
            core.check_usable()
        record = core.prepare(event, event_id, headers)
        if not self._try_send(record):
            self._send(record)  # wait (bounded) for room in the queue
        return record.handle

    def publish_many(
        self, events: Iterable[Any], *, event_ids: Iterable[str | None] | None = None
    ) -> list[DeliveryHandle]:
        """Publish several events, in order; return their handles.

        Every event is routed and encoded first, so an invalid event raises
        (RoutingError, SerializationError) before *any* of them is enqueued.
        Delivery failures are per event, in the handles.

        Without an outbox the events are then enqueued one by one, and a queue
        is not all-or-nothing: if event ``k`` cannot be enqueued (the queue stayed
        full for ``enqueue_timeout``, it was refused as too large, the publisher
        began closing), :class:`BatchPublishError` is raised with the handles of
        events ``0..k-1`` (enqueued; they are reported as usual) and the ce_id of
        every event, for a re-send of the rest with ``event_ids=``. With an outbox
        the batch is one transaction: all of it is committed, or none.

        Args:
            events: the events, in publish order.
            event_ids: the ``ce_id`` of each event (e.g. to re-send a batch under
                the ids it was first given); new UUIDv7s if None, and a new one for
                each None in it. Any iterable; each id is checked as
                ``publish(event_id=)`` checks it.

        Raises:
            BatchPublishError: see above (``__cause__`` is the event's own error).
            RoutingError, SerializationError: an event cannot be routed or encoded
                (or its ``event_ids`` entry is not a valid id); the message begins
                with its position, ``event 2 of the batch (0-based): ...``.
            ConfigurationError: ``events`` is not an iterable of events (one event
                goes to :meth:`publish`); ``event_ids`` is not one id per event (a str
                is one id, not a sequence of them), or holds an id twice: consumers
                de-duplicate on ``ce_id``, so one of the two events would be dropped.
            and the errors of :meth:`publish` raised before anything is enqueued.
        """
        core = self._core
        core.check_usable()
        batch = batch_events(events, core.is_event)
        ids = [None] * len(batch) if event_ids is None else batch_event_ids(event_ids, len(batch))
        records: list[Record] = []
        add = records.append
        try:
            for e, i in zip(batch, ids, strict=True):
                add(core.prepare(e, i, None, traced=False))
        except (RoutingError, SerializationError) as exc:
            _say_batch_position(exc, len(records), len(batch))
            raise
        self._sink.send_many(records)
        return [r.handle for r in records]

    def stage(
        self,
        event: Any,
        *,
        connection: Any,
        event_id: str | None = None,
        headers: Sequence[tuple[str, bytes]] | None = None,
    ) -> str:
        """Add ``event`` to the outbox inside *your* open transaction; return its ce_id.

        ``connection`` is the sqlite3 / psycopg connection (or SQLAlchemy Session)
        of your domain write: the event is sent if and only if you commit it.

        Raises:
            PublisherStateError: the publisher has no outbox.
            RoutingError, SerializationError: as :meth:`publish`, before anything is written.
        """
        if self._outbox is None:
            raise PublisherStateError(
                "stage() needs an outbox: create the publisher with outbox=SQLiteOutbox(...) "
                "or PostgresOutbox(...)"
            )
        self._core.check_usable()
        record = self._core.prepare(event, event_id, headers, traced=False)
        return self._outbox.stage(record, connection)

    def flush(self, timeout: float = 30.0) -> None:
        """Wait up to ``timeout`` s for every outstanding event.

        With an outbox it waits for the events this publisher published and still
        tracks (not staged ones), and raises only for events given up on
        (dead-lettered or parked), or when the relay cannot run; see
        :mod:`eventwire.outbox.sink`.

        Raises:
            DeliveryError: listing every event that failed since the last flush and
                was not observed (``result()`` raised, ``failed()``/``failure`` told,
                or a done-callback ran: those are not raised again; at most 1,000
                are kept, the rest counted in ``not_kept``), and every event still
                unacknowledged when the timeout ran out
                (code ``_FLUSH_TIMEOUT``; those remain queued and may still land).
            RelayFailingError: (outbox) events still wait and the in-process relay
                cannot run (its thread died, or its rounds keep failing); the
                message says why. The events are safe on disk.
        """
        self._refuse_on_the_relay_thread("flush()")
        self._sink.flush(seconds(timeout, "flush(timeout)"))

    def _refuse_on_the_relay_thread(self, what: str) -> None:
        """PublisherStateError when called by a done-callback on the outbox relay's thread.

        flush() and close() wait for that thread to settle events (and close() stops it):
        waiting on it, it would only wait out the timeout, and could not stop itself.
        """
        relay = self._outbox.relay if self._outbox is not None else None
        if relay is not None and relay.on_its_thread():
            raise PublisherStateError(
                f"{what} cannot run inside a done-callback of a publisher with an outbox: "
                f"the callback runs on the outbox relay's thread, which {what} waits for. "
                "Call it from your own thread, e.g. after the callback has signalled it."
            )

    def close(self, timeout: float | None = None) -> None:
        """Flush for up to ``timeout`` s (default ``close_timeout``), then stop.

        From the moment ``close()`` begins, ``publish()`` on any thread raises
        :class:`PublisherStateError` without enqueueing (or committing) the event;
        publishes already under way finish first and are covered by this close.
        Events still queued after the timeout are dropped *and reported*:
        DeliveryError lists them (``_PURGE_QUEUE``/``_PURGE_INFLIGHT``) with every
        other failure. The producer is destroyed before this returns, so nothing
        is sent afterwards. As with :meth:`flush`, a failure the application
        already observed is not raised again. A ``close()`` made while another
        thread's runs waits for it (up to its own ``timeout``), so neither returns
        while events are still in flight; that first one raises the failures. A
        ``close()`` after the end of closing is a no-op. With an outbox, ``close()`` and
        ``flush()`` raise PublisherStateError inside a done-callback (which runs on
        the relay's thread, the one they wait for). A ``close()`` cut short by an
        exception (a KeyboardInterrupt, a SIGTERM handler's ``sys.exit``) is finished
        by the next ``close()``.

        With an outbox nothing is dropped: handles still waiting settle with
        ``_IN_OUTBOX`` (the event is durable and the next relay sends it; do not
        re-send it), and only events given up on raise (or RelayFailingError, as
        for :meth:`flush`).
        """
        timeout = self._close_timeout if timeout is None else seconds(timeout, "close(timeout)")
        self._refuse_on_the_relay_thread("close()")
        me = (os.getpid(), threading.get_ident())
        closer = self._close_claim.setdefault("by", me)
        if closer is me:
            core = self._core
            if core.close_interrupted:  # an earlier close() was cut short: finish it
                core.close_interrupted = False
                self._close_done.clear()
                started = True
            else:
                try:
                    started = core.begin_close(timeout)  # no publish gets past this
                except BaseException:
                    self._close_claim.clear()  # refused (inside a callback): not closing
                    raise
            try:
                if started:
                    self._sink.close(timeout)
            except BaseException as exc:
                # A KeyboardInterrupt, or a SIGTERM handler's SystemExit, cut the closing
                # short: the producer may still run and events be unsettled. The next
                # close() finishes it (flush() says so meanwhile).
                if not isinstance(exc, EventwireError):
                    core.close_interrupted = True
                    self._close_claim.clear()  # the next close(), on any thread, claims it
                raise
            finally:
                self._close_done.set()
            return
        # Another close() claimed the closing and may still run: wait for it. Not on
        # its own thread (a signal handler run inside it), nor in a forked child, nor
        # inside a done-callback (that thread may be the one delivering its reports).
        if closer[0] == me[0] and closer[1] != me[1] and not in_done_callback():
            self._close_done.wait(timeout)

    def __enter__(self) -> Publisher:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            self.close()
        except EventwireError as close_error:
            if exc is None:
                raise
            closed_after_error(exc, close_error)  # the body's exception goes on, noted


def _say_batch_position(exc: EventwireError, index: int, count: int) -> None:
    """Put the position of the event that failed in front of ``exc``'s message.

    The exception itself is kept (its class, cause and traceback), so callers
    catching RoutingError or SerializationError still do.
    """
    where = f"event {index} of the batch (0-based, {count} events)"
    if len(exc.args) == 1 and isinstance(exc.args[0], str):
        exc.args = (f"{where}: {exc.args[0]}",)
    else:  # (not one of eventwire's: keep its args, say it in a note)
        exc.add_note(where)
