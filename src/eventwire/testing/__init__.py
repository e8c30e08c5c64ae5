"""Test helpers for code that publishes with eventwire.

* :func:`capture_events` -- a real :class:`~eventwire.Publisher` over the in-memory
  transport, for your unit tests (``from eventwire.testing import capture_events``).
* :mod:`eventwire.testing.kafka` -- :class:`~eventwire.testing.kafka.LocalKafkaCluster`, a real
  Apache Kafka cluster (1 or 3 KRaft nodes) on loopback, with fault injection.
* :mod:`eventwire.testing.pytest_plugin` -- pytest fixtures (``kafka_cluster``,
  ``kafka_cluster3``, ``kafka_bootstrap``, ``kafka_topic``, ``kafka_topic3``), loaded
  automatically through the ``pytest11`` entry point.
* :mod:`eventwire.testing.consume` -- an independent consumer to verify what reached Kafka.

Only the capture helper is imported here; the cluster tooling loads on first use.
"""

from eventwire.testing.capture import CapturedEvents, capture_events

__all__ = ["CapturedEvents", "capture_events"]
