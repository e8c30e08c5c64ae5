"""Transports: where a publisher's records go.

* :mod:`eventwire.transports.base` -- the seam: :class:`~eventwire.transports.base.BaseTransport`.
* :mod:`eventwire.transports.kafka` -- Apache Kafka through confluent-kafka (the default).
* :mod:`eventwire.transports.memory` -- an in-memory log for tests.
"""
