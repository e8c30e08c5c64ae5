"""CloudEvents 1.0 Kafka protocol binding, binary content mode.

Each record carries ``ce_specversion``, ``ce_id``, ``ce_type``, ``ce_source``,
``ce_time`` and ``content-type`` headers; the value is the encoded event. The
per-type part of the header list is built once (:class:`HeaderTemplate`); only
the id and time are made per event.

What a caller adds -- extra headers, an ``event_id`` -- is checked before a record
is built (:func:`check_extra_headers`, :func:`check_event_id`): librdkafka takes
header names as C strings, so a name that is not valid UTF-8 crashes the process
inside ``produce()`` and a name with a NUL is cut short on the wire; and a
caller's ``ce_*`` or ``content-type`` header would be a second copy of one
eventwire writes, which a last-wins reader takes for the real one.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import uuid_utils

from eventwire._errors import ConfigurationError, SerializationError
from eventwire._text import first_unsafe

__all__ = [
    "CE_HEADER_COUNT",
    "HeaderTemplate",
    "batch_event_ids",
    "batch_events",
    "Headers",
    "check_event_id",
    "check_extra_headers",
    "is_reserved_header",
    "new_event_id",
    "rfc3339_millis",
    "uuid7",
]

#: Kafka record headers as confluent-kafka takes them.
Headers = list[tuple[str, bytes]]

SPECVERSION = b"1.0"

_getrandbits = random.getrandbits  # reseeded after fork by the random module
_time_ns = time.time_ns
# One-entry caches, each ONE (key, value) tuple: a thread swaps the whole tuple in
# with a single assignment and reads it with a single load, so it can never see the
# key of one call with the value of another, however threads interleave (issue 10).
_second_cache: tuple[int, str] = (-1, "")
# ".000Z" ... ".999Z": indexing is ~4x faster than formatting ``f".{milli:03d}Z"``.
_MILLIS = tuple(f".{milli:03d}Z" for milli in range(1000))


#: ``str(uuid7())`` is a new event id (what :func:`new_event_id` returns), for hot paths.
uuid7 = uuid_utils.uuid7


def new_event_id(now_ms: int | None = None) -> str:
    """A new UUIDv7 (RFC 9562) string: 48-bit Unix milliseconds + 74 random bits.

    Python 3.11 has no ``uuid.uuid7``. ``uuid-utils`` (Rust) makes one in about a
    quarter of the time of the pure-Python layout below, which is kept for
    explicit timestamps (tests, re-stamping).
    """
    if now_ms is None:
        return str(uuid7())
    return _pure_python_uuid7(now_ms)


def _pure_python_uuid7(ms: int) -> str:
    rand = _getrandbits(74)
    value = (
        (ms & 0xFFFFFFFFFFFF) << 80
        | 0x7 << 76
        | (rand >> 62) << 64
        | 0b10 << 62
        | (rand & 0x3FFFFFFFFFFFFFFF)
    )
    h = f"{value:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def rfc3339_millis(ms: int) -> str:
    """Format Unix milliseconds as RFC 3339 UTC, e.g. ``2026-11-27T05:42:35.123Z``.

    Thread-safe: the cached second's prefix is kept with its second in one tuple.
    """
    global _second_cache  # noqa: PLW0603 - a one-entry cache
    second, milli = divmod(ms, 1000)
    cached = _second_cache
    if cached[0] == second:
        prefix = cached[1]
    else:
        prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        _second_cache = (second, prefix)
    return prefix + _MILLIS[milli]


_SPECVERSION_HEADER = ("ce_specversion", SPECVERSION)
#: How many headers :meth:`HeaderTemplate.build` writes before the extra ones.
CE_HEADER_COUNT = 6
_time_cache: tuple[int, bytes] = (-1, b"")


def _ce_time(ms: int) -> bytes:
    """``rfc3339_millis(ms)`` as bytes, cached for the current millisecond (thread-safe)."""
    global _time_cache  # noqa: PLW0603 - a one-entry cache on the hot path
    cached_ms, value = _time_cache
    if cached_ms == ms:
        return value
    value = rfc3339_millis(ms).encode()
    _time_cache = (ms, value)
    return value


class HeaderTemplate:
    """The CloudEvents headers of one event type, minus the per-event id and time."""

    __slots__ = ("_content_type", "_source", "_type")

    def __init__(self, *, type_name: str, source: str, content_type: str) -> None:
        self._type = ("ce_type", type_name.encode())
        self._source = ("ce_source", source.encode())
        self._content_type = ("content-type", content_type.encode())

    def build(
        self, event_id: str, time_ms: int, extra: Sequence[tuple[str, bytes]] | None = None
    ) -> Headers:
        """Return the full header list for one event."""
        cached = _time_cache  # _ce_time's hit path, inlined: one load, one tuple
        headers: Headers = [
            _SPECVERSION_HEADER,
            ("ce_id", event_id.encode()),
            self._type,
            self._source,
            ("ce_time", cached[1] if cached[0] == time_ms else _ce_time(time_ms)),
            self._content_type,
        ]
        if extra:
            headers.extend(extra)
        return headers


# -- what a caller adds ------------------------------------------------------------------

#: Header names already checked (plain ``str`` only); callers reuse a handful of
#: names, so a set lookup replaces the checks. Bounded: names made per event
#: (a bad idea, but legal) are checked each time instead of filling memory.
_GOOD_NAMES: set[str] = set()
_GOOD_NAMES_MAX = 1024


#: The W3C trace-context headers eventwire's tracing writes (its propagator's fields).
_TRACE_HEADERS = frozenset({"traceparent", "tracestate", "baggage"})


def is_reserved_header(name: str) -> bool:
    """True for a header name eventwire writes or reserves.

    ``ce_*`` and ``content-type`` (the CloudEvents binding), and ``traceparent``,
    ``tracestate`` and ``baggage`` (the W3C trace context, written from the current
    OpenTelemetry context: a caller's own copy would be read by a consumer that keeps
    the first, or the last, and link the event to the wrong trace).

    Case-insensitive: the CloudEvents Kafka binding's names are lowercase, but a
    reader that folds case would still take ``CE_ID`` for ``ce_id``. Every ``ce_``
    name is reserved, not only the six written today: a CloudEvents reader maps
    each ``ce_`` header to an attribute, so a caller's ``ce_subject`` would be read
    as one that eventwire never set (and would clash if it ever sets it).
    """
    folded = name.lower()
    return folded.startswith("ce_") or folded == "content-type" or folded in _TRACE_HEADERS


def check_extra_headers(
    headers: Sequence[tuple[str, bytes]],
) -> Sequence[tuple[str, bytes]]:
    """Return ``headers`` (a list or tuple) if Kafka can carry them after eventwire's own.

    Each must be a ``(str, bytes)`` pair whose name is valid UTF-8 text without a
    NUL character and is not reserved (:func:`is_reserved_header`). Values are raw
    bytes and may hold anything. Any other iterable is copied into a list first,
    so a generator is not used up by the check.

    Raises:
        SerializationError: the first bad header, named, with what to do.
    """
    if type(headers) is not list and type(headers) is not tuple:
        if isinstance(headers, str | bytes | Mapping) or not isinstance(headers, Iterable):
            raise SerializationError(
                f"headers must be a list of (name, value) pairs, e.g. [('tenant', b'acme')], "
                f"not a {type(headers).__name__}"
            )
        headers = list(headers)
    good = _GOOD_NAMES
    try:  # the usual case: known names, bytes values
        for header in headers:
            if (
                type(header) is not tuple
                or len(header) != 2
                or type(header[1]) is not bytes
                or header[0] not in good
            ):
                _check_header(header)
    except TypeError:  # an unhashable name
        for header in headers:
            _check_header(header)
    return headers


def _check_header(header: object) -> None:
    # Never the value in the message: a header may carry a token.
    if not isinstance(header, tuple) or len(header) != 2:
        raise SerializationError(
            f"a header is a {_shape_of(header)}, not a (str, bytes) pair: Kafka headers are "
            "a name and raw bytes, e.g. ('tenant', b'acme')"
        )
    name, value = header
    if not isinstance(value, bytes):
        raise SerializationError(
            f"header {_name_for_message(name)} has a {type(value).__name__} value, not bytes: "
            "Kafka header values are raw bytes; encode it, e.g. ('tenant', b'acme')"
        )
    _check_header_name(name)


def _shape_of(header: object) -> str:
    """What a malformed header is, without its contents."""
    if isinstance(header, tuple | list):
        return f"{type(header).__name__} of {len(header)} items"
    return type(header).__name__


def _name_for_message(name: object) -> str:
    """A header's name for an error message (a name only if it is text)."""
    return repr(name) if isinstance(name, str) else f"with a {type(name).__name__} name"


def _check_header_name(name: object) -> None:
    if not isinstance(name, str):
        raise SerializationError(
            f"header name {name!r} is a {type(name).__name__}, not a str: Kafka header "
            "names are text, e.g. ('tenant', b'acme')"
        )
    if not name.isascii():
        try:
            name.encode()
        except UnicodeEncodeError as exc:
            raise SerializationError(
                f"header name {name!r} is not valid text ({exc.reason} at position "
                f"{exc.start}): Kafka header names are UTF-8, and the Kafka client would "
                "crash the process on it. Fix the name (it usually comes from bytes "
                "decoded with errors='surrogateescape')."
            ) from None
    if "\0" in name:
        raise SerializationError(
            f"header name {name!r} holds a NUL character: Kafka's client would cut the "
            f"name there and send it as {name.partition(chr(0))[0]!r}. Remove the NUL."
        )
    if name.lower() in _TRACE_HEADERS:
        raise SerializationError(
            f"header {name!r} is reserved: eventwire writes the W3C trace context "
            "(traceparent, tracestate, baggage) from the current OpenTelemetry context, "
            "and a second copy would link the event to the wrong trace. Make the span "
            "current instead (tracer.start_as_current_span(...), or "
            "opentelemetry.context.attach(extract(incoming_headers))) and publish inside it."
        )
    if is_reserved_header(name):
        raise SerializationError(
            f"header {name!r} is reserved: eventwire writes the CloudEvents attributes "
            "(ce_specversion, ce_id, ce_type, ce_source, ce_time) and content-type itself, "
            "and reserves every ce_ name; a second copy would be taken for the real one "
            "by a reader that keeps the last. "
            + (
                "Pass the id as publish(..., event_id=...) instead."
                if name.lower() == "ce_id"
                else "Rename the header (e.g. without the ce_ prefix)."
            )
        )
    if type(name) is str and len(_GOOD_NAMES) < _GOOD_NAMES_MAX:
        _GOOD_NAMES.add(name)


def check_event_id(event_id: object) -> str:
    """Return ``event_id`` if it can be a ``ce_id``: non-empty, printable, valid UTF-8 text.

    An empty id is refused rather than replaced by a new one: a re-send under a new id
    could not be de-duplicated. Control characters (NUL, newline, ESC...) are refused:
    consumers and stores (PostgreSQL text) cannot keep a NUL, and a newline or an
    escape sequence in an id would forge lines in the logs that quote it.

    Raises:
        SerializationError: it is not a str, is empty, is not valid UTF-8 text, or
            holds a character that is not printable.
    """
    if not isinstance(event_id, str):
        raise SerializationError(
            f"event_id {event_id!r} is a {type(event_id).__name__}, not a str: the "
            "CloudEvents ce_id is text; pass e.g. event_id=str(...)"
        )
    if not event_id:
        raise SerializationError(
            "event_id is empty: a ce_id must not be. Pass the id the event was first "
            "published with (handle.event_id), or None for a new one."
        )
    if not event_id.isascii():
        try:
            event_id.encode()
        except UnicodeEncodeError as exc:
            raise SerializationError(
                f"event_id {event_id!r} is not valid text ({exc.reason} at position "
                f"{exc.start}): the ce_id header is UTF-8. Pass the id the event was "
                "first published with, as it was returned (handle.event_id)."
            ) from None
    if "\0" in event_id:
        raise SerializationError(
            f"event_id {event_id!r} holds a NUL character, which consumers and outbox "
            "stores (PostgreSQL text) cannot keep. Remove the NUL."
        )
    if first_unsafe(event_id) is not None:
        raise SerializationError(
            f"event_id {event_id!r} holds a control character (such as a newline, ESC or "
            "a bidirectional override), which CloudEvents does not allow in a ce_id: ids "
            "are quoted in logs and errors. Use printable text, e.g. a UUID."
        )
    return event_id


def batch_events(events: object, is_event: Callable[[object], bool]) -> list[Any]:
    """``publish_many``'s ``events`` as a list, read whole before anything is published.

    So an iterable that raises part-way (a generator, a query) raises here with
    nothing enqueued, not after a prefix went out.

    Raises:
        ConfigurationError: not an iterable of events (a str or bytes is not one, and a
            single event, even an iterable one such as a pydantic model, which
            ``is_event`` recognises, is passed to ``publish()``).
    """
    if (
        isinstance(events, str | bytes | bytearray)
        or not isinstance(events, Iterable)
        or is_event(events)
    ):
        raise ConfigurationError(
            f"publish_many takes an iterable of events, not a {type(events).__name__}: "
            "e.g. publish_many([event1, event2]); publish one event with publish()"
        )
    return list(events)


def batch_event_ids(event_ids: object, count: int) -> list[str | None]:
    """``publish_many``'s ``event_ids`` as a list of one id per event, checked as a whole.

    (Each id is checked by :func:`check_event_id` when its event is prepared.)

    Raises:
        ConfigurationError: not an iterable of ids (a str or bytes is one id, not
            several), not ``count`` of them, or an id given twice.
    """
    if isinstance(event_ids, str | bytes) or not isinstance(event_ids, Iterable):
        raise ConfigurationError(
            f"event_ids must be a sequence of ids, one per event, not a "
            f"{type(event_ids).__name__}: e.g. event_ids=[id1, id2]"
        )
    ids: list[str | None] = list(event_ids)
    if len(ids) != count:
        raise ConfigurationError(
            f"publish_many got {count} events but {len(ids)} event_ids; "
            "pass one id per event, in the same order"
        )
    seen: dict[object, int] = {}
    for n, eid in enumerate(ids):
        if eid is None:
            continue
        try:
            first = seen.setdefault(eid, n)
        except TypeError:
            continue  # unhashable: check_event_id refuses it with its own message
        if first != n:
            raise ConfigurationError(
                f"event_ids holds {eid!r} twice (events {first} and {n}): consumers "
                "de-duplicate on ce_id and would drop one of them. Give each event its own id."
            )
    return ids
