"""eventwire's development and test workshop (a separate distribution, ``eventwire-devkit``).

Nothing here is imported by the runtime package ``eventwire``:

* :mod:`eventwire_devkit.kafka` -- :class:`~eventwire_devkit.kafka.LocalKafkaCluster`, a real
  Apache Kafka cluster (1 or 3 KRaft nodes) on loopback, with fault injection.
* :mod:`eventwire_devkit.postgres` -- :class:`~eventwire_devkit.postgres.LocalPostgres`, a
  throwaway PostgreSQL server.
* :mod:`eventwire_devkit.librdkafka` -- librdkafka's mock cluster and fatal-error injection.
* :mod:`eventwire_devkit.consume` -- an independent consumer to verify what reached Kafka.
* :mod:`eventwire_devkit.pytest_plugin` -- opt-in pytest fixtures over the above.
* :mod:`eventwire_devkit.cli` -- the ``eventwire broker``, ``demo`` and ``bench`` commands.
* :mod:`eventwire_devkit.demo` -- the guide's order domain and the demo job.

Strict mode: when :data:`STRICT_ENV` is ``1``/``true``/``yes`` (or pytest runs with
``--eventwire-strict``), a missing broker, PostgreSQL or librdkafka mock is a failure
instead of a skip, and ``eventwire broker fetch`` exits 1. ``CI=true`` alone does not
switch it on.
"""

from __future__ import annotations

import os

__all__ = ["STRICT_ENV", "__version__", "strict_from_env"]

#: The version of the ``eventwire-devkit`` distribution (its metadata is built from it).
__version__ = "0.1.0"

#: Environment variable that switches strict mode on (``1``/``true``/``yes``).
STRICT_ENV = "EVENTWIRE_DEVKIT_STRICT"


def strict_from_env() -> bool:
    """Return True when :data:`STRICT_ENV` is ``1``, ``true`` or ``yes`` (any case)."""
    return os.environ.get(STRICT_ENV, "").strip().lower() in {"1", "true", "yes"}
