"""eventwire.outbox.dead_letter: dead-letter topic names and the headers that say why."""

from __future__ import annotations

import pytest

from eventwire import ConfigurationError, DeadLetterPolicy, RoutingError
from eventwire.outbox.dead_letter import (
    DLQ_HEADER_PREFIX,
    ReplayDecision,
    ReplayTargets,
    dead_letter_headers,
    strip_dead_letter_headers,
)

ORIGINAL = [("ce_id", b"id-1"), ("traceparent", b"00-abc-def-01"), ("x-custom", b"1")]


def _dead(headers: list[tuple[str, bytes]] = ORIGINAL) -> list[tuple[str, bytes]]:
    return dead_letter_headers(
        headers,
        code="TOPIC_AUTHORIZATION_FAILED",
        reason="the client may not write to this topic",
        attempts=3,
        original_topic="orders",
        first_failure_s=1_764_489_600.0,  # 2025-11-30T08:00:00Z
        last_failure_s=1_764_489_661.5,
    )


class TestTopicNaming:
    def test_the_default_dead_letter_topic_is_the_topic_plus_dlq(self) -> None:
        """By default the dead-letter topic of ``orders`` is ``orders.dlq``."""
        assert DeadLetterPolicy().topic("orders") == "orders.dlq"

    def test_a_suffix_is_appended(self) -> None:
        """A custom suffix is appended to the original topic name."""
        assert DeadLetterPolicy(suffix="-dead").topic("orders") == "orders-dead"

    def test_topic_for_names_the_topic_instead_of_the_suffix(self) -> None:
        """topic_for maps every topic, e.g. to one shared dead-letter topic."""
        policy = DeadLetterPolicy(topic_for=lambda _topic: "dead-letters")
        assert policy.topic("orders") == policy.topic("payments") == "dead-letters"

    @pytest.mark.parametrize("suffix", ["", " dlq", ".dl/q", "dlq!"])
    def test_a_suffix_that_makes_illegal_names_is_refused_at_construction(
        self, suffix: str
    ) -> None:
        """A suffix with characters Kafka forbids raises ConfigurationError naming it."""
        with pytest.raises(ConfigurationError, match="suffix"):
            DeadLetterPolicy(suffix=suffix)

    def test_an_illegal_name_from_topic_for_is_refused(self) -> None:
        """A topic_for result that is no legal Kafka topic name raises RoutingError."""
        policy = DeadLetterPolicy(topic_for=lambda topic: f"{topic}/dead")
        with pytest.raises(RoutingError, match="dead-letter topic"):
            policy.topic("orders")

    def test_a_name_over_kafkas_length_limit_is_refused(self) -> None:
        """A dead-letter topic longer than 249 characters raises RoutingError."""
        with pytest.raises(RoutingError):
            DeadLetterPolicy().topic("o" * 246)


class TestHeaders:
    def test_the_original_headers_come_first_and_unchanged(self) -> None:
        """A dead letter keeps every original header (ce_id, trace context) in order."""
        assert _dead()[: len(ORIGINAL)] == ORIGINAL

    def test_the_reason_headers_say_what_happened(self) -> None:
        """The eventwire_dlq_* headers carry reason, code, attempts, original topic and the
        first and last failure times (RFC 3339, milliseconds, UTC)."""
        added = dict(_dead()[len(ORIGINAL) :])
        assert added == {
            "eventwire_dlq_reason": b"the client may not write to this topic",
            "eventwire_dlq_code": b"TOPIC_AUTHORIZATION_FAILED",
            "eventwire_dlq_attempts": b"3",
            "eventwire_dlq_original_topic": b"orders",
            "eventwire_dlq_first_failure": b"2025-11-30T08:00:00.000Z",
            "eventwire_dlq_last_failure": b"2025-11-30T08:01:01.500Z",
        }

    def test_a_dead_letter_dead_lettered_again_has_one_set_of_reason_headers(self) -> None:
        """Dead-lettering a replayed dead letter replaces its old reason headers."""
        twice = _dead(_dead())
        names = [k for k, _ in twice if k.startswith(DLQ_HEADER_PREFIX)]
        assert len(names) == len(set(names)) == 6

    def test_stripping_gives_back_the_original_headers(self) -> None:
        """strip_dead_letter_headers (for a replay) leaves exactly the original headers."""
        assert strip_dead_letter_headers(_dead()) == ORIGINAL

    def test_stripping_keeps_headers_that_only_look_similar(self) -> None:
        """Only headers starting with eventwire_dlq_ are removed."""
        headers = [("dlq_code", b"x"), ("eventwire_dl", b"y")]
        assert strip_dead_letter_headers(headers) == headers


def _from(origin: bytes) -> list[tuple[str, bytes]]:
    return [("ce_id", b"id-1"), (DLQ_HEADER_PREFIX + "original_topic", origin)]


class TestReplayTargets:
    def test_allowed_origins_go_back_and_any_other_is_skipped_with_the_reason(self) -> None:
        """With allowed topics, a record goes back to the topic its header names only if
        allowed; a forged one is skipped, naming its origin."""
        targets = ReplayTargets(allowed=frozenset({"orders"}))
        assert targets.decide(_from(b"orders")) == ReplayDecision("orders", "orders")
        assert targets.decide(_from(b"payments")) == ReplayDecision(
            "payments", None, "its original topic 'payments' is not an allowed replay target"
        )

    @pytest.mark.parametrize(
        ("headers", "reason"),
        [
            ([("ce_id", b"id-1")], "it has no eventwire_dlq_original_topic header"),
            (_from(b"orders") + _from(b"payments")[1:], "it has 2 eventwire_dlq_original_topic"),
            (_from(b"\xfforders"), "its eventwire_dlq_original_topic header is not UTF-8"),
        ],
    )
    def test_a_missing_repeated_or_non_utf8_origin_is_skipped(
        self, headers: list[tuple[str, bytes]], reason: str
    ) -> None:
        """A record without one UTF-8 original-topic header is skipped (never raises)."""
        decision = ReplayTargets(allowed=frozenset({"orders"})).decide(headers)
        assert decision.target is None
        assert decision.reason.startswith(reason)

    def test_to_topic_takes_every_record_whatever_its_header(self) -> None:
        """With to_topic, every record goes there: forged, missing or undecodable header."""
        targets = ReplayTargets(to_topic="orders-retry")
        for headers in (_from(b"payments"), [("ce_id", b"x")], _from(b"\xff")):
            assert targets.decide(headers).target == "orders-retry"

    @pytest.mark.parametrize(
        ("kwargs", "match"),
        [
            ({}, "exactly one of"),
            ({"to_topic": "a", "allowed": frozenset({"b"})}, "exactly one of"),
            ({"to_topic": "a b"}, "'a b' is not a legal Kafka topic name"),
            ({"allowed": frozenset({"ok", ".."})}, "'..' is not a legal"),
        ],
    )
    def test_targets_are_checked_at_construction(
        self, kwargs: dict[str, object], match: str
    ) -> None:
        """Neither or both kinds of target, or an illegal topic name: ConfigurationError."""
        with pytest.raises(ConfigurationError, match=match):
            ReplayTargets(**kwargs)  # type: ignore[arg-type]
