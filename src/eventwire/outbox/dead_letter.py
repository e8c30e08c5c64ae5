"""Dead letters: where events go when they can never be delivered as they are.

A dead-letter record keeps the original key, value and headers (so ``ce_id`` and
the trace context survive) and adds ``eventwire_dlq_*`` headers saying why:
reason, code, attempts, original topic, and first and last failure times.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from eventwire._cloudevents import rfc3339_millis
from eventwire._errors import ConfigurationError
from eventwire._event import validate_topic_name

__all__ = [
    "DLQ_HEADER_PREFIX",
    "DeadLetterPolicy",
    "dead_letter_headers",
    "strip_dead_letter_headers",
]

DLQ_HEADER_PREFIX = "eventwire_dlq_"


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
