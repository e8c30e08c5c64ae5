"""The Kafka options of every command that talks to Kafka: ``--config``, ``--bootstrap``, ``--set``.

Each command builds its :class:`~eventwire.KafkaConfig` with :func:`kafka_config`,
exactly as :meth:`KafkaConfig.load` does for an application: the config file
(``--config``, else ``$EVENTWIRE_KAFKA_CONFIG``), then the ``EVENTWIRE_KAFKA_*``
variables, then the command line (``--set``, then ``--bootstrap``).

Secrets never come from the command line: every user on the host can read a
process's argv. ``--set`` takes only properties known to hold no secret
(:data:`~eventwire._config.NON_SECRET_PROPERTIES`); anything else is refused
with a pointer to the config file and the environment variable, and its value
is never echoed.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from eventwire._config import NON_SECRET_PROPERTIES, KafkaConfig
from eventwire._config_load import CONFIG_FILE_VAR, ENV_PREFIX, read_env
from eventwire._errors import ConfigurationError
from eventwire.cli._text import console

__all__ = ["BootstrapOpt", "ConfigOpt", "SetOpt", "env_name", "kafka_config", "parse_sets"]

err = console(stderr=True)

ConfigOpt = Annotated[
    Path | None,
    typer.Option(
        "--config",
        help="Kafka client config file: TOML (.toml) or librdkafka properties (key=value). "
        f"Default: ${ENV_PREFIX}{CONFIG_FILE_VAR}. {ENV_PREFIX}* variables override it.",
    ),
]
BootstrapOpt = Annotated[
    str | None,
    typer.Option(
        "--bootstrap",
        help="Kafka bootstrap servers: a shortcut for a plaintext cluster; with --config it "
        "replaces bootstrap.servers only.",
    ),
]
SetOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--set",
        metavar="PROPERTY=VALUE",
        help="A librdkafka property known to hold no secret (e.g. --set linger.ms=10). "
        "Repeatable. Secrets go in the config file or the environment, never here.",
    ),
]


def env_name(prop: str, prefix: str = ENV_PREFIX) -> str:
    """The variable that sets property ``prop``: ``_`` becomes ``__``, ``.`` becomes ``_``."""
    return prefix + prop.replace("_", "__").replace(".", "_").upper()


def parse_sets(sets: list[str] | None) -> dict[str, str]:
    """``--set KEY=VALUE`` options as a property dict.

    Raises:
        ConfigurationError: an option is not ``KEY=VALUE``, or its key is not a
            property known to hold no secret. The key is named, the value never.
    """
    props: dict[str, str] = {}
    for item in sets or ():
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigurationError("--set takes PROPERTY=VALUE, e.g. --set linger.ms=10")
        if key not in NON_SECRET_PROPERTIES:
            raise ConfigurationError(
                f"--set {key}: only librdkafka properties known to hold no secret may be set "
                "on the command line (any user on this host can read a command line). Put "
                f"{key!r} in the config file (--config FILE, e.g. '{key}.file = \"/run/secrets/"
                f"kafka\"') or in the environment ({env_name(key)})"
            )
        props[key] = value.strip()
    return props


def kafka_config(
    config_file: Path | None, bootstrap: str | None, sets: list[str] | None
) -> KafkaConfig:
    """The command's KafkaConfig: file, ``EVENTWIRE_KAFKA_*``, ``--set``, ``--bootstrap``, in order.

    On a configuration error it prints the message (which names the key,
    file or variable, never a secret) and exits 2.
    """
    try:
        overrides: dict[str, str] = parse_sets(sets)
        if bootstrap:
            overrides["bootstrap.servers"] = bootstrap
        named_file = config_file or os.environ.get(f"{ENV_PREFIX}{CONFIG_FILE_VAR}")
        from_env = bool(read_env(ENV_PREFIX))
        if not (named_file or from_env or "bootstrap.servers" in overrides):
            raise ConfigurationError(
                "no Kafka cluster given: pass --bootstrap HOST:PORT (plaintext) or --config "
                f"FILE, or set {ENV_PREFIX}{CONFIG_FILE_VAR} or {ENV_PREFIX}BOOTSTRAP_SERVERS"
            )
        return KafkaConfig.load(config_file, overrides=dict(overrides))
    except ConfigurationError as exc:
        err.print(f"eventwire: {exc}", style="red", markup=False, highlight=False)
        raise typer.Exit(2) from None
