"""Dead letters: where events go when they can never be delivered as they are.

A dead-letter record keeps the original key, value and headers (so ``ce_id`` and
the trace context survive) and adds ``eventwire_dlq_*`` headers saying why:
reason, code, attempts, original topic, and first and last failure times.

Replaying a dead letter (``eventwire dlq replay --topic``) must not trust those
headers: anyone who can write to a dead-letter topic can forge a record, so where
a replay writes is the operator's choice (:class:`ReplayTargets`), never the
record's ``eventwire_dlq_original_topic`` alone.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from eventwire._cloudevents import rfc3339_millis
from eventwire._errors import ConfigurationError, RoutingError
from eventwire._event import validate_topic_name

__all__ = [
    "DLQ_HEADER_PREFIX",
    "ORIGINAL_TOPIC_HEADER",
    "DeadLetterPolicy",
    "ReplayDecision",
    "ReplayTargets",
    "dead_letter_headers",
    "strip_dead_letter_headers",
]

DLQ_HEADER_PREFIX = "eventwire_dlq_"
#: The header naming the topic a dead letter was meant for (data: it can be forged).
ORIGINAL_TOPIC_HEADER = DLQ_HEADER_PREFIX + "original_topic"


@dataclass(frozen=True, slots=True)
class DeadLetterPolicy:
    """Names the dead-letter topic of each topic: ``<topic>.dlq`` by default.

    Args:
        suffix: appended to the original topic name.
        topic_for: a function ``topic -> dead-letter topic`` instead of the suffix
            (e.g. one shared ``"dead-letters"`` topic).
    """

    suffix: str = ".dlq"
    topic_for: Callable[[str], str] | None = None

    def __post_init__(self) -> None:
        if self.topic_for is None and not re.fullmatch(r"[a-zA-Z0-9._-]+", self.suffix):
            raise ConfigurationError(
                f"dead-letter suffix {self.suffix!r} would make illegal topic names; "
                "use letters, digits, '.', '_' or '-'"
            )

    def topic(self, original: str) -> str:
        """The dead-letter topic for ``original`` (validated against Kafka's rule)."""
        name = self.topic_for(original) if self.topic_for else original + self.suffix
        return validate_topic_name(name, what="dead-letter topic")


def dead_letter_headers(
    original: Sequence[tuple[str, bytes]],
    *,
    code: str,
    reason: str,
    attempts: int,
    original_topic: str,
    first_failure_s: float,
    last_failure_s: float,
) -> list[tuple[str, bytes]]:
    """The original headers plus the ``eventwire_dlq_*`` error headers."""
    return [
        *strip_dead_letter_headers(original),
        (DLQ_HEADER_PREFIX + "reason", reason.encode()),
        (DLQ_HEADER_PREFIX + "code", code.encode()),
        (DLQ_HEADER_PREFIX + "attempts", str(attempts).encode()),
        (DLQ_HEADER_PREFIX + "original_topic", original_topic.encode()),
        (DLQ_HEADER_PREFIX + "first_failure", rfc3339_millis(int(first_failure_s * 1000)).encode()),
        (DLQ_HEADER_PREFIX + "last_failure", rfc3339_millis(int(last_failure_s * 1000)).encode()),
    ]


def strip_dead_letter_headers(headers: Sequence[tuple[str, bytes]]) -> list[tuple[str, bytes]]:
    """The headers without any ``eventwire_dlq_*`` ones (for replaying a dead letter)."""
    return [(k, v) for k, v in headers if not k.startswith(DLQ_HEADER_PREFIX)]


@dataclass(frozen=True, slots=True)
class ReplayDecision:
    """Where one dead letter is replayed: ``target``, or None and ``reason`` (skipped).

    ``origin`` is the record's ``eventwire_dlq_original_topic`` header as UTF-8
    text, or None if it has none, several, or one that is not UTF-8. It and
    ``reason`` come from the record: untrusted text, to be escaped before display.
    """

    origin: str | None
    target: str | None
    reason: str = ""


@dataclass(frozen=True, slots=True)
class ReplayTargets:
    """The topics a dead-letter replay may write to: named by the operator, never by a record.

    A dead letter's ``eventwire_dlq_original_topic`` header is data that anyone
    allowed to write to the dead-letter topic can forge, so it is never enough
    on its own to choose where a replay writes. Give exactly one of:

    Args:
        to_topic: write every record to this topic, whatever its header says.
        allowed: write each record to the topic its header names only if that
            topic is one of these; any other record is skipped (with a reason).

    Raises:
        ConfigurationError: neither or both given, or a name Kafka would refuse.
    """

    to_topic: str | None = None
    allowed: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        if (self.to_topic is None) == (not self.allowed):
            raise ConfigurationError(
                "a dead-letter replay needs exactly one of: a topic every record goes to "
                "(to_topic), or the original topics records may go back to (allowed)"
            )
        for name in (self.to_topic,) if self.to_topic is not None else sorted(self.allowed):
            try:
                validate_topic_name(name, what="replay target topic")
            except RoutingError as exc:
                raise ConfigurationError(str(exc)) from None

    def decide(self, headers: Sequence[tuple[str, bytes]]) -> ReplayDecision:
        """Where the dead letter with ``headers`` goes, or why it is skipped. Never raises."""
        values = [v for k, v in headers if k == ORIGINAL_TOPIC_HEADER]
        origin: str | None = None
        problem = ""
        if not values:
            problem = f"it has no {ORIGINAL_TOPIC_HEADER} header"
        elif len(values) > 1:
            problem = f"it has {len(values)} {ORIGINAL_TOPIC_HEADER} headers"
        else:
            try:
                origin = values[0].decode("utf-8")
            except UnicodeDecodeError:
                problem = f"its {ORIGINAL_TOPIC_HEADER} header is not UTF-8"
        if self.to_topic is not None:
            return ReplayDecision(origin, self.to_topic)
        if origin is None:
            return ReplayDecision(None, None, problem)
        if origin not in self.allowed:
            return ReplayDecision(
                origin, None, f"its original topic {origin!r} is not an allowed replay target"
            )
        return ReplayDecision(origin, origin)
