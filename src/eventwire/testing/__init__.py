"""Test helpers for code that publishes with eventwire.

* :mod:`eventwire.testing.kafka` -- :class:`~eventwire.testing.kafka.LocalKafkaCluster`, a real
  Apache Kafka cluster (1 or 3 KRaft nodes) on loopback, with fault injection.
* :mod:`eventwire.testing.pytest_plugin` -- pytest fixtures (``kafka_cluster``,
  ``kafka_cluster3``, ``kafka_bootstrap``, ``kafka_topic``, ``kafka_topic3``), loaded
  automatically through the ``pytest11`` entry point.

Nothing is imported here eagerly, so importing :mod:`eventwire.testing` stays cheap.
"""
