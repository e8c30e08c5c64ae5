"""Error policy: what a Kafka error code means for the event that got it.

librdkafka sets neither ``retriable()`` nor ``fatal()`` on the errors it hands to
delivery callbacks, so eventwire classifies by error *name* (stable across
versions, unlike numbers, and needing no import of confluent_kafka).
"""

from __future__ import annotations

from eventwire._errors import ErrorClass

__all__ = ["KNOWN_CODES", "classify", "is_possibly_written", "meaning"]

# Codes the application sees that will fail the same way if re-sent.
_PERMANENT = frozenset(
    {
        "MSG_SIZE_TOO_LARGE",
        "_MSG_SIZE_TOO_LARGE",
        "RECORD_LIST_TOO_LARGE",
        "TOPIC_AUTHORIZATION_FAILED",
        "CLUSTER_AUTHORIZATION_FAILED",
        "TRANSACTIONAL_ID_AUTHORIZATION_FAILED",
        "INVALID_REQUIRED_ACKS",
        "CORRUPT_MESSAGE",  # Kafka's name for code 2
        "INVALID_MSG",  # librdkafka's name for code 2 (it retries it itself first)
        "INVALID_RECORD",
        "INVALID_TOPIC_EXCEPTION",
        "TOPIC_EXCEPTION",
        "_UNKNOWN_TOPIC",
        "UNKNOWN_TOPIC_OR_PART",
        "_UNKNOWN_PARTITION",
        "_INVALID_ARG",
        "_KEY_SERIALIZATION",
        "_VALUE_SERIALIZATION",
        "POLICY_VIOLATION",
        "UNSUPPORTED_FOR_MESSAGE_FORMAT",
        # the outbox holds another, unsent event under this event_id
        "_EVENT_ID_CONFLICT",
    }
)

# Codes that mean the producer instance itself is unusable.
_FATAL = frozenset(
    {
        "_FATAL",
        "OUT_OF_ORDER_SEQUENCE_NUMBER",
        "INVALID_PRODUCER_EPOCH",
        "PRODUCER_FENCED",
        "UNKNOWN_PRODUCER_ID",
        "INVALID_PRODUCER_ID_MAPPING",
    }
)

# Not delivered yet, but durable: the outbox holds it and a relay sends it. Not a
# loss and never to be re-sent (a re-send would publish it twice).
_DEFERRED = frozenset({"_IN_OUTBOX"})

# Failed, but the broker may have written the record (or the outbox stored it) anyway.
_POSSIBLY_WRITTEN = frozenset(
    {
        "_MSG_TIMED_OUT",
        "_TIMED_OUT",
        "REQUEST_TIMED_OUT",
        "_PURGE_INFLIGHT",
        "_OUTBOX_WRITE_UNKNOWN",
        # still queued at a flush's timeout: it may land afterwards
        "_FLUSH_TIMEOUT",
        # durable in the outbox: the next relay writes it
        "_IN_OUTBOX",
    }
)

_MEANINGS = {
    "MSG_SIZE_TOO_LARGE": "the event is larger than the producer's message.max.bytes, "
    "or the record batch it was sent in is larger than the topic's max.message.bytes (the "
    "broker refuses a whole batch, so an event batched with an oversized one fails too; "
    "set the producer's message.max.bytes to at most the topic's limit, and an oversized "
    "event is then refused alone, at publish())",
    "_MSG_SIZE_TOO_LARGE": "the event is larger than the producer's message.max.bytes",
    "RECORD_LIST_TOO_LARGE": "the batch is larger than the broker accepts",
    "TOPIC_AUTHORIZATION_FAILED": "the client may not write to this topic",
    "CLUSTER_AUTHORIZATION_FAILED": "the client lacks cluster permissions (idempotent write)",
    "_UNKNOWN_TOPIC": "the topic does not exist and was not auto-created",
    "UNKNOWN_TOPIC_OR_PART": "the topic or partition does not exist",
    "_UNKNOWN_PARTITION": "the partition does not exist",
    "_MSG_TIMED_OUT": "not acknowledged within message.timeout.ms (brokers unreachable?)",
    "_TIMED_OUT": "the operation timed out",
    "_ALL_BROKERS_DOWN": "no broker is reachable",
    "_TRANSPORT": "a connection to a broker failed",
    "_QUEUE_FULL": "the local producer queue is full",
    "_PURGE_QUEUE": "dropped from the local queue when the producer was closed",
    "_PURGE_INFLIGHT": "in flight when the producer was closed; it may have been written",
    "_FLUSH_TIMEOUT": "not acknowledged before the flush timeout; it is still queued",
    "_IN_OUTBOX": "durable in the outbox, not yet acknowledged when the publisher closed",
    "_OUTBOX_WRITE_FAILED": "the outbox could not commit the event: it was not stored, so "
    "it is not published; safe to re-send (with the same event_id)",
    "_OUTBOX_WRITE_UNKNOWN": "the outcome of the outbox write is unknown (e.g. the "
    "connection dropped during COMMIT): the event may be stored and then will be sent; "
    "re-send it with the same event_id (the outbox will not store it twice)",
    "_EVENT_ID_CONFLICT": "the outbox holds a different unsent event (topic, key or "
    "value) under this event_id; nothing was stored",
    "CORRUPT_MESSAGE": "the broker found the record corrupt (CRC mismatch)",
    "INVALID_MSG": "the broker found the record invalid or corrupt",
    "INVALID_RECORD": "the broker refused the record as invalid (e.g. a compacted topic "
    "needs a key)",
    "INVALID_REQUIRED_ACKS": "the acks setting is not valid for this broker",
    "INVALID_TOPIC_EXCEPTION": "the topic name is not valid on this broker",
    "TOPIC_EXCEPTION": "the topic name is not valid on this broker",
    "POLICY_VIOLATION": "the broker's policy refused the request",
    "UNSUPPORTED_FOR_MESSAGE_FORMAT": "the topic's message format does not support the "
    "record (e.g. headers on a v0/v1 topic)",
    "TRANSACTIONAL_ID_AUTHORIZATION_FAILED": "the client may not use its transactional id",
    "REQUEST_TIMED_OUT": "the broker did not answer the produce request in time",
    "INVALID_PRODUCER_EPOCH": "a newer producer with the same identity fenced this one; "
    "the producer is unusable",
    "PRODUCER_FENCED": "a newer producer with the same identity fenced this one; the "
    "producer is unusable",
    "UNKNOWN_PRODUCER_ID": "the broker no longer knows the idempotent producer id",
    "INVALID_PRODUCER_ID_MAPPING": "the broker refused the producer id mapping",
    "_INVALID_ARG": "librdkafka refused an argument of the produce call",
    "_KEY_SERIALIZATION": "the key could not be serialized",
    "_VALUE_SERIALIZATION": "the value could not be serialized",
    "_CLOSED": "the publisher was closing, so the event was not sent",
    "_NOT_REPORTED": "no delivery report arrived before the publisher closed",
    "_FATAL": "the producer hit a fatal error",
    "OUT_OF_ORDER_SEQUENCE_NUMBER": "idempotent sequence broken; the producer is unusable",
}


def classify(code: str) -> ErrorClass:
    """Classify a Kafka error name (e.g. ``"_MSG_TIMED_OUT"``).

    Unknown codes are RETRIABLE: re-sending with the same ``ce_id`` is safe
    (at worst a duplicate the consumer drops), while calling an unknown error
    permanent could drop an event that would have gone through. ``_IN_OUTBOX`` is
    DEFERRED: it will still be delivered, so it is neither retried nor re-sent.
    """
    if code in _PERMANENT:
        return ErrorClass.PERMANENT
    if code in _FATAL:
        return ErrorClass.FATAL
    if code in _DEFERRED:
        return ErrorClass.DEFERRED
    return ErrorClass.RETRIABLE


def is_possibly_written(code: str) -> bool:
    """True when a failure with this code may still have reached the log.

    Per event it can be true for other codes too: an event that was in flight when its
    producer broke, or was re-sent through a replacement producer, is reported
    ``possibly_written`` whatever the code.
    """
    return code in _POSSIBLY_WRITTEN


def meaning(code: str, fallback: str = "") -> str:
    """A short plain-English meaning of ``code``, or ``fallback``."""
    return _MEANINGS.get(code, fallback or code)


#: Every code eventwire gives a meaning or a class of its own (the error-code reference).
KNOWN_CODES: tuple[str, ...] = tuple(
    sorted(_PERMANENT | _FATAL | _DEFERRED | _POSSIBLY_WRITTEN | _MEANINGS.keys())
)
