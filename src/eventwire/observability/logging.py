"""What eventwire logs, through structlog, and how secrets are kept out of it.

eventwire logs with ``structlog.get_logger(name)`` and never configures structlog:
the application does. The loggers are ``"eventwire.kafka"`` (``producer_fatal``,
``producer_dispose_error``, ``kafka_error``, ``poll_error``, ``stats_error``),
``"eventwire.librdkafka"`` (``librdkafka_log``), ``"eventwire.breaker"``
(``circuit_*``), ``"eventwire.outbox"`` (``producer_recreated``, ``dead_lettered``,
``transport_close_failed`` and the ``outbox_*`` events) and ``"eventwire"`` (the
rest). The event names are stable; alerting can match on them.

================================= ======= ===================================================
event                             level   fields
================================= ======= ===================================================
``delivery_failed``               warning ``event_id``, ``event_type``, ``topic``, ``code``,
                                          ``error_class``
``buffer_full``                   warning ``event_id``, ``event_type``, ``topic`` -- the local
                                          queue is full; ``publish()`` waits up to
                                          ``enqueue_timeout``
``done_callback_failed``          error   ``event_id``, ``event_type``, ``topic`` (with the
                                          traceback) -- a user's ``add_done_callback`` raised
``producer_fatal``                error   ``code``, ``reason`` -- a producer hit a fatal
                                          error (logged before every replacement)
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
``kafka_error``                   warning ``code``, ``reason`` -- a non-fatal client error
                                          (broker down, authentication failed...)
``librdkafka_log``                varies  ``message`` -- librdkafka's own log lines
``poll_error``                    error   ``error`` -- an unexpected error while serving
                                          reports
``stats_error``                   error   ``error`` -- the statistics consumer failed
                                          (metrics)
``circuit_<state>``               warning ``breaker``, ``last_error`` -- a circuit breaker
                                          became ``open``, ``half_open`` or ``closed``
``dead_lettered``                 error   ``event_id``, ``event_type``, ``topic``, ``code``,
                                          ``attempts`` -- sent to its dead-letter topic
``outbox_parked``                 error   as ``dead_lettered`` -- kept in the outbox instead
                                          (no dead-letter topic, or its send failed)
``outbox_handles_untracked``      warning ``tracked``, ``hint`` -- (once per publisher) more
                                          handles wait than are held strongly
``outbox_status_failed``          warning ``error`` (and ``store`` from the gauges) -- the
                                          store could not report its status
``outbox_round_failed``           error   (with the traceback) -- a relay round raised; the
                                          relay carries on
``transport_close_failed``        error   (with the traceback) -- closing the relay's
                                          fatal producer failed
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
