"""Typed Kafka producer configuration with named profiles.

``KafkaConfig`` holds what eventwire needs to build a librdkafka producer. Three
profiles set safe defaults; ``overrides`` passes raw librdkafka properties
explicitly. Secrets are wrapped in :class:`Secret` and never appear in a repr,
a log, an error message or :meth:`KafkaConfig.redacted`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Literal, get_args

from eventwire._errors import ConfigurationError

__all__ = ["PROFILES", "KafkaConfig", "Profile", "Secret", "is_secret_key"]

Profile = Literal["reliable", "low_latency", "high_throughput"]
ConfigValue = str | int | float | bool
SecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]

_COMMON: dict[str, ConfigValue] = {
    # Idempotence gives acks=all, retries and ordering with up to 5 requests in
    # flight: max.in.flight=1 is not needed for ordering and costs throughput.
    "enable.idempotence": True,
    "acks": "all",
    # Same key -> same partition as Kafka's Java clients (murmur2), so producers
    # in several languages agree on where an aggregate's events go.
    "partitioner": "murmur2_random",
}

#: The librdkafka properties of each profile, before overrides.
PROFILES: Mapping[Profile, Mapping[str, ConfigValue]] = {
    "reliable": {**_COMMON, "compression.type": "lz4", "linger.ms": 5},
    "low_latency": {**_COMMON, "compression.type": "none", "linger.ms": 0},
    "high_throughput": {
        **_COMMON,
        "compression.type": "lz4",
        "linger.ms": 100,
        "batch.size": 1_000_000,
        "batch.num.messages": 100_000,
    },
}

# Property names whose values are secret: passwords, OAuth client secrets and
# configs, JAAS configs, tokens, and inline private keys (ssl.key.pem).
_SECRET_KEY = re.compile(
    r"(password|secret|sasl\.oauthbearer\.config|sasl\.jaas|token|ssl\.key\.pem)", re.I
)
_PROPERTY = re.compile(r"[a-z][a-z0-9_]*(\.[a-z0-9_]+)*")
# eventwire owns these: setting them would bypass its delivery tracking.
_RESERVED = frozenset(
    {"on_delivery", "delivery.report.only.error", "error_cb", "logger", "stats_cb"}
)


def is_secret_key(key: str) -> bool:
    """True for property names whose values must never be shown."""
    return bool(_SECRET_KEY.search(key))


class Secret:
    """A string that never shows itself: ``repr``/``str`` print ``'***'``."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        if not isinstance(value, str):
            raise ConfigurationError("a secret must be a str")
        self._value = value

    def get(self) -> str:
        """Return the real value (for handing to librdkafka only)."""
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


def _reveal(value: object) -> ConfigValue:
    if isinstance(value, Secret):
        return value.get()
    assert isinstance(value, str | int | float | bool)
    return value


def _secret(value: Secret | str | None) -> Secret | None:
    return value if value is None or isinstance(value, Secret) else Secret(value)


@dataclass(frozen=True, slots=True, repr=False)
class KafkaConfig:
    """Producer configuration, validated at construction.

    Example::

        KafkaConfig("broker1:9092,broker2:9092", profile="low_latency",
                    security_protocol="SASL_SSL", sasl_mechanism="PLAIN",
                    sasl_username="svc", sasl_password="...",
                    overrides={"message.timeout.ms": 60_000})

    Raises:
        ConfigurationError: an unknown profile, a malformed bootstrap list, an
            override that is not a librdkafka property name, a reserved key, or a
            value of the wrong type. librdkafka itself rejects unknown property
            names when the publisher starts, and eventwire names the key.
    """

    bootstrap_servers: str
    profile: Profile = "reliable"
    client_id: str = "eventwire"
    security_protocol: SecurityProtocol | None = None
    sasl_mechanism: str | None = None
    sasl_username: str | None = None
    sasl_password: Secret | None = None
    sasl_oauthbearer_client_id: str | None = None
    sasl_oauthbearer_client_secret: Secret | None = None
    sasl_oauthbearer_token_endpoint_url: str | None = None
    ssl_ca_location: str | None = None
    ssl_certificate_location: str | None = None
    ssl_key_location: str | None = None
    ssl_key_password: Secret | None = None
    overrides: Mapping[str, ConfigValue] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._check_bootstrap()
        if self.profile not in PROFILES:
            raise ConfigurationError(
                f"profile {self.profile!r} is unknown: use one of {', '.join(PROFILES)}"
            )
        protocols = get_args(SecurityProtocol)
        if self.security_protocol is not None and self.security_protocol not in protocols:
            raise ConfigurationError(
                f"security_protocol {self.security_protocol!r} is unknown: use one of "
                + ", ".join(protocols)
            )
        for name in ("sasl_password", "sasl_oauthbearer_client_secret", "ssl_key_password"):
            object.__setattr__(self, name, _secret(getattr(self, name)))
        self._check_overrides()

    def _check_bootstrap(self) -> None:
        servers = self.bootstrap_servers
        if not isinstance(servers, str) or not servers.strip():
            raise ConfigurationError(
                "bootstrap_servers is empty: pass 'host:port[,host:port...]', e.g. 'localhost:9092'"
            )
        for server in servers.split(","):
            host, sep, port = server.strip().rpartition(":")
            if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
                raise ConfigurationError(
                    f"bootstrap_servers entry {server.strip()!r} is not 'host:port' with a "
                    "port in 1..65535"
                )

    def _check_overrides(self) -> None:
        if not isinstance(self.overrides, Mapping):
            raise ConfigurationError("overrides must be a mapping of librdkafka property -> value")
        for key, value in self.overrides.items():
            if not isinstance(key, str) or not _PROPERTY.fullmatch(key):
                raise ConfigurationError(
                    f"override key {key!r} is not a librdkafka property name "
                    "(lower-case words separated by dots, e.g. 'linger.ms')"
                )
            if key in _RESERVED:
                raise ConfigurationError(
                    f"override key {key!r} is managed by eventwire and cannot be overridden"
                )
            if not isinstance(value, str | int | float | bool | Secret):
                raise ConfigurationError(
                    f"override {key!r} must be a str, int, float or bool, "
                    f"got {type(value).__name__}"
                )
        # Keep secret-named override values wrapped, so that printing
        # ``config.overrides`` (or the dataclass fields) never shows them.
        wrapped = {
            k: Secret(v) if isinstance(v, str) and is_secret_key(k) else v
            for k, v in self.overrides.items()
        }
        object.__setattr__(self, "overrides", wrapped)

    def to_librdkafka(self) -> dict[str, ConfigValue]:
        """The full librdkafka property dict, secrets included. Never log it."""
        props: dict[str, ConfigValue] = dict(PROFILES[self.profile])
        props["bootstrap.servers"] = self.bootstrap_servers
        props["client.id"] = self.client_id
        for f in fields(self):
            if f.name in {"bootstrap_servers", "profile", "client_id", "overrides"}:
                continue
            value = getattr(self, f.name)
            if value is not None:
                props[f.name.replace("_", ".")] = _reveal(value)
        for key, value in self.overrides.items():
            props[key] = _reveal(value)
        return props

    def redacted(self) -> dict[str, str]:
        """The librdkafka property dict with every secret value replaced by ``***``."""
        return {k: ("***" if is_secret_key(k) else str(v)) for k, v in self.to_librdkafka().items()}

    def secret_values(self) -> list[str]:
        """Every secret string in this config (used to scrub error messages)."""
        return [
            v
            for k, v in self.to_librdkafka().items()
            if is_secret_key(k) and isinstance(v, str) and v
        ]

    def __repr__(self) -> str:
        shown = ", ".join(f"{k}={v!r}" for k, v in self.redacted().items())
        return f"KafkaConfig({shown})"
