"""What eventwire logs, through structlog, and how secrets are kept out of it.

eventwire logs with ``structlog.get_logger("eventwire" | "eventwire.kafka" |
"eventwire.librdkafka")`` and never configures structlog: the application does.
The event names are stable; alerting can match on them.

===================== ======= ==========================================================
event                 level   fields
===================== ======= ==========================================================
``delivery_failed``   warning ``event_id``, ``event_type``, ``topic``, ``code``,
                              ``error_class``
``buffer_full``       warning ``event_id``, ``event_type``, ``topic`` -- the local queue
                              is full; ``publish()`` waits up to ``enqueue_timeout``
``producer_fatal``    error   ``code``, ``reason`` -- the producer cannot send any more
``producer_recreated`` info   (reserved for fatal-error recovery)
``kafka_error``       warning ``code``, ``reason`` -- a non-fatal client error
                              (broker down, authentication failed...)
``librdkafka_log``    varies  ``message`` -- librdkafka's own log lines
``poll_error``        error   ``error`` -- an unexpected error while serving reports
``stats_error``       error   ``error`` -- the statistics consumer failed (metrics)
``done_callback_failed`` error ``event_id``, ``event_type``, ``topic`` (with the
                              traceback) -- a user's ``add_done_callback`` raised
===================== ======= ==========================================================

Nothing is logged per event on the success path.

Secrets: configuration secrets (SASL passwords, SSL key passwords and PEM keys, OAuth
client secrets, any override whose name looks secret) are wrapped in
:class:`~eventwire.Secret` and redacted from reprs and ``KafkaConfig.redacted()``;
text that comes from librdkafka (log lines, error strings) is scrubbed of every
secret value of the publisher's configuration before it is logged or raised.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

__all__ = [
    "BUFFER_FULL",
    "DELIVERY_FAILED",
    "DONE_CALLBACK_FAILED",
    "KAFKA_ERROR",
    "LIBRDKAFKA_LOG",
    "POLL_ERROR",
    "PRODUCER_FATAL",
    "PRODUCER_RECREATED",
    "STATS_ERROR",
    "Scrubber",
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

_MASK: Final = "***"


class Scrubber:
    """Replaces every known secret value in a text with ``***``.

    Example::

        scrub = Scrubber(config.secret_values())
        log.warning("kafka_error", reason=scrub(err.str()))
    """

    __slots__ = ("_secrets",)

    def __init__(self, secrets: Iterable[str]) -> None:
        # Longest first, so a secret containing another is masked whole.
        self._secrets = sorted({s for s in secrets if s}, key=len, reverse=True)

    def __call__(self, text: str) -> str:
        """Return ``text`` with every secret masked."""
        for secret in self._secrets:
            if secret in text:
                text = text.replace(secret, _MASK)
        return text

    def __bool__(self) -> bool:
        return bool(self._secrets)

    def __repr__(self) -> str:
        return f"<Scrubber of {len(self._secrets)} secret(s)>"
