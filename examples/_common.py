"""Shared by the examples: where Kafka is, and logs kept out of the way.

* ``bootstrap()`` yields ``$EVENTWIRE_BOOTSTRAP`` when it is set; otherwise it
  starts a throw-away 1-node Kafka on 127.0.0.1 for the duration of the block
  (it needs Java 17+; the jars are fetched once with Maven).
* Importing this module sends log records at WARNING and above (eventwire's and
  librdkafka's warnings, through stdlib ``logging``) to stderr, one line each with
  the logger's name, so stdout shows only what the example prints.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager

logging.basicConfig(
    level=logging.WARNING,
    stream=sys.stderr,
    format="%(asctime)s %(levelname)s %(name)s %(message)s",
)


@contextmanager
def bootstrap() -> Iterator[str]:
    """Yield the bootstrap servers of a Kafka cluster to use."""
    given = os.environ.get("EVENTWIRE_BOOTSTRAP", "").strip()
    if given:
        yield given
        return
    from eventwire_devkit.kafka import LocalKafkaCluster  # noqa: PLC0415 (needs Java)

    print("EVENTWIRE_BOOTSTRAP is not set: starting a local 1-node Kafka...", file=sys.stderr)
    with LocalKafkaCluster(nodes=1, progress=lambda line: print(line, file=sys.stderr)) as cluster:
        yield cluster.bootstrap_servers
