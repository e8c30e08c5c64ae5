"""The Kafka transport: the only module in eventwire that imports confluent_kafka.

It owns one ``confluent_kafka.Producer`` and a daemon thread that polls it, so
delivery reports arrive without the user ever calling ``poll()``. It turns
``BufferError`` into :class:`TransportQueueFull`, synchronous ``KafkaException``
into :class:`SendRejected`, and fatal errors (including the ``SystemError``
wrapping a fatal ``KafkaException`` that confluent-kafka raises when callbacks
are pending) into one call of the registered fatal callbacks.

It also routes librdkafka's log lines and errors into :mod:`logging` (the
``eventwire.kafka`` and ``eventwire.librdkafka`` loggers, repeats collapsed: see
:mod:`eventwire.observability.logging`) and, when asked (``on_stats``), its
statistics JSON to a callback. Every text that comes from librdkafka is scrubbed of
the configuration's secret values before it is logged or put in an exception.

Authentication and TLS failures are told apart from an unreachable broker: the
start-up check raises :class:`~eventwire.AuthenticationError` or
:class:`~eventwire.TLSError` as soon as librdkafka reports one (see
:meth:`KafkaTransport.check_connection` and :func:`classify_connect_error`).
"""

from __future__ import annotations

import difflib
import functools
import logging
import re
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple, Protocol

import confluent_kafka

from eventwire._errors import (
    BrokerUnavailableError,
    ConfigurationError,
)
from eventwire._properties import NON_SECRET_PROPERTIES, SECRET_PROPERTIES
from eventwire._scrub import Scrubber
from eventwire.observability.logging import get_logger, librdkafka_level
from eventwire.transports._connect_errors import (
    ConnectErrors,
    classify_connect_error,
    repeat_key,
)
from eventwire.transports.base import (
    BaseTransport,
    DeliveryCallback,
    SendRejected,
    TransportQueueFull,
)

__all__ = [
    "KafkaTransport",
    "classify_connect_error",
    "librdkafka_int_range",
    "librdkafka_knows",
    "librdkafka_version",
]

_log = get_logger("eventwire.kafka")

# How long the poll thread blocks in one poll() call. Short enough that close()
# is prompt, long enough that an idle producer costs nothing.
_POLL_INTERVAL_S = 0.1
# While publish() keeps being called, the poll thread polls only this often.
_BUSY_BACKOFF_S = 0.02
# send() serves ready reports (poll(0)) on every this-many-th call, not on each:
# each poll releases and re-takes the GIL, and every release while the poll thread
# waits for the GIL wakes it for nothing (a context switch). Reports wait at most
# seven more sends, or the poll thread's next look (_BUSY_BACKOFF_S) when sends
# stop; anyone blocked on a result wakes the poll thread at once (wake()).
# Measured: 17% less CPU per event untraced, 10% traced (median of 5 runs each).
# At a low rate (sends further apart than _POLL_GAP_NS) every send polls, so a
# report never waits for seven more sends: latency is that of polling each send.
_POLL_EVERY = 8
_POLL_GAP_NS = 200_000
_monotonic_ns = time.monotonic_ns
# librdkafka statistics period when a stats consumer is given and the
# configuration does not set statistics.interval.ms itself.
_DEFAULT_STATS_INTERVAL_MS = 15_000
# check_connection() asks for Metadata in slices this long, so an authentication or
# TLS failure reported meanwhile ends the check within one slice.
_CHECK_SLICE_S = 0.25


def _closed_produce(*_args: object, **_kwargs: object) -> None:
    """``produce`` of a transport that is closing or closed."""
    raise RuntimeError("the producer is closing")


class ClientConfig(Protocol):
    """What this transport reads of a :class:`~eventwire.KafkaConfig`.

    Structural, so the transport does not import the configuration module, which asks
    this one which properties librdkafka knows.
    """

    @property
    def bootstrap_servers(self) -> str:
        """``host:port[,host:port]``."""
        ...

    def to_librdkafka(self) -> dict[str, Any]:
        """The producer's librdkafka properties."""
        ...

    def client_properties(self) -> dict[str, Any]:
        """The connection and login properties (for a consumer or an admin client)."""
        ...

    def secret_values(self) -> list[str]:
        """Every secret value of the configuration (to scrub from texts)."""
        ...


class KafkaTransport(BaseTransport):
    """Sends records through librdkafka and reports each one exactly once.

    A record purged from librdkafka's queue (``_PURGE_QUEUE``) may already be in
    the log: a record whose request timed out waits in that queue for its retry
    (``queued_may_be_written``).

    Args:
        config: the producer configuration.
        connect_timeout: if set, check at construction that a broker answers a
            Metadata request within this many seconds, and raise
            :class:`~eventwire.BrokerUnavailableError` otherwise (or, at once,
            its :class:`~eventwire.AuthenticationError` / :class:`~eventwire.TLSError`
            subclasses: see :meth:`check_connection`). ``None`` skips the check
            (useful with an outbox, where Kafka may be down at start).
        on_stats: called with each librdkafka statistics JSON document (on the
            polling thread; exceptions are logged and swallowed). The period is
            ``statistics.interval.ms`` from the configuration, 15 s if unset.

    Raises:
        ConfigurationError: librdkafka rejected a property (the key is named;
            secret values are scrubbed from the message).
        BrokerUnavailableError: see ``connect_timeout`` (AuthenticationError and
            TLSError are BrokerUnavailableErrors).
    """

    queued_may_be_written = True

    def __init__(
        self,
        config: ClientConfig,
        *,
        connect_timeout: float | None = 10.0,
        on_stats: Callable[[str], None] | None = None,
    ) -> None:
        super().__init__()
        self._config = config
        self._scrub = Scrubber(config.secret_values())
        self._fatal_seen = False
        self._fatal_lock = threading.Lock()
        self._on_stats = on_stats
        props: dict[str, Any] = config.to_librdkafka()
        #: The authentication/TLS errors seen, for check_connection's typed errors.
        self._conn_errors = ConnectErrors(props)
        self._checked = False
        props["error_cb"] = self._on_error
        props["logger"] = _LibrdkafkaLog(self._scrub, self._conn_errors.note_fail_line)
        if on_stats is not None:
            props.setdefault("statistics.interval.ms", _DEFAULT_STATS_INTERVAL_MS)
            props["stats_cb"] = self._stats
        try:
            self._producer = confluent_kafka.Producer(props)
        except (confluent_kafka.KafkaException, ValueError, TypeError) as exc:
            raise ConfigurationError(
                self._scrub(f"Kafka producer configuration rejected: {_text(exc)}{_hint(exc)}")
            ) from None
        self._poll = self._producer.poll
        #: ``Producer.produce``, bound once (hot path); close()/abandon() swap in
        #: :func:`_closed_produce`, so later sends are refused at no cost to each send.
        self._produce: Callable[..., None] = self._producer.produce
        #: Per thread: True while it serves librdkafka's callbacks (inside poll/flush),
        #: when librdkafka must not be entered again (confluent-kafka aborts the process).
        self._serving = _Serving()
        self._sends = 0
        #: When send() last served reports (monotonic ns): see _POLL_GAP_NS.
        self._polled_at = 0
        self._wake = threading.Event()
        #: While publish() is busy the poll thread polls only this often (it serves
        #: reports inline); :meth:`wake` cuts the wait short for a blocked waiter.
        self.busy_backoff_s = _BUSY_BACKOFF_S
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll_loop, name="eventwire-poll", daemon=True)
        self._thread.start()
        if connect_timeout is not None:
            try:
                self.check_connection(connect_timeout)
            except BrokerUnavailableError:
                self.close(0)
                raise

    # -- the Transport protocol ------------------------------------------------
    def send(
        self,
        topic: str,
        key: bytes | None,
        value: bytes,
        headers: Sequence[tuple[str, bytes]],
        on_delivery: DeliveryCallback,
    ) -> None:
        """Enqueue one record; never blocks on the network."""
        try:
            self._produce(
                topic,
                value,
                key,
                headers=headers,
                on_delivery=on_delivery,
            )
        except BufferError:
            raise TransportQueueFull() from None
        except RuntimeError:  # closing, closed, or abandoned after a replacement
            raise SendRejected(
                "_DESTROY", "the producer is closed (or was replaced)", fatal=True
            ) from None
        except confluent_kafka.KafkaException as exc:
            err = exc.args[0]
            # produce() on a producer in a fatal state raises _FATAL without fatal() set
            fatal = err.fatal() or err.code() == confluent_kafka.KafkaError._FATAL
            raise SendRejected(err.name(), self._scrub(err.str()), fatal=fatal) from None
        # Serve ready reports here too, as a plain produce()+poll(0) loop does (but
        # only on every _POLL_EVERY-th send, or if the last such poll is older than
        # _POLL_GAP_NS): callbacks then mostly run on the publishing thread, without
        # a GIL hand-off to the poll thread per batch. The poll thread covers idle time.
        self._sends += 1  # unlocked: a lost increment only delays the poll thread once
        now = _monotonic_ns()
        if self._sends % _POLL_EVERY and now - self._polled_at < _POLL_GAP_NS:
            return
        self._polled_at = now
        serving = self._serving
        if serving.active:
            return  # a send from a delivery callback: never poll inside poll
        serving.active = True
        try:
            self._poll(0)
        except (confluent_kafka.KafkaException, SystemError) as exc:
            self._handle_poll_exception(exc)
        finally:
            serving.active = False

    def surface_fatal(self) -> None:
        """Poll once, so the fatal callbacks learn a fatal error's real code.

        ``produce()`` on a fatal producer only says ``_FATAL``; the cause (e.g.
        OUT_OF_ORDER_SEQUENCE_NUMBER) comes from librdkafka's error event.
        """
        if self._fatal_seen or self._serving.active:
            return
        self._serving.active = True
        try:
            self._poll(0)
        except (confluent_kafka.KafkaException, SystemError) as exc:
            self._handle_poll_exception(exc)
        except RuntimeError:
            pass  # closed after being abandoned
        finally:
            self._serving.active = False

    def in_report_callback(self) -> bool:
        """True on a thread that is running one of this producer's delivery callbacks."""
        return self._serving.active

    def flush(self, timeout: float) -> int:
        """Wait up to ``timeout`` s for outstanding reports; return how many remain.

        From inside a delivery callback it waits for nothing (librdkafka cannot be
        entered again there) and returns the number queued.
        """
        serving = self._serving
        if serving.active:
            return len(self)
        serving.active = True
        try:
            return int(self._producer.flush(timeout))
        except (confluent_kafka.KafkaException, SystemError) as exc:
            self._handle_poll_exception(exc)
            return len(self)
        except RuntimeError:  # closed after being abandoned: nothing of ours is left in it
            return 0
        finally:
            serving.active = False

    def close(self, timeout: float) -> int:
        """Flush up to ``timeout`` s, purge what remains (each gets a failed report), destroy.

        The producer is destroyed before this returns (librdkafka's threads and
        connections end), so nothing is sent behind the caller's back afterwards;
        a later :meth:`send` raises :class:`SendRejected` (``_DESTROY``). Called
        from the poll thread (a delivery callback), the destruction runs on a
        daemon thread instead, since librdkafka deadlocks closing from a callback.
        """
        # Refuse every later send first: a purge then empties the queue for good and
        # Producer.close() has nothing left to flush.
        self._produce = _closed_produce
        remaining = self.flush(timeout)
        if remaining:
            self._purge()
        self._stop.set()
        self._wake.set()
        if threading.current_thread() is self._thread:
            threading.Thread(target=self._dispose, name="eventwire-dispose", daemon=True).start()
        else:
            self._dispose()
        return remaining

    def abandon(self) -> None:
        """Give up this producer: it hit a fatal error and has been replaced.

        Returns at once. Its poll thread ends, and a daemon thread then purges and
        closes the producer, releasing librdkafka's threads and connections. Late
        reports from it (purges) are ignored by the handles, which were re-sent.
        """
        # Refuse every later send first: a purge then empties the queue for good and
        # Producer.close() has nothing left to flush.
        self._produce = _closed_produce
        self._stop.set()
        self._wake.set()
        threading.Thread(target=self._dispose, name="eventwire-dispose", daemon=True).start()

    def _purge(self) -> None:
        """Drop every queued and in-flight record, serving their ``_PURGE_*`` reports."""
        try:
            self._producer.purge(in_queue=True, in_flight=True, blocking=False)
            self._producer.flush(1.0)
        except (confluent_kafka.KafkaException, SystemError, RuntimeError) as exc:
            _log.info("producer_purge_error", error=self._scrub(repr(exc)))

    def _dispose(self) -> None:
        """Stop polling, purge what is left, and destroy the producer."""
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout=10.0)
        try:
            # Producer.close() would otherwise flush with no timeout (message.timeout.ms).
            # Sends are refused by now; one that was already past the check may still
            # add a record, hence a few rounds.
            for _ in range(5):
                if not len(self._producer):
                    break
                self._purge()
            self._producer.close()
        except (confluent_kafka.KafkaException, SystemError, RuntimeError) as exc:
            _log.info("producer_dispose_error", error=self._scrub(repr(exc)))

    def wake(self) -> None:
        """Make the poll thread serve reports now and as they come (a caller waits).

        Until the next ``send()``, the poll thread then blocks in ``poll()``
        instead of polling every ``busy_backoff_s``.
        """
        self._wake.set()

    def wait_for_space(self, timeout: float) -> None:
        """Serve delivery reports for up to ``timeout`` s so the local queue drains."""
        serving = self._serving
        if serving.active:  # inside a delivery callback: the poll thread drains it
            self._stop.wait(min(timeout, 0.01))
            return
        serving.active = True
        try:
            self._producer.poll(timeout)
        except (confluent_kafka.KafkaException, SystemError) as exc:
            self._handle_poll_exception(exc)
        except RuntimeError:  # closed after being abandoned
            self._stop.wait(min(timeout, _POLL_INTERVAL_S))
        finally:
            serving.active = False

    def recreate(self) -> KafkaTransport:
        """A new producer with the same configuration (no start-up connection check)."""
        return KafkaTransport(self._config, connect_timeout=None, on_stats=self._on_stats)

    def queue_length(self) -> int:
        """Records in librdkafka's queues (waiting to be sent or acknowledged); 0 once closed."""
        return len(self)

    def __len__(self) -> int:
        """Records in librdkafka's queues (waiting to be sent or acknowledged); 0 once closed."""
        try:
            return len(self._producer)
        except RuntimeError:  # destroyed by close() or after being abandoned
            return 0

    # -- internals -------------------------------------------------------------------
    def _poll_loop(self) -> None:
        self._serving.active = True  # this thread only ever serves callbacks
        poll = self._producer.poll
        seen_sends = -1
        while not self._stop.is_set():
            sends = self._sends
            busy = sends != seen_sends
            seen_sends = sends
            try:
                if busy:
                    # The publisher is busy and serves reports inline (see send()).
                    # Polling on every report would fight it for the GIL; polling
                    # every busy_backoff_s bounds how long the last reports of a
                    # burst wait when nobody waits for them (a waiter wakes us).
                    if self._wake.wait(self.busy_backoff_s):
                        self._wake.clear()
                        # Woken (wake()): the publisher now waits for a report. Unless
                        # it sends again first, the next poll blocks until one comes.
                        seen_sends = self._sends
                    poll(0)
                else:
                    poll(_POLL_INTERVAL_S)
            except (confluent_kafka.KafkaException, SystemError) as exc:
                self._handle_poll_exception(exc)
            except Exception as exc:
                _log.error("poll_error", error=self._scrub(repr(exc)), collapse=type(exc).__name__)

    def _handle_poll_exception(self, exc: BaseException) -> None:
        cause = exc if isinstance(exc, confluent_kafka.KafkaException) else exc.__cause__
        if isinstance(cause, confluent_kafka.KafkaException):
            err = cause.args[0]
            if err.fatal():
                self._fire_fatal(err.name(), err.str())
                return
        _log.error("poll_error", error=self._scrub(repr(exc)), collapse=type(exc).__name__)
        self._stop.wait(_POLL_INTERVAL_S)

    def _on_error(self, err: confluent_kafka.KafkaError) -> None:
        if err.fatal():
            self._fire_fatal(err.name(), err.str())
        else:
            code = err.name()
            reason = self._scrub(err.str())
            _log.warning("kafka_error", code=code, reason=reason, collapse=repeat_key(code, reason))
            self._conn_errors.note_error(code, reason)
            self._report_error(code, reason)

    def _stats(self, stats_json: str) -> None:
        # Runs inside poll(): an exception here would surface from poll()/flush().
        assert self._on_stats is not None
        try:
            self._on_stats(stats_json)
        except Exception as exc:
            _log.error("stats_error", error=self._scrub(repr(exc)), collapse=type(exc).__name__)

    def _fire_fatal(self, code: str, reason: str) -> None:
        with self._fatal_lock:
            if self._fatal_seen:
                return
            self._fatal_seen = True
        reason = self._scrub(reason)  # it ends up in ProducerFatalError's message too
        _log.error("producer_fatal", code=code, reason=reason)
        self._report_fatal(code, reason)

    def check_connection(self, timeout: float) -> None:
        """Return once a broker answers a Metadata request; raise if none does in ``timeout`` s.

        Raises:
            AuthenticationError: as soon as librdkafka reports ``_AUTHENTICATION``
                (a broker rejected the SASL credentials), without waiting out the
                timeout. Names the broker, the mechanism and the user.
            TLSError: as soon as librdkafka reports ``_SSL`` (the broker's
                certificate was not accepted: untrusted CA or a name that does not
                match), or once a TLS/plaintext mismatch was seen twice; at the
                timeout if seen once. A mismatch is a ``_TRANSPORT`` error with
                librdkafka's "SSL handshake failed ... PLAINTEXT broker listener?"
                (a TLS client on a plaintext port), or, for a plaintext client, a
                broker that drops every connection during its first request
                (librdkafka's FAIL line "Disconnected ... in state APIVERSION_QUERY":
                a TLS port, or no Kafka listener at all).
            AuthenticationError: also at the timeout, instead of BrokerUnavailableError,
                when a client without SASL saw the broker close connections within 2 s
                of setting them up (librdkafka's "Disconnected ... in state UP"): the
                listener most likely requires SASL (``mechanism`` is None).
            BrokerUnavailableError: no broker answered within ``timeout`` s.

        Only errors reported since this check began count (and, for the first
        check, since the producer was created): a later check, e.g. a circuit
        breaker's probe, is not failed by an error that has since been fixed.
        """
        start = time.monotonic()
        since = start if self._checked else self._conn_errors.created_at
        self._checked = True
        deadline = start + timeout
        last: Exception = TimeoutError("no attempt")
        while True:
            failure = self._conn_errors.failure(since, self._config.bootstrap_servers, final=False)
            if failure is not None:
                raise failure
            left = deadline - time.monotonic()
            if left <= 0:
                break
            try:
                self._producer.list_topics(timeout=min(left, _CHECK_SLICE_S))
                return
            except confluent_kafka.KafkaException as exc:
                last = exc
            except RuntimeError:
                # "Handle has been closed": close() (e.g. a relay's stop()) ended the
                # producer under this check, a breaker's probe: no broker answered.
                if not self._stop.is_set():
                    raise
                raise BrokerUnavailableError(
                    "the producer was closed during the connection check"
                ) from None
        failure = self._conn_errors.failure(since, self._config.bootstrap_servers, final=True)
        if failure is not None:
            raise failure
        raise BrokerUnavailableError(
            self._scrub(
                f"no Kafka broker at {self._config.bootstrap_servers!r} answered within "
                f"{timeout:g}s ({_text(last)}). Check bootstrap_servers and that the "
                "brokers are up, or pass connect_timeout=None to start without the check."
            )
        ) from None


#: A name no librdkafka has: set after the property asked about, so that librdkafka
#: refuses the configuration at once either way, and no client is ever created.
_NOT_A_PROPERTY = "eventwire.not-a-property"


def librdkafka_version() -> str:
    """The version of the librdkafka that confluent-kafka loaded (e.g. ``"2.16.0"``)."""
    return str(confluent_kafka.libversion()[0])


def librdkafka_knows(name: str) -> bool:
    """Whether the installed librdkafka has a global or topic property called ``name``.

    Asked of librdkafka itself, without creating a client (no thread, no connection,
    no log line): ``name`` is set with a placeholder value, then a name no librdkafka
    has. librdkafka refuses the configuration at the first name it does not know, so
    the refused name says whether it knows ``name`` (a placeholder value it finds
    invalid for ``name`` means it knows it too). The keys confluent-kafka handles in
    Python (``error_cb``, ``on_delivery``...) are not librdkafka's: callers check
    those first (:data:`eventwire._properties.CALLBACKS` and ``RESERVED``).
    """
    try:
        confluent_kafka.Producer({name: "0", _NOT_A_PROPERTY: "0"})
    except confluent_kafka.KafkaException as exc:
        return f'No such configuration property: "{name}"' not in _text(exc)
    except (TypeError, ValueError):  # confluent-kafka's own keys want other types
        return False
    return True  # not reached: the second name is always refused


#: librdkafka's message for an integer property given a value out of its range.
_OUT_OF_RANGE = re.compile(r"value (-?\d+) is outside allowed range (-?\d+)\.\.(-?\d+)")
_C_INT_MIN, _C_INT_MAX = -(2**31), 2**31 - 1


@functools.lru_cache(maxsize=256)
def librdkafka_int_range(name: str) -> tuple[int, int] | None:
    """The range of the installed librdkafka's integer property ``name``; None if not one.

    Asked without creating a client (as :func:`librdkafka_knows`): ``name`` is set to
    the smallest C int, then a name no librdkafka has, so the configuration is always
    refused. An integer property of a narrower range refuses that value, naming its
    range; one that takes it (the whole C int range) refuses a non-number. A string,
    float, boolean or enum property (or a name librdkafka does not know) is None:
    librdkafka checks those itself, or takes any text.
    """

    def refusal(value: str) -> str:
        try:
            confluent_kafka.Producer({name: value, _NOT_A_PROPERTY: "0"})
        except confluent_kafka.KafkaException as exc:
            return _text(exc)
        except (TypeError, ValueError):  # confluent-kafka's own keys (callbacks)
            return ""
        return ""  # not reached: the second name is always refused

    text = refusal(str(_C_INT_MIN))
    match = _OUT_OF_RANGE.search(text)
    if match:
        low, high = int(match[2]), int(match[3])
        return (low, high) if match[1] == str(_C_INT_MIN) else None
    if _NOT_A_PROPERTY in text and "Invalid value" in refusal("x"):
        return _C_INT_MIN, _C_INT_MAX
    return None


class _Serving(threading.local):
    """Per thread: whether it is inside one of this producer's polls (serving callbacks)."""

    active = False


class _LibrdkafkaLog:
    """Routes librdkafka's own log lines into :mod:`logging` (``eventwire.librdkafka``).

    Errors (syslog level 0-3) are ERROR, collapsed per (facility, broker thread);
    everything else is DEBUG (see :func:`~eventwire.observability.logging.librdkafka_level`).
    """

    _log = get_logger("eventwire.librdkafka")

    def __init__(self, scrub: Scrubber, on_fail: Callable[[str], None] | None = None) -> None:
        self._scrub = scrub
        self._on_fail = on_fail

    def log(self, level: int, fmt: str, *args: object) -> None:
        """Called by confluent-kafka as ``log(level, "%s [%s] %s", facility, name, text)``.

        A ``FAIL`` line (a broker connection failed) is also passed to ``on_fail``.
        """
        to = librdkafka_level(level)
        facility = str(args[0]) if len(args) == 3 else ""
        if facility == "FAIL" and self._on_fail is not None:
            self._on_fail(self._scrub(fmt % args))
        if not self._log.logger.isEnabledFor(to):
            return
        message = self._scrub(fmt % args if args else fmt)
        if to >= logging.ERROR:
            thread = _THREAD.search(message)
            where = thread.group(1) if thread else _DIGITS.sub("#", message)
            self._log.log(
                to, "librdkafka_log", facility=facility, text=message, collapse=(facility, where)
            )
        else:
            self._log.log(to, "librdkafka_log", facility=facility, text=message)


_THREAD = re.compile(r"\[thrd:([^\]]*)\]")
_DIGITS = re.compile(r"\d+")


_NO_SUCH_PROPERTY = re.compile(r'No such configuration property: "([^"]+)"')


def _hint(exc: BaseException) -> str:
    """For an unknown property, the known one it most looks like (as config files get)."""
    unknown = _NO_SUCH_PROPERTY.search(_text(exc))
    if unknown is None:
        return ""
    name = unknown.group(1)
    known = sorted(NON_SECRET_PROPERTIES | SECRET_PROPERTIES)
    close = difflib.get_close_matches(name.replace("_", "."), known, n=1)
    return f"; did you mean {close[0]!r}?" if close else ""


def _text(exc: BaseException) -> str:
    arg = exc.args[0] if exc.args else exc
    if isinstance(arg, confluent_kafka.KafkaError):
        return f"{arg.name()}: {arg.str()}"
    return str(arg)


#: One record read by :func:`read_records`: ``(partition, offset, key, value, headers)``.
TopicRecord = tuple[int, int, bytes | None, bytes, tuple[tuple[str, bytes], ...]]


class TopicRead(NamedTuple):
    """What :func:`read_records` read, and whether it is the whole topic."""

    #: Sorted by partition, then offset.
    records: list[TopicRecord]
    #: True if every partition was read to its end; False if ``max_records`` or the
    #: timeout cut the read short (the topic may hold more).
    complete: bool


def read_records(
    config: ClientConfig, topic: str, *, max_records: int, timeout: float
) -> TopicRead:
    """Read up to ``max_records`` committed records of ``topic`` from the start of the log.

    Each record is ``(partition, offset, key, value, headers)``, sorted by partition
    then offset; a missing value or header value reads as ``b""``. ``complete`` says
    whether that is all of the topic: check it before acting on "every record".

    ``config`` (a :class:`~eventwire.KafkaConfig`) gives the connection and login
    (``client_properties()``: TLS, SASL, ``oauth_cb``) the consumer uses; its error
    texts are scrubbed of the config's secrets.

    Promises: a throwaway consumer group reads every partition from its first offset
    (``read_committed``); no offset is committed and
    nothing is produced. It returns at the end of every partition, at ``max_records``
    or once no record came for about ``timeout`` seconds, whichever comes first, and
    closes the consumer.

    Raises:
        BrokerUnavailableError: the topic's metadata could not be read within
            ``timeout`` (no broker answered, or the topic does not exist).
        ConfigurationError: librdkafka refused the consumer's configuration (the
            property is named; secrets are scrubbed).
    """
    import time  # noqa: PLC0415 - kept local: only the dlq command reads topics
    import uuid  # noqa: PLC0415

    scrub = Scrubber(config.secret_values())
    bootstrap_servers = config.bootstrap_servers
    try:
        consumer = confluent_kafka.Consumer(
            {
                **config.client_properties(),
                "group.id": f"eventwire-read-{uuid.uuid4().hex[:12]}",
                "enable.auto.commit": False,
                "enable.partition.eof": True,
                "isolation.level": "read_committed",
                "log_level": 3,
                # its log lines go through logging, scrubbed and collapsed, as a producer's
                "logger": _LibrdkafkaLog(scrub),
            }
        )
    except confluent_kafka.KafkaException as exc:
        raise ConfigurationError(
            scrub(f"Kafka consumer configuration rejected: {_text(exc)}")
        ) from None
    try:
        deadline = time.monotonic() + timeout
        while True:  # in slices of 1 s: a Ctrl-C is not held up for the whole timeout
            try:
                left = max(deadline - time.monotonic(), 0.1)
                meta = consumer.list_topics(topic, timeout=min(left, 1.0)).topics[topic]
                break
            except confluent_kafka.KafkaException as exc:
                if time.monotonic() >= deadline:
                    raise BrokerUnavailableError(
                        scrub(
                            f"cannot read topic {topic!r} from {bootstrap_servers!r}: {_text(exc)}"
                        )
                    ) from None
        if meta.error is not None:
            raise BrokerUnavailableError(
                scrub(f"cannot read topic {topic!r} from {bootstrap_servers!r}: {meta.error.str()}")
            )
        partitions = set(meta.partitions)
        start = confluent_kafka.OFFSET_BEGINNING
        consumer.assign([confluent_kafka.TopicPartition(topic, p, start) for p in partitions])
        records: list[TopicRecord] = []
        at_end: set[int] = set()
        while len(records) < max_records and at_end != partitions:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            for msg in consumer.consume(max_records - len(records), min(left, 0.5)):
                deadline = time.monotonic() + timeout  # records keep coming: not stuck
                err = msg.error()
                partition = msg.partition() or 0
                if err is not None:
                    if err.code() == confluent_kafka.KafkaError._PARTITION_EOF:
                        at_end.add(partition)
                    continue
                at_end.discard(partition)
                raw = msg.headers() or []
                headers = tuple(
                    (k, v.encode() if isinstance(v, str) else v or b"")
                    for k, v in (raw.items() if isinstance(raw, dict) else raw)
                )
                records.append(
                    (partition, msg.offset() or 0, msg.key(), msg.value() or b"", headers)
                )
        records.sort(key=lambda r: (r[0], r[1]))
        return TopicRead(records, at_end == partitions)
    finally:
        consumer.close()
