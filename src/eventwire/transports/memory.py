"""An in-memory Kafka log for unit tests: topics, partitions, offsets, faults.

Records are placed with Kafka's Java partitioner, get real offsets, and can be
read back with :meth:`MemoryTransport.records`. Faults are injected with
:meth:`fail_next`, :meth:`fail_topic`, :meth:`queue_full_next`,
:meth:`set_fatal` and :meth:`pause`. It is never a substitute for the real
broker in integration tests.

The log (topics, records, and the faults injected with :meth:`fail_next`,
:meth:`fail_topic` and :meth:`queue_full_next`) is shared by every transport that
:meth:`MemoryTransport.recreate` makes from it, as a Kafka cluster is shared by
producers: a publisher that replaces a producer after a fatal error keeps writing
to the same log, and the test reads it through the instance it holds.
:meth:`pause`/:meth:`resume` and :meth:`set_fatal` act on one instance only: after
a replacement they no longer affect the publisher's current transport (pass
``producer_restarts=0`` to test what a final fatal error does).
"""

from __future__ import annotations

import functools
import itertools
import threading
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

from eventwire._errors import ConfigurationError
from eventwire._partitioner import java_partition
from eventwire.transports.base import (
    BaseTransport,
    DeliveryCallback,
    SendRejected,
    TransportQueueFull,
)

__all__ = ["MemoryRecord", "MemoryTransport"]


@dataclass(frozen=True, slots=True)
class MemoryRecord:
    """One record as stored in the in-memory log."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    headers: tuple[tuple[str, bytes], ...]
    timestamp_ms: int
    #: Global send order across all topics and partitions of the transport.
    sequence: int = 0

    def header(self, name: str) -> bytes | None:
        """The value of the first header called ``name``, or None."""
        return next((v for k, v in self.headers if k == name), None)


class _Error:
    __slots__ = ("_name", "_text")

    def __init__(self, name: str, text: str) -> None:
        self._name, self._text = name, text

    def name(self) -> str:
        return self._name

    def str(self) -> str:
        return self._text


class _Report:
    __slots__ = ("_offset", "_partition", "_timestamp", "_topic")

    def __init__(self, topic: str, partition: int, offset: int, ts: int) -> None:
        self._topic, self._partition, self._offset, self._timestamp = topic, partition, offset, ts

    def topic(self) -> str:
        return self._topic

    def partition(self) -> int:
        return self._partition

    def offset(self) -> int:
        return self._offset

    def timestamp(self) -> tuple[int, int]:
        return (1, self._timestamp)


_cached_partition = functools.lru_cache(maxsize=65_536)(java_partition)


#: What librdkafka adds to a record's key, value and headers before comparing it with
#: ``message.max.bytes`` (measured: the same for any key, value and headers).
_RECORD_OVERHEAD = 36


def _headers_size(headers: Sequence[tuple[str, bytes]]) -> int:
    """The headers' size as librdkafka counts it against ``message.max.bytes``.

    Each header: its name (UTF-8) and value, each after its length as a zigzag varint.
    """
    total = 0
    for name, value in headers:
        name_len = len(name.encode())
        total += name_len + len(value) + _varint_len(name_len) + _varint_len(len(value))
    return total


def _varint_len(n: int) -> int:
    """Bytes of ``n`` (>= 0) as a zigzag varint (Kafka's record format)."""
    zigzag = n << 1
    size = 1
    while zigzag >= 0x80:
        zigzag >>= 7
        size += 1
    return size


class _Log:
    """Topics, partitions and records, plus the faults injected into them."""

    def __init__(self, partitions: int, max_message_bytes: int, auto_create_topics: bool) -> None:
        self.lock = threading.Lock()
        self.partitions = partitions
        self.max_bytes = max_message_bytes
        self.auto_create = auto_create_topics
        self.topics: dict[str, list[list[MemoryRecord]]] = {}
        self.fail_next: list[tuple[str, str]] = []
        self.fail_topics: dict[str, str] = {}
        self.queue_full = 0
        self.sequence = itertools.count()
        self.round_robin: defaultdict[str, itertools.count[int]] = defaultdict(itertools.count)

    def append(
        self, topic: str, key: bytes | None, value: bytes, headers: Sequence[tuple[str, bytes]]
    ) -> tuple[_Error | None, _Report]:
        """Store one record (or apply an injected failure); call with ``lock`` held."""
        now = time.time_ns() // 1_000_000
        if self.fail_next:
            code, text = self.fail_next.pop(0)
            return _Error(code, text), _Report(topic, -1, -1, now)
        if topic in self.fail_topics:
            code = self.fail_topics[topic]
            return _Error(code, f"injected failure for topic {topic}"), _Report(topic, -1, -1, now)
        parts = self.topics.get(topic)
        if parts is None:
            if not self.auto_create:  # librdkafka's code and text for it
                error = _Error("UNKNOWN_TOPIC_OR_PART", "Broker: Unknown topic or partition")
                return error, _Report(topic, -1, -1, now)
            parts = self.topics[topic] = [[] for _ in range(self.partitions)]
        if key is None:
            partition = next(self.round_robin[topic]) % len(parts)
        else:
            partition = _cached_partition(key, len(parts))
        offset = len(parts[partition])
        parts[partition].append(
            MemoryRecord(
                topic, partition, offset, key, value, tuple(headers), now, next(self.sequence)
            )
        )
        return None, _Report(topic, partition, offset, now)


class MemoryTransport(BaseTransport):
    """A thread-safe in-memory transport.

    Reports are delivered synchronously inside :meth:`send` unless
    :meth:`pause` holds them back.

    Args:
        partitions: partition count of auto-created topics.
        max_message_bytes: records whose value, key and headers together are
            larger are rejected at once with ``MSG_SIZE_TOO_LARGE``, as librdkafka does.
        auto_create_topics: when False, sending to a topic not made with
            :meth:`create_topic` fails at once with ``UNKNOWN_TOPIC_OR_PART``, the code
            librdkafka reports for it (a real producer only after waiting for the
            topic's metadata, ``topic.metadata.propagation.max.ms``, 30 s by default).
    """

    def __init__(
        self,
        *,
        partitions: int = 3,
        max_message_bytes: int = 1_000_000,
        auto_create_topics: bool = True,
        _log: _Log | None = None,
    ) -> None:
        super().__init__()
        for name, value in (("partitions", partitions), ("max_message_bytes", max_message_bytes)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigurationError(
                    f"MemoryTransport({name}=) must be an int >= 1, not {value!r}"
                )
        self._shared = _log or _Log(partitions, max_message_bytes, auto_create_topics)
        self._lock = self._shared.lock
        self._fatal: tuple[str, str] | None = None
        self._paused = False
        self._held: list[tuple[DeliveryCallback, _Error | None, _Report]] = []
        self.closed = False

    # -- the transport ----------------------------------------------------------------------
    def send(
        self,
        topic: str,
        key: bytes | None,
        value: bytes,
        headers: Sequence[tuple[str, bytes]],
        on_delivery: DeliveryCallback,
    ) -> None:
        """Append the record (or apply an injected fault) and report it."""
        log = self._shared
        with self._lock:
            if self.closed:
                raise SendRejected("_DESTROY", "the transport is closed", fatal=True)
            if self._fatal is not None:
                raise SendRejected(*self._fatal, fatal=True)
            if log.queue_full > 0:
                log.queue_full -= 1
                raise TransportQueueFull()
            size = _RECORD_OVERHEAD + len(value) + len(key or b"") + _headers_size(headers)
            if size > log.max_bytes:
                raise SendRejected(
                    "MSG_SIZE_TOO_LARGE",
                    f"record of {size} bytes (value, key and headers) exceeds max {log.max_bytes}",
                )
            report = log.append(topic, key, value, headers)
        self._report(on_delivery, *report)

    def _report(self, cb: DeliveryCallback, err: _Error | None, msg: _Report) -> None:
        with self._lock:
            if self._paused:
                self._held.append((cb, err, msg))
                return
        cb(err, msg)

    def flush(self, timeout: float) -> int:
        """Reports are synchronous, so this returns the number held by :meth:`pause`."""
        with self._lock:
            return len(self._held)

    def close(self, timeout: float) -> int:
        """Fail every held report with ``_PURGE_INFLIGHT`` and refuse further sends.

        A record whose report :meth:`pause` held back is already in the log, so it
        is reported as in flight (possibly written), never as ``_PURGE_QUEUE``.
        """
        with self._lock:
            held, self._held, self._paused = self._held, [], False
            self.closed = True
        for cb, _err, msg in held:
            cb(_Error("_PURGE_INFLIGHT", "Purged in flight (already in the log)"), msg)
        return len(held)

    def queue_length(self) -> int:
        """Records whose reports :meth:`pause` holds back."""
        with self._lock:
            return len(self._held)

    def recreate(self) -> MemoryTransport:
        """A new, healthy transport writing to the same log (a new producer)."""
        return MemoryTransport(_log=self._shared)

    # -- test controls --------------------------------------------------------------------
    def create_topic(self, topic: str, partitions: int | None = None) -> None:
        """Create ``topic`` with ``partitions`` partitions (default: the transport's)."""
        log = self._shared
        with self._lock:
            log.topics.setdefault(topic, [[] for _ in range(partitions or log.partitions)])

    def records(self, topic: str | None = None) -> list[MemoryRecord]:
        """Every stored record (of ``topic``), ordered by topic, partition, offset.

        Sort by :attr:`MemoryRecord.sequence` for the order they were sent in.
        """
        log = self._shared
        with self._lock:
            topics = [topic] if topic is not None else sorted(log.topics)
            return [r for t in topics for part in log.topics.get(t, []) for r in part]

    def fail_next(self, count: int = 1, code: str = "_MSG_TIMED_OUT", reason: str = "") -> None:
        """Make the next ``count`` sends fail in their delivery report with ``code``."""
        with self._lock:
            self._shared.fail_next.extend([(code, reason or f"injected {code}")] * count)

    def fail_topic(self, topic: str, code: str = "TOPIC_AUTHORIZATION_FAILED") -> None:
        """Make every send to ``topic`` fail with ``code`` until :meth:`heal`."""
        with self._lock:
            self._shared.fail_topics[topic] = code

    def queue_full_next(self, count: int) -> None:
        """Make the next ``count`` sends find the local queue full."""
        with self._lock:
            self._shared.queue_full += count

    def set_fatal(self, code: str = "OUT_OF_ORDER_SEQUENCE_NUMBER", reason: str = "") -> None:
        """Put this transport into a fatal state, as librdkafka does, and fail held reports."""
        reason = reason or f"injected fatal {code}"
        with self._lock:
            self._fatal = (code, reason)
            held, self._held = self._held, []
        self._report_fatal(code, reason)
        for cb, _err, msg in held:
            cb(_Error("_FATAL", reason), msg)

    def pause(self) -> None:
        """Hold back delivery reports (records stay un-acknowledged) until :meth:`resume`."""
        with self._lock:
            self._paused = True

    def resume(self) -> None:
        """Deliver every held report, in order."""
        with self._lock:
            held, self._held, self._paused = self._held, [], False
        for cb, err, msg in held:
            cb(err, msg)

    def heal(self) -> None:
        """Remove every injected fault (and this transport's fatal state)."""
        log = self._shared
        with self._lock:
            log.fail_next.clear()
            log.fail_topics.clear()
            log.queue_full = 0
            self._fatal = None
