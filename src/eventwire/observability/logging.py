"""What eventwire logs, how it reaches the application's logging, and how secrets stay out.

Where the lines go
------------------
eventwire logs through the standard :mod:`logging` module, on the logger tree under
``"eventwire"``, and configures nothing: no handler, no level, no structlog
configuration. The loggers are ``"eventwire"`` (the publisher), ``"eventwire.kafka"``
(the Kafka transport), ``"eventwire.librdkafka"`` (librdkafka's own lines),
``"eventwire.breaker"`` (circuit breakers), ``"eventwire.outbox"`` (the outbox, its
relay and their metrics) and ``"eventwire.consumer"`` (typed decode). Route them like
any library's::

    logging.config.dictConfig({
        "version": 1,
        "disable_existing_loggers": False,
        "handlers": {"stderr": {"class": "logging.StreamHandler"}},
        "loggers": {"eventwire": {"handlers": ["stderr"], "level": "INFO"}},
    })

* An application that configured nothing sees nothing on stdout. Warnings and errors
  reach stderr through Python's last-resort handler (:data:`logging.lastResort`), one
  line each, and repeats are collapsed (below), so a broker outage prints a handful of
  lines, not one per retry. eventwire deliberately adds no :class:`logging.NullHandler`:
  that would also hide these few warnings from an application that configured nothing,
  and a connectivity or delivery problem is exactly what such an application must see.
  Silence them with ``logging.getLogger("eventwire").setLevel(logging.CRITICAL)``.
* Plain :mod:`logging` (``basicConfig``, ``dictConfig``): ``record.getMessage()`` is
  one readable line, the event name then its fields, e.g.
  ``kafka_error code=_TRANSPORT reason='127.0.0.1:1/bootstrap: Connect to ...'``.
  The event name (``event``) and every field are also attributes of the record, as if
  passed in ``extra=`` (``%(code)s`` in a format; JSON formatters pick them up), and
  ``record.msg`` is the event as a dict (:class:`LogEvent`).
* structlog with its stdlib integration: eventwire's records are ordinary ("foreign")
  stdlib records, so the application's ``ProcessorFormatter`` runs its
  ``foreign_pre_chain`` on them (timestamps, levels, like every library's records).
  With :class:`structlog.stdlib.ExtraAdder` in that chain, each becomes a structlog
  event whose ``event`` is the stable name below and whose fields are keys::

      ProcessorFormatter(
          foreign_pre_chain=[*shared_processors, structlog.stdlib.ExtraAdder()],
          processors=[ProcessorFormatter.remove_processors_meta, JSONRenderer()],
      )

  Without ``ExtraAdder``, ``event`` is the readable line above.

Repeats are collapsed
---------------------
Events marked *collapsed* below are logged the first time for their key; identical
ones (same key) within the next :data:`COLLAPSE_WINDOW_S` (30 s) are only counted. The
first one after the window is logged with ``repeated=N`` and ``repeated_over_s`` (its
line ends "(N more in the last 30 s)"), and a new window starts. So each key writes at
most one line per 30 s. A key that stops repeating writes nothing more (its last count
is not reported). :class:`RepeatCollapser` is the thread-safe rule, with an injectable
clock.

The events
----------
The event names and their fields are stable; alerting can match on them.

================================= ======= ===================================================
event                             level   fields
================================= ======= ===================================================
``delivery_failed``               warning ``event_id``, ``event_type``, ``topic``, ``code``,
                                          ``error_class`` -- collapsed per (code, topic)
``delivery_failures_not_kept``    warning ``kept`` -- (once per flush interval) more
                                          unobserved failures than a publisher keeps for
                                          ``flush()``/``close()``; the rest are counted
                                          (``DeliveryError.not_kept``)
``buffer_full``                   warning ``event_id``, ``event_type``, ``topic`` -- the local
                                          queue is full; ``publish()`` waits up to
                                          ``enqueue_timeout``; collapsed per topic
``done_callback_failed``          error   ``event_id``, ``event_type``, ``topic`` (with the
                                          traceback) -- a user's ``add_done_callback`` raised
``close_with_send_in_progress``   warning ``sends`` -- ``close()`` went on while a send
                                          outlasted its wait (a slow outbox commit);
                                          that close settles what it adds
``close_failed_after_error``      error   ``error``, ``error_type``, ``body_error`` -- a
                                          ``with``/``async with`` body raised, then
                                          ``close()`` raised too: the body's exception
                                          goes on, with this error as a note
``publisher_not_closed``          warning ``in_flight``, ``topics``, ``hint`` -- at interpreter
                                          exit, a publisher never closed still had
                                          events in flight (lost with the process, their
                                          failures reported nowhere else): call
                                          ``close()``. Nothing is flushed at exit
``settle_hook_failed``            error   ``event_id`` (and ``topic`` for an abandoned
                                          event), with the traceback -- a
                                          metrics/breaker/asyncio hook raised at settle
``span_end_failed``               error   ``event_id``, ``topic`` (with the traceback) --
                                          ending the event's span raised
``producer_fatal``                error   ``code``, ``reason`` -- a Kafka producer hit a
                                          fatal error (logged by the Kafka transport,
                                          before every replacement)
``producer_replaced``             warning ``code``, ``reason``, ``resent``, ``restarts_left``
                                          -- a new producer took over; the unacknowledged
                                          events were re-sent through it
``producer_restart_budget_spent`` error   ``code``, ``restarts``, ``window_s`` -- no
                                          replacement left: the publisher goes fatal
``producer_restart_failed``       error   ``code``, ``error`` -- the new producer could not
                                          be created: the publisher goes fatal
``producer_recreated``            warning ``reason`` -- the outbox relay re-created its
                                          producer after a fatal error (no budget)
``producer_dispose_error``        info    ``error`` -- closing a replaced producer failed
``producer_purge_error``          info    ``error`` -- purging a closing producer failed
``kafka_error``                   warning ``code``, ``reason`` -- a non-fatal client error
                                          (broker down, authentication or TLS failed...);
                                          collapsed per (code, broker)
``librdkafka_log``                debug   ``facility``, ``text`` -- librdkafka's own log
                                  / error lines: ``debug``, except its errors (syslog
                                          level 0-3), which are ``error`` and collapsed per
                                          (facility, broker thread)
``poll_error``                    error   ``error`` -- an unexpected error while serving
                                          reports; collapsed per exception type
``stats_error``                   error   ``error`` -- the statistics consumer failed
                                          (metrics); collapsed per exception type
``circuit_<state>``               warning ``breaker``, ``last_error`` -- a circuit breaker
                                          became ``open``, ``half_open`` or ``closed``;
                                          an outage's probe cycle (``half_open``, then
                                          ``open`` after a failed probe) is collapsed
                                          per (breaker, outage, state); the opening from
                                          ``closed`` and every ``closed`` are not
``dead_lettered``                 error   ``event_id``, ``event_type``, ``topic``, ``code``,
                                          ``attempts`` -- sent to its dead-letter topic
``outbox_parked``                 error   as ``dead_lettered`` -- kept in the outbox instead
                                          (no dead-letter topic, or its send failed)
``outbox_handles_untracked``      warning ``tracked``, ``hint`` -- (once per publisher) more
                                          handles wait than are held strongly
``outbox_status_failed``          warning ``error`` (and ``store`` from the gauges) -- the
                                          store could not report its status; collapsed
                                          per exception type (except the gauges', logged
                                          once per scrape)
``outbox_relay_failing``          error   ``step``, ``error``, ``owner``, ``hint`` (with the
                                          traceback) -- a relay step raised; logged when the
                                          error text changes, the relay retries
``outbox_relay_not_delivering``   warning ``error``, ``owner``, ``hint`` -- a relay round
                                          delivered nothing and has entries to try again
                                          (Kafka unreachable?); logged when it starts, then
                                          ``outbox_relay_recovered`` with ``step=delivery``
``outbox_relay_recovered``        warning ``step``, ``failures`` -- that step works again
``outbox_relay_heartbeat_kept``   warning ``owner``, ``reason`` -- a relay stopping did
                                          not delete its heartbeat within its stop
                                          timeout: the timeout ran out before its last
                                          round ended (e.g. waiting for acks while Kafka
                                          is unreachable), or the store stayed busy (the
                                          ``reason`` says which); ``outbox status`` shows
                                          it STALE until cleanup
``outbox_store_not_closed``       warning ``path``, ``waited_s`` -- ``SQLiteOutbox.close``
                                          timed out waiting for a thread still in SQLite;
                                          the connection is left to the process's exit
``outbox_relay_died``             critical ``error``, ``owner`` (with the traceback) -- the
                                          relay thread ended on an exception
``outbox_checkpoint_failed``      warning ``path``, ``error`` -- the SQLite outbox's WAL
                                          checkpoint thread failed (logged when it
                                          starts failing); commits checkpoint past
                                          10,000 pages instead
``fork_hook_failed``              error   ``object``, ``hook``, ``error`` -- an outbox
                                          store or relay failed to prepare for a fork, or
                                          (in the child) to give up what it inherited
                                          from the parent (see eventwire._fork)
``transport_close_failed``        error   (with the traceback) -- closing the relay's
                                          fatal producer failed
``tls_verification_disabled``     warning ``properties``, ``risk``, ``hint`` -- a config turns off
                                          the broker's certificate or host-name check
``config_file_exposes_secret``    warning ``file``, ``properties``, ``mode``, ``hint`` -- a config
                                          file other users can read holds a secret inline
``decode_failed``                 warning ``topic``, ``partition``, ``offset``, ``kind``,
                                          ``event_id``, ``event_type``, ``reason`` -- a
                                          consumed record could not be decoded
                                          (``Decoder.decode_or_none`` without ``on_error``);
                                          collapsed per (kind, topic)
================================= ======= ===================================================

Nothing is logged per event on the success path.

Secrets: reprs and ``KafkaConfig.redacted()`` show a property's value only if the
property is on an allow-list of librdkafka properties known to hold no secret
(:data:`eventwire._config.NON_SECRET_PROPERTIES`); every other value -- passwords,
private keys, OAuth secrets and extensions, and any property librdkafka adds later --
is masked. Text that comes from librdkafka (log lines, error strings) is scrubbed of
the masked values (``KafkaConfig.secret_values()``, by :class:`eventwire._config.Scrubber`)
before it is logged or raised;
masked values too short or plain to be worth hiding (fewer than 6 characters,
numbers, ``true``/``false``) are scrubbed only if their property's name says it holds
a secret, or the user wrapped them in :class:`~eventwire.Secret`.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import threading
import time
import weakref
from collections.abc import Callable, Hashable, Iterator
from typing import Any, Final

from eventwire._text import first_unsafe

__all__ = [
    "BUFFER_FULL",
    "COLLAPSE_WINDOW_S",
    "DELIVERY_FAILED",
    "DONE_CALLBACK_FAILED",
    "KAFKA_ERROR",
    "LIBRDKAFKA_LOG",
    "POLL_ERROR",
    "PRODUCER_FATAL",
    "PRODUCER_RECREATED",
    "STATS_ERROR",
    "EventLogger",
    "LogEvent",
    "RepeatCollapser",
    "capture_logs",
    "get_logger",
    "librdkafka_level",
]

DELIVERY_FAILED: Final = "delivery_failed"
BUFFER_FULL: Final = "buffer_full"
PRODUCER_FATAL: Final = "producer_fatal"
PRODUCER_RECREATED: Final = "producer_recreated"
KAFKA_ERROR: Final = "kafka_error"
LIBRDKAFKA_LOG: Final = "librdkafka_log"
POLL_ERROR: Final = "poll_error"
STATS_ERROR: Final = "stats_error"
DONE_CALLBACK_FAILED: Final = "done_callback_failed"

#: Identical collapsed events write at most one line per key per this many seconds.
COLLAPSE_WINDOW_S: Final = 30.0

# Attributes every LogRecord has: a field with one of these names cannot be an extra.
_RECORD_ATTRIBUTES: Final = frozenset(logging.makeLogRecord({}).__dict__) | {
    "message",
    "asctime",
}


class LogEvent(dict[str, Any]):
    """One eventwire event: its ``event`` name and fields; ``str()`` is a readable line.

    It is the ``msg`` of eventwire's log records: a dict, as structlog's
    ``ProcessorFormatter`` expects, whose ``str()`` (what plain :mod:`logging`
    formatters show) is ``event key=value ...``. Strings with spaces or quotes are
    shown quoted (``repr``).
    """

    __slots__ = ()

    def __str__(self) -> str:
        parts = [str(self.get("event", ""))]
        for key, value in self.items():
            if key in ("event", "repeated", "repeated_over_s"):
                continue
            parts.append(f"{key}={_show(value)}")
        line = " ".join(parts)
        if "repeated" in self:
            over = self.get("repeated_over_s", COLLAPSE_WINDOW_S)
            line += f" ({self['repeated']} more in the last {over:g} s)"
        return line


def _show(value: object) -> str:
    if isinstance(value, str):
        if (
            value
            and first_unsafe(value) is None
            and not any(c.isspace() or c in "'\"=" for c in value)
        ):
            return value
        return repr(value)  # control characters (ESC, NUL, ...) escaped: no forged lines
    return str(value)


class RepeatCollapser:
    """Decides which repeats of an event to log: the first, then one line per window.

    :meth:`hit` is called for every occurrence of ``key``. The first occurrence (or
    the first after a quiet window) is logged as is; the following ones within
    ``window_s`` of the last logged line are counted, not logged; the first one after
    the window is logged with the count, and starts a new window. Thread-safe; at most
    ``max_keys`` keys are remembered (the least recently logged are forgotten first).

    Args:
        window_s: the window, :data:`COLLAPSE_WINDOW_S` by default.
        clock: a monotonic clock in seconds (injectable for tests).
        max_keys: how many keys to remember.
    """

    def __init__(
        self,
        window_s: float = COLLAPSE_WINDOW_S,
        *,
        clock: Callable[[], float] = time.monotonic,
        max_keys: int = 1024,
    ) -> None:
        self.window_s = window_s
        self._clock = clock
        self._max_keys = max_keys
        self._lock = threading.Lock()
        # key -> [when the last line was logged, occurrences counted since]
        self._seen: dict[Hashable, list[float]] = {}
        _COLLAPSERS.add(self)

    def hit(self, key: Hashable) -> tuple[int, float] | None:
        """Note one occurrence of ``key``; say whether and how to log it.

        Returns ``None`` if it must not be logged (a repeat within the window), else
        ``(repeated, over_s)``: ``(0, 0.0)`` for a first occurrence, or the number of
        occurrences not logged since the key's last line and the seconds since it.
        """
        with self._lock:
            now = self._clock()
            state = self._seen.get(key)
            if state is not None and now - state[0] < self.window_s:
                state[1] += 1
                return None
            if state is None:
                if len(self._seen) >= self._max_keys:
                    del self._seen[next(iter(self._seen))]
                self._seen[key] = [now, 0]
                return (0, 0.0)
            repeated, over = int(state[1]), now - state[0]
            del self._seen[key]  # re-inserted last: the dict stays ordered by last line
            self._seen[key] = [now, 0]
            return (repeated, over)

    def reset(self) -> None:
        """Forget every key: the next occurrence of each is logged as a first."""
        with self._lock:
            self._seen.clear()


_COLLAPSERS: weakref.WeakSet[RepeatCollapser] = weakref.WeakSet()


class EventLogger:
    """Logs eventwire's structured events to one standard :mod:`logging` logger.

    ``log.warning("kafka_error", code=..., reason=...)`` makes one
    :class:`logging.LogRecord` whose ``msg`` is a :class:`LogEvent` (a dict, read as a
    line), whose ``event`` and fields are also record attributes (as ``extra=`` makes
    them), and whose caller is the eventwire code that logged. Nothing is done (not
    even the fields' formatting) when the logger is not enabled for the level. Field
    names never collide with :class:`logging.LogRecord`'s own attributes (``message``,
    ``name``, ``msg``, ...); such a field would be left out of the attributes.

    ``collapse=key`` collapses repeats of this event by ``key`` (with this logger's
    :class:`RepeatCollapser`); ``exc_info`` is passed to :mod:`logging`.
    """

    __slots__ = ("_collapser", "_logger", "name")

    def __init__(self, name: str) -> None:
        self.name = name
        self._logger = logging.getLogger(name)
        self._collapser = RepeatCollapser()

    @property
    def logger(self) -> logging.Logger:
        """The standard logger written to."""
        return self._logger

    def debug(self, event: str, /, **fields: Any) -> None:
        """Log ``event`` at DEBUG."""
        self._emit(logging.DEBUG, event, fields)

    def info(self, event: str, /, **fields: Any) -> None:
        """Log ``event`` at INFO."""
        self._emit(logging.INFO, event, fields)

    def warning(self, event: str, /, **fields: Any) -> None:
        """Log ``event`` at WARNING."""
        self._emit(logging.WARNING, event, fields)

    def error(self, event: str, /, **fields: Any) -> None:
        """Log ``event`` at ERROR."""
        self._emit(logging.ERROR, event, fields)

    def critical(self, event: str, /, **fields: Any) -> None:
        """Log ``event`` at CRITICAL."""
        self._emit(logging.CRITICAL, event, fields)

    def exception(self, event: str, /, **fields: Any) -> None:
        """Log ``event`` at ERROR with the exception being handled."""
        fields.setdefault("exc_info", True)
        self._emit(logging.ERROR, event, fields)

    def log(self, level: int, event: str, /, **fields: Any) -> None:
        """Log ``event`` at the standard ``level``."""
        self._emit(level, event, fields)

    def _emit(self, level: int, event: str, fields: dict[str, Any]) -> None:
        logger = self._logger
        if not logger.isEnabledFor(level):
            return
        collapse = fields.pop("collapse", None)
        if collapse is not None:
            verdict = self._collapser.hit((event, collapse))
            if verdict is None:
                return
            if verdict[0]:
                fields["repeated"] = verdict[0]
                fields["repeated_over_s"] = round(verdict[1])
        exc_info = fields.pop("exc_info", None)
        if exc_info is True:
            exc_info = sys.exc_info()
        elif isinstance(exc_info, BaseException):
            exc_info = (type(exc_info), exc_info, exc_info.__traceback__)
        if exc_info is not None and exc_info[0] is None:
            exc_info = None
        # The fields travel as extra= attributes too: structlog's ExtraAdder (and JSON
        # formatters) turn them back into keys, and "event" replaces the message line.
        extra: dict[str, Any] = {k: v for k, v in fields.items() if k not in _RECORD_ATTRIBUTES}
        extra["event"] = event
        # stacklevel 3: the caller of debug()/warning()/... (not _emit or the method)
        logger.log(
            level, LogEvent(event=event, **fields), exc_info=exc_info, extra=extra, stacklevel=3
        )

    def __repr__(self) -> str:
        return f"<EventLogger {self.name!r}>"


_LOGGERS: dict[str, EventLogger] = {}
_LOGGERS_LOCK = threading.Lock()


def get_logger(name: str) -> EventLogger:
    """The :class:`EventLogger` for the standard logger ``name`` (one per name)."""
    with _LOGGERS_LOCK:
        found = _LOGGERS.get(name)
        if found is None:
            found = _LOGGERS[name] = EventLogger(name)
        return found


def librdkafka_level(level: int) -> int:
    """The :mod:`logging` level of a librdkafka log line: ERROR for its errors, else DEBUG.

    ``level`` is a syslog level (0-7, as librdkafka's ``log_cb`` has it) or the
    :mod:`logging` level confluent-kafka maps it to before calling a ``logger``
    (CRITICAL 50 for syslog 0-2, ERROR 40 for 3, WARNING 30 for 4, INFO 20 for 5-6,
    DEBUG 10 for 7). Syslog 0-3 (ERROR and CRITICAL) stay ERROR; the rest, including
    librdkafka's warnings and notices, are DEBUG.
    """
    if 0 <= level <= 3 or level >= logging.ERROR:
        return logging.ERROR
    return logging.DEBUG


@contextlib.contextmanager
def capture_logs(name: str = "eventwire") -> Iterator[list[dict[str, Any]]]:
    """Collect every event logged under ``name`` (any level, any thread) while active.

    Like ``structlog.testing.capture_logs()`` for eventwire's events: each entry is
    the event dict (``event`` and its fields) plus ``log_level`` (``"warning"`` ...),
    and ``exc_info`` (the tuple) when there was a traceback. The logger's level is set to DEBUG
    for the duration and every collapse window is reset first, so the first
    occurrence of each collapsed event is seen. Meant for tests.
    """
    entries: list[dict[str, Any]] = []

    class _Capture(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if isinstance(record.msg, LogEvent):
                entry = dict(record.msg)
                entry["log_level"] = record.levelname.lower()
                if record.exc_info:
                    entry["exc_info"] = record.exc_info
                entries.append(entry)

    for collapser in list(_COLLAPSERS):
        collapser.reset()
    logger = logging.getLogger(name)
    handler = _Capture(logging.DEBUG)
    saved = logger.level
    logger.setLevel(logging.DEBUG)
    logger.addHandler(handler)
    try:
        yield entries
    finally:
        logger.removeHandler(handler)
        logger.setLevel(saved)
