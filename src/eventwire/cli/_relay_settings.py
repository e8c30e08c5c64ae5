"""The standalone relay's settings: the ``[relay]`` table, ``EVENTWIRE_RELAY_*``, flags.

``eventwire outbox relay`` reads them from the same config file as its Kafka
connection (``--config`` or ``$EVENTWIRE_KAFKA_CONFIG``): a ``[relay]`` table in
TOML, ``relay.<name>=`` lines in a properties file. ``EVENTWIRE_RELAY_<NAME>``
variables override the file, and the command's flags override both. The names
are the fields of :class:`RelaySettings`.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from eventwire._config_load import RELAY_ENV_PREFIX, load_section
from eventwire._errors import ConfigurationError
from eventwire._timeouts import check_finite_seconds
from eventwire.outbox.relay import MAX_BATCH_SIZE

__all__ = ["RelaySettings"]

_TRUE = frozenset({"true", "1", "yes", "on"})
_FALSE = frozenset({"false", "0", "no", "off"})


@dataclass(frozen=True, kw_only=True, slots=True)
class RelaySettings:
    """How the standalone relay runs, checked at construction.

    Raises:
        ConfigurationError: a value out of range (the setting is named).
    """

    #: Entries claimed per round (1 to 1,000,000).
    batch_size: int = 1000
    #: How long a round waits for acks (and for room in a full local queue).
    ack_timeout_s: float = 30.0
    #: On SIGTERM/SIGINT, how long to wait for the round in progress to finish
    #: before closing the producer; entries of a round cut short come back when
    #: their lease ends.
    stop_timeout_s: float = 30.0
    #: Serve Prometheus metrics on this port (None: no metrics server).
    metrics_port: int | None = None
    metrics_addr: str = "127.0.0.1"
    #: A circuit breaker: while Kafka is unreachable, entries wait on disk and the
    #: relay probes Kafka instead of sending.
    breaker: bool = False
    breaker_open_after_s: float = 10.0
    breaker_reset_timeout_s: float = 5.0
    #: None: half of ``breaker_open_after_s``.
    breaker_quiet_after_s: float | None = None

    def __post_init__(self) -> None:
        if not 1 <= self.batch_size <= MAX_BATCH_SIZE:
            raise ConfigurationError(
                f"relay batch_size must be in 1..{MAX_BATCH_SIZE:_} (entries claimed per "
                f"round, held in memory), not {self.batch_size}"
            )
        if self.metrics_port is not None and not 0 <= self.metrics_port < 65536:
            raise ConfigurationError("relay metrics_port must be in 0..65535")
        for name in (
            "ack_timeout_s",
            "stop_timeout_s",
            "breaker_open_after_s",
            "breaker_reset_timeout_s",
            "breaker_quiet_after_s",
        ):
            value = getattr(self, name)
            if value is not None:
                check_finite_seconds(value, f"relay {name}", positive=True)

    @classmethod
    def load(
        cls,
        file: str | os.PathLike[str] | None = None,
        *,
        environ: Mapping[str, str] | None = None,
        **flags: Any,
    ) -> RelaySettings:
        """The ``[relay]`` table of the config file, ``EVENTWIRE_RELAY_*`` over it, then ``flags``.

        ``file`` None: the file named by ``$EVENTWIRE_KAFKA_CONFIG``, if any. A
        flag that is None is not given.

        Raises:
            ConfigurationError: an unknown setting or a value of the wrong type
                or out of range (the setting and its source are named), or the
                file cannot be read.
        """
        raw = load_section("relay", file, env_prefix=RELAY_ENV_PREFIX, environ=environ)
        values: dict[str, Any] = {}
        for name, value in raw.items():
            values[name] = _coerce(name, value)
        values.update({k: v for k, v in flags.items() if v is not None})
        return cls(**values)


_FIELDS = {f.name: f for f in dataclasses.fields(RelaySettings)}


def _coerce(name: str, value: object) -> object:
    """Turn a file's or a variable's value into the setting's type."""
    where = (
        f"relay setting {name!r} ([relay] in the config file, or {RELAY_ENV_PREFIX}{name.upper()})"
    )
    if name not in _FIELDS:
        raise ConfigurationError(f"unknown {where}: use one of {', '.join(_FIELDS)}")
    kind = str(_FIELDS[name].type)
    try:
        if kind == "bool":
            if isinstance(value, bool):
                return value
            text = str(value).strip().lower()
            if text in _TRUE | _FALSE:
                return text in _TRUE
            raise ValueError(value)
        if kind == "str":
            return str(value)
        if isinstance(value, bool):
            raise ValueError(value)
        if "int" in kind:
            if isinstance(value, float):
                raise ValueError(value)
            return int(str(value))
        return float(str(value))
    except ValueError:
        expected = _KIND_NAMES.get(kind.replace(" | None", ""), kind)
        raise ConfigurationError(f"{where} must be {expected}") from None


_KIND_NAMES = {
    "int": "a whole number",
    "float": "a number",
    "bool": "true or false",
    "str": "text",
}
