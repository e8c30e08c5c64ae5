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

Strict mode: when :data:`STRICT_ENV` is ``1``/``true``/``yes``, or it is unset and the
environment variable ``CI`` is ``true``/``1``/``yes`` (as CI services set it), or pytest
runs with ``--eventwire-strict``, a missing broker, PostgreSQL or librdkafka mock is a
failure instead of a skip, and ``eventwire broker fetch`` exits 1. A CI job that wants the
skips sets ``EVENTWIRE_DEVKIT_STRICT=0``.
"""

from __future__ import annotations

import os

__all__ = ["STRICT_ENV", "__version__", "strict_from_env", "strict_or_exit"]

#: The version of the ``eventwire-devkit`` distribution (its metadata is built from it).
__version__ = "0.1.0"

#: Environment variable that switches strict mode on (``1``/``true``/``yes``) or off
#: (``0``/``false``/``no``); unset, ``CI`` decides.
STRICT_ENV = "EVENTWIRE_DEVKIT_STRICT"

_YES = frozenset({"1", "true", "yes"})
_NO = frozenset({"0", "false", "no"})


def strict_from_env() -> bool:
    """Whether strict mode is on: :data:`STRICT_ENV` says so, or it is unset and ``CI`` is true.

    Raises:
        ValueError: :data:`STRICT_ENV` is set to something other than ``1``/``true``/
            ``yes`` or ``0``/``false``/``no`` (a typo must not quietly mean "skip").
    """
    value = os.environ.get(STRICT_ENV, "").strip().lower()
    if value in _YES:
        return True
    if value in _NO:
        return False
    if value:
        raise ValueError(
            f"{STRICT_ENV}={os.environ[STRICT_ENV]!r} is not a switch: use 1/true/yes (fail "
            "when a broker, PostgreSQL or the librdkafka mock is missing) or 0/false/no (skip)"
        )
    return os.environ.get("CI", "").strip().lower() in _YES


def strict_or_exit() -> bool:
    """:func:`strict_from_env` for a command: a value that is no switch exits 2, named."""
    try:
        return strict_from_env()
    except ValueError as exc:
        import sys  # noqa: PLC0415

        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
