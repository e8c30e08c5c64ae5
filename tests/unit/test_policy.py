"""eventwire._policy: what a Kafka error code means for the event that got it."""

from __future__ import annotations

import pytest

from eventwire._errors import DeliveryFailure, ErrorClass, Resend
from eventwire._policy import KNOWN_CODES, classify, is_possibly_written, meaning

PERMANENT = [
    "MSG_SIZE_TOO_LARGE",
    "_MSG_SIZE_TOO_LARGE",
    "RECORD_LIST_TOO_LARGE",
    "TOPIC_AUTHORIZATION_FAILED",
    "CLUSTER_AUTHORIZATION_FAILED",
    "TRANSACTIONAL_ID_AUTHORIZATION_FAILED",
    "INVALID_REQUIRED_ACKS",
    "CORRUPT_MESSAGE",
    "INVALID_MSG",
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
]
FATAL = [
    "_FATAL",
    "OUT_OF_ORDER_SEQUENCE_NUMBER",
    "INVALID_PRODUCER_EPOCH",
    "PRODUCER_FENCED",
    "UNKNOWN_PRODUCER_ID",
    "INVALID_PRODUCER_ID_MAPPING",
]
RETRIABLE = [
    "_MSG_TIMED_OUT",
    "_TIMED_OUT",
    "REQUEST_TIMED_OUT",
    "_ALL_BROKERS_DOWN",
    "_TRANSPORT",
    "_QUEUE_FULL",
    "_PURGE_QUEUE",
    "_PURGE_INFLIGHT",
    "_FLUSH_TIMEOUT",
    "NOT_ENOUGH_REPLICAS",
    "NOT_LEADER_FOR_PARTITION",
    "LEADER_NOT_AVAILABLE",
    "_OUTBOX_WRITE_FAILED",
    "_OUTBOX_WRITE_UNKNOWN",
]
POSSIBLY_WRITTEN = [
    "_MSG_TIMED_OUT",
    "_TIMED_OUT",
    "REQUEST_TIMED_OUT",
    "_PURGE_INFLIGHT",
    "_OUTBOX_WRITE_UNKNOWN",
]
#: Codes a user is likely to meet, each with its own explanation.
EXPLAINED = [
    "MSG_SIZE_TOO_LARGE",
    "_MSG_SIZE_TOO_LARGE",
    "RECORD_LIST_TOO_LARGE",
    "TOPIC_AUTHORIZATION_FAILED",
    "CLUSTER_AUTHORIZATION_FAILED",
    "_UNKNOWN_TOPIC",
    "UNKNOWN_TOPIC_OR_PART",
    "_UNKNOWN_PARTITION",
    "_MSG_TIMED_OUT",
    "_TIMED_OUT",
    "_ALL_BROKERS_DOWN",
    "_TRANSPORT",
    "_QUEUE_FULL",
    "_PURGE_QUEUE",
    "_PURGE_INFLIGHT",
    "_FLUSH_TIMEOUT",
    "_IN_OUTBOX",
    "_OUTBOX_WRITE_FAILED",
    "_OUTBOX_WRITE_UNKNOWN",
    "_FATAL",
    "OUT_OF_ORDER_SEQUENCE_NUMBER",
]


class TestClassify:
    @pytest.mark.parametrize("code", PERMANENT)
    def test_codes_that_fail_the_same_way_again_are_permanent(self, code: str) -> None:
        """Too large, not authorized, unknown topic, invalid record: PERMANENT."""
        assert classify(code) is ErrorClass.PERMANENT

    @pytest.mark.parametrize("code", FATAL)
    def test_codes_that_break_the_producer_are_fatal(self, code: str) -> None:
        """Idempotence and producer-identity errors: FATAL."""
        assert classify(code) is ErrorClass.FATAL

    @pytest.mark.parametrize("code", RETRIABLE)
    def test_transient_and_local_codes_are_retriable(self, code: str) -> None:
        """Timeouts, unreachable brokers, purges, full queues and outbox outcomes: RETRIABLE."""
        assert classify(code) is ErrorClass.RETRIABLE

    @pytest.mark.parametrize("code", ["SOME_FUTURE_ERROR", "_NEW_LOCAL_ERROR", ""])
    def test_unknown_codes_are_retriable(self, code: str) -> None:
        """A code eventwire does not know is RETRIABLE, so an event is never dropped for it."""
        assert classify(code) is ErrorClass.RETRIABLE

    def test_codes_are_matched_by_exact_name(self) -> None:
        """Classification is by exact (case-sensitive) name: a lower-case name is unknown."""
        assert classify("msg_size_too_large") is ErrorClass.RETRIABLE


class TestPossiblyWritten:
    @pytest.mark.parametrize("code", POSSIBLY_WRITTEN)
    def test_failures_after_the_record_left_may_have_been_written(self, code: str) -> None:
        """Timeouts, in-flight purges and an unknown outbox outcome may still be in the log."""
        assert is_possibly_written(code) is True

    @pytest.mark.parametrize(
        "code",
        [
            "_PURGE_QUEUE",
            "MSG_SIZE_TOO_LARGE",
            "_QUEUE_FULL",
            "_FATAL",
            "_OUTBOX_WRITE_FAILED",
            "X",
        ],
    )
    def test_other_failures_were_not_written(self, code: str) -> None:
        """A record purged from the local queue, refused, or of an unknown code is not written."""
        assert is_possibly_written(code) is False


class TestMeaning:
    @pytest.mark.parametrize("code", EXPLAINED)
    def test_every_common_code_has_a_plain_meaning(self, code: str) -> None:
        """Each common code has its own plain-English meaning, not just its name."""
        text = meaning(code)
        assert text and text != code
        assert meaning(code, "fallback") == text

    def test_the_meanings_differ(self) -> None:
        """No two explained codes share one meaning."""
        assert len({meaning(c) for c in EXPLAINED}) == len(EXPLAINED)

    def test_an_unknown_code_means_the_fallback(self) -> None:
        """An unknown code's meaning is the fallback (librdkafka's own text) when given."""
        assert meaning("SOME_FUTURE_ERROR", "broker said no") == "broker said no"

    def test_an_unknown_code_without_fallback_means_its_name(self) -> None:
        """An unknown code without a fallback is described by its name."""
        assert meaning("SOME_FUTURE_ERROR") == "SOME_FUTURE_ERROR"


class TestResendAdvice:
    """Every code says whether re-sending is safe, by one rule (issue #17 item 4)."""

    def test_in_outbox_is_deferred_never_retriable(self) -> None:
        """_IN_OUTBOX is durable and will still be delivered: DEFERRED, and never re-sent
        (generic retry code keyed on RETRIABLE would have published it twice)."""
        assert classify("_IN_OUTBOX") is ErrorClass.DEFERRED
        failure = _failure("_IN_OUTBOX")
        assert failure.resend is Resend.NEVER
        assert "do not re-send" in failure.describe()

    @pytest.mark.parametrize("code", [*KNOWN_CODES, "SOME_FUTURE_ERROR"])
    def test_each_code_gets_advice_consistent_with_its_class_and_its_text(self, code: str) -> None:
        """The advice follows from the class and possibly_written alone, and the one-line
        description states that same advice (no code's text contradicts its class)."""
        failure = _failure(code)
        expected = {
            ErrorClass.DEFERRED: Resend.NEVER,
            ErrorClass.PERMANENT: Resend.AFTER_FIX,
        }.get(
            failure.error_class,
            Resend.MAY_DUPLICATE if failure.possibly_written else Resend.SAFE,
        )
        assert failure.resend is expected
        text = failure.describe()
        phrase = {
            Resend.NEVER: "do not re-send",
            Resend.AFTER_FIX: "fails the same way until the cause is fixed",
            Resend.MAY_DUPLICATE: "may write a second copy",
            Resend.SAFE: "safe to re-send with the same event_id",
        }
        assert phrase[expected] in text
        assert [p for r, p in phrase.items() if r is not expected and p in text] == []

    @pytest.mark.parametrize("code", POSSIBLY_WRITTEN)
    def test_a_possibly_written_retriable_failure_may_duplicate(self, code: str) -> None:
        """A re-send of what may already be in the log is flagged as a possible duplicate."""
        failure = _failure(code)
        if failure.error_class is ErrorClass.RETRIABLE:
            assert failure.resend is Resend.MAY_DUPLICATE


def _failure(code: str) -> DeliveryFailure:
    return DeliveryFailure(
        "id-1",
        "shop.OrderPlaced",
        "orders",
        code,
        meaning(code),
        classify(code),
        is_possibly_written(code),
    )
