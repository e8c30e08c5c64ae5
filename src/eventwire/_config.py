"""Typed Kafka producer configuration with named profiles.

``KafkaConfig`` holds what eventwire needs to build a librdkafka producer. Three
profiles set safe defaults; ``overrides`` passes raw librdkafka properties
explicitly. Secrets are wrapped in :class:`Secret` and never appear in a repr,
a log, an error message or :meth:`KafkaConfig.redacted`. A property's value is
shown only if its name is in :data:`NON_SECRET_PROPERTIES`, an allow-list of
properties known to hold no secret; any other value (a property librdkafka adds
later included) is masked, yet still handed to librdkafka unchanged. Credentials
embedded in a shown value -- ``user:pass@`` in ``bootstrap.servers``, the userinfo
and query string of ``sasl.oauthbearer.token.endpoint.url`` -- are masked too
(:data:`URL_PROPERTIES`), and scrubbed from librdkafka's text.

Switching TLS verification off (``enable.ssl.certificate.verification=false`` or
``ssl.endpoint.identification.algorithm=none``) logs one WARNING,
``tls_verification_disabled`` (``properties``, ``risk``, ``hint``) on the
``eventwire.kafka`` logger, when the config is made (not again for a copy made
by :meth:`KafkaConfig.with_overrides`).

Where librdkafka takes a callback, ``overrides`` takes a Python callable: the keys
in :data:`CALLBACKS` (``oauth_cb``, ``throttle_cb``). A callable is handed to
librdkafka as the same object and is never shown (``<callback>``).
:meth:`KafkaConfig.from_file`, :meth:`KafkaConfig.from_env` and
:meth:`KafkaConfig.load` read the same configuration from a file and the
environment (see :mod:`eventwire._config_load`).

Besides malformed names and values of the wrong type, ``overrides`` refuses:

* ``transactional.id``: eventwire does not use Kafka transactions.
* A number outside what an integer property takes (its range is asked of the
  installed librdkafka), or one librdkafka would read as another number: out of a
  C ``int``, librdkafka would silently wrap the value around.
* One property under two of librdkafka's names (``message.timeout.ms`` and
  ``delivery.timeout.ms``...), as a config file does.
* The brokers (``bootstrap.servers``, ``metadata.broker.list``): they are the
  ``bootstrap_servers`` field.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field, fields, replace
from typing import Literal, get_args

from eventwire._config_load import UNSUPPORTED_PROPERTIES, Loaded, load
from eventwire._errors import ConfigurationError
from eventwire._properties import (
    CALLBACKS,
    CONSUMER_PROPERTIES,
    NON_SECRET_PROPERTIES,
    RESERVED,
    SECRET_PROPERTIES,
    URL_PROPERTIES,
    Callback,
    ConfigValue,
    Secret,
    canonical,
    embedded_secrets,
    mask_embedded,
)
from eventwire._scrub import _NUMBER, MIN_SCRUBBED_LENGTH, Scrubber
from eventwire.observability.logging import get_logger

__all__ = [
    "CALLBACKS",
    "MIN_SCRUBBED_LENGTH",
    "NON_SECRET_PROPERTIES",
    "PROFILES",
    "RESERVED",
    "SECRET_PROPERTIES",
    "URL_PROPERTIES",
    "Callback",
    "KafkaConfig",
    "Profile",
    "Scrubber",
    "Secret",
    "is_secret_key",
]

#: The name of a producer profile: the librdkafka settings of :data:`PROFILES`.
Profile = Literal["reliable", "low_latency", "high_throughput"]
#: What a secret value is shown as.
_MASK = "***"
#: What a callable value is shown as (never its repr: a bound method or a
#: closure's repr may name a secret-holding object).
_CALLBACK_MASK = "<callback>"
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


# librdkafka 2.16's producer-only ("P") properties: not for a consumer or admin client.
_PRODUCER_ONLY = frozenset(
    {
        "acks",
        "batch.num.messages",
        "batch.size",
        "compression.codec",
        "compression.level",
        "compression.type",
        "delivery.report.only.error",
        "delivery.timeout.ms",
        "enable.gapless.guarantee",
        "enable.idempotence",
        "linger.ms",
        "message.send.max.retries",
        "message.timeout.ms",
        "partitioner",
        "produce.offset.report",
        "queue.buffering.backpressure.threshold",
        "queue.buffering.max.kbytes",
        "queue.buffering.max.messages",
        "queue.buffering.max.ms",
        "queuing.strategy",
        "request.required.acks",
        "request.timeout.ms",
        "retries",
        "sticky.partitioning.linger.ms",
        "transaction.timeout.ms",
        "transactional.id",
    }
)


# Names that say "secret" outright. Their values are scrubbed from log text
# whatever their length; other masked values only from 6 characters on.
_SECRET_NAME = re.compile(
    r"(password|passphrase|secret|token|credential|private|\.pem$|\.config$|"
    r"extensions|jaas|kinit)",
    re.I,
)
_PROPERTY = re.compile(r"[a-z][a-z0-9_]*(\.[a-z0-9_]+)*")


def is_secret_key(key: str) -> bool:
    """True for property names whose values must never be shown.

    That is every name not in :data:`NON_SECRET_PROPERTIES`: an unknown or new
    property is treated as secret until it is known to hold none.
    """
    return key not in NON_SECRET_PROPERTIES


def _check_value(key: str, value: object) -> None:
    """Refuse a value of the wrong type for ``key``: a callable only where librdkafka takes one."""
    if key in CALLBACKS:
        if isinstance(value, Secret) or not callable(value):
            raise ConfigurationError(
                f"override {key!r} must be a callable ({CALLBACKS[key]}), "
                f"got {type(value).__name__}"
            )
    elif callable(value) and not isinstance(value, Secret):
        raise ConfigurationError(
            f"override {key!r} does not take a callable: callbacks are accepted only as "
            f"{', '.join(CALLBACKS)} (eventwire sets {', '.join(RESERVED)} itself)"
        )
    elif not isinstance(value, str | int | float | bool | Secret):
        raise ConfigurationError(
            f"override {key!r} must be a str, int, float or bool, got {type(value).__name__}"
        )


def _check_text(key: str, value: object) -> None:
    """Refuse a str librdkafka cannot take: not valid UTF-8 (a lone surrogate), or a NUL.

    (confluent-kafka would fail with a bare SystemError.) The value is not shown: it may
    be a secret.
    """
    if isinstance(value, str) and ("\0" in value or not _encodable(value)):
        raise ConfigurationError(
            f"the value of {key!r} is not valid text (a lone surrogate or a NUL, e.g. from "
            "bytes decoded with errors='surrogateescape'): librdkafka takes UTF-8 text. "
            "Fix the value where it is set."
        )


def _encodable(text: str) -> bool:
    if text.isascii():
        return True
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


#: librdkafka keeps an integer property in a C ``int``: a longer value wraps around.
_C_INT_MIN, _C_INT_MAX = -(2**31), 2**31 - 1
#: A number written in decimal: what Python (and the user) reads in an override's text.
_NUMBER_TEXT = re.compile(r"\s*[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?\s*")
#: The start of a number as C's ``strtol(text, &end, 0)`` reads it, as librdkafka does.
_STRTOL = re.compile(r"\s*([+-]?)(0[xX][0-9a-fA-F]+|0[0-7]*|[1-9][0-9]*)?")


def _int_range(name: str) -> tuple[int, int] | None:
    """The range of librdkafka's integer property ``name``; None if it is not one."""
    from eventwire.transports.kafka import librdkafka_int_range  # noqa: PLC0415 - import cycle

    return librdkafka_int_range(name)


def _strtol(text: str) -> int:
    """The integer librdkafka reads from ``text``: C's ``strtol`` in base 0.

    Before the C ``int`` cast: ``"1e3"`` is 1, ``"2.5"`` is 2, ``"010"`` is 8, ``"0x10"``
    is 16, text with no number is 0.
    """
    match = _STRTOL.match(text)
    assert match is not None  # every part is optional
    sign, digits = match[1], match[2]
    if not digits:
        return 0
    number = int(digits, 16 if digits[1:2] in ("x", "X") else 8 if digits[0] == "0" else 10)
    return -number if sign == "-" else number


def _check_range(key: str, value: object) -> None:
    """Refuse a number librdkafka's integer property ``key`` would not take as written.

    librdkafka reads an integer property with C's ``strtol`` into a C ``int``: a value out
    of that range wraps around (``message.timeout.ms = 2**32 + 1500`` would be 1.5 s), and
    text past the integer is dropped (``2.5`` would be 2, ``"1e3"`` 1; ``"010"`` is
    octal, 8). Refused: a number outside the property's range (the installed
    librdkafka's), one that is not whole, and text librdkafka would read as another
    number. Text that is no decimal number (``"all"``, ``"0x10"``) is left to
    librdkafka. The value is shown only for a property whose values may be shown.
    """
    raw = value.get() if isinstance(value, Secret) else value
    if isinstance(raw, bool) or not isinstance(raw, int | float | str):
        return
    if isinstance(raw, str) and not _NUMBER_TEXT.fullmatch(raw):
        return
    limits = _int_range(key)
    if limits is None:
        return
    low, high = limits
    text = raw if isinstance(raw, str) else str(raw)
    meant = raw if isinstance(raw, int) else float(raw)
    shown = "" if is_secret_key(key) or isinstance(value, Secret) else f" = {value!r}"
    if isinstance(meant, float) and not (math.isfinite(meant) and meant.is_integer()):
        raise ConfigurationError(
            f"{key}{shown} is not a whole number: librdkafka's {key} is an integer "
            f"({low}..{high}), and it would drop what follows the integer part"
        )
    if not low <= meant <= high:
        wraps = (
            " librdkafka keeps it in a C int, and a value out of that range would wrap "
            "around silently (2**32 + 1500 becomes 1500)."
            if not _C_INT_MIN <= meant <= _C_INT_MAX
            else ""
        )
        days = (
            f" ({high:,} ms is about {high / 86_400_000:.1f} days)"
            if key.endswith(".ms") and high >= 86_400_000
            else ""
        )
        raise ConfigurationError(
            f"{key}{shown} is outside the range librdkafka takes for it: "
            f"{low}..{high}{days}.{wraps} Give a value in that range"
        )
    read = _strtol(text)
    if read != meant:
        raise ConfigurationError(
            f"{key}{shown} would be read by librdkafka as {read if shown else 'another number'}"
            " (it reads an integer property as C's strtol does: a leading 0 means octal, "
            "and an exponent is dropped). Write the number as plain decimal digits"
        )


class _Masked(Secret):
    """A value masked by eventwire, not by the user: its property is not known to be harmless.

    Log text is scrubbed of it by the rules of :meth:`KafkaConfig.secret_values`.
    """

    __slots__ = ()


def _reveal(value: object) -> ConfigValue | Callback:
    if isinstance(value, Secret):
        return value.get()
    assert isinstance(value, str | int | float | bool) or callable(value)
    return value


def _shown(key: str, value: object) -> str:
    if callable(value) and not isinstance(value, Secret):
        return _CALLBACK_MASK
    if isinstance(value, Secret) or is_secret_key(key):
        return _MASK
    return mask_embedded(value) if isinstance(value, str) and key in URL_PROPERTIES else str(value)


_log = get_logger("eventwire.kafka")
#: The settings that switch TLS verification off, and what each does.
_TLS_OFF = {
    "enable.ssl.certificate.verification": "the broker's certificate is not verified",
    "ssl.endpoint.identification.algorithm": "the broker's host name is not checked",
}
#: Set while :meth:`KafkaConfig.with_overrides` copies a config that already warned.
_TLS_WARNED: ContextVar[frozenset[str]] = ContextVar("_TLS_WARNED", default=frozenset())


def _tls_off(props: Mapping[str, object]) -> frozenset[str]:
    """The TLS verification settings in ``props`` that switch verification off."""
    off = set()
    verify = props.get("enable.ssl.certificate.verification")
    if verify is not None and str(verify).strip().lower() in ("false", "0", "no", "off"):
        off.add("enable.ssl.certificate.verification")
    algorithm = props.get("ssl.endpoint.identification.algorithm")
    if algorithm is not None and str(algorithm).strip().lower() == "none":
        off.add("ssl.endpoint.identification.algorithm")
    return frozenset(off)


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

    ``overrides`` values are str, int, float, bool or :class:`Secret`; the keys of
    :data:`CALLBACKS` take a callable instead, e.g. ``overrides={"oauth_cb":
    fetch_token}``, handed to librdkafka as the same object.

    The brokers are ``bootstrap_servers`` only: ``overrides`` refuses
    ``bootstrap.servers`` and ``metadata.broker.list``, which librdkafka would connect
    to while the config (and every connection error) named ``bootstrap_servers``, and
    which would skip its ``host:port`` check. :meth:`load` (and the command line's
    ``--bootstrap``) does take them in its ``overrides``: it moves them into
    ``bootstrap_servers``, as a later source replaces an earlier one.

    Raises:
        ConfigurationError: an unknown profile, a malformed bootstrap list, an
            override that is not a librdkafka property name, a reserved key
            (:data:`RESERVED`), a consumer-only property (``group.id``...: a
            producer ignores it), a callable under a key that takes none (the
            accepted callback names are listed), a callback key whose value is
            not callable, or a value of the wrong type. Also:
            ``transactional.id`` (eventwire does not use Kafka transactions: the
            outbox gives atomicity with a database, and idempotence is on).
            A number outside the range of an integer property
            (``message.timeout.ms``: 0..2147483647, asked of the installed
            librdkafka), or one librdkafka would read as another number.
            One property under two of librdkafka's names (``linger.ms`` and
            ``queue.buffering.max.ms``).
            The brokers (above).
            librdkafka itself rejects unknown property names when the
            publisher starts, and eventwire names the key.
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
    overrides: Mapping[str, ConfigValue | Secret | Callback] = field(default_factory=dict)

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
        for key, value in self._properties().items():
            _check_text(key, _reveal(value))

    def _check_bootstrap(self) -> None:
        servers = self.bootstrap_servers
        if not isinstance(servers, str):
            raise ConfigurationError(
                f"bootstrap_servers must be a str 'host:port[,host:port...]', not "
                f"{type(servers).__name__} (a Publisher also takes a list of 'host:port' str)"
            )
        if not servers.strip():
            raise ConfigurationError(
                "bootstrap_servers is empty: pass 'host:port[,host:port...]', e.g. 'localhost:9092'"
            )
        for server in servers.split(","):
            host, sep, port = server.strip().rpartition(":")
            digits = port.isascii() and port.isdigit()  # "٤٠" is a str.isdigit() too
            if not sep or not host or not digits or not 0 < int(port) < 65536:
                raise ConfigurationError(
                    f"bootstrap_servers entry {mask_embedded(server.strip())!r} is not "
                    "'host:port' with a port in 1..65535"
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
            if key in RESERVED:
                raise ConfigurationError(
                    f"override key {key!r} is managed by eventwire and cannot be overridden "
                    f"({RESERVED[key]})"
                )
            if key in CONSUMER_PROPERTIES:
                # librdkafka would take it as a global property and the producer would
                # ignore it: refused, as a config file or the environment refuses it.
                raise ConfigurationError(
                    f"override key {key!r} is a librdkafka consumer property, which a "
                    "producer ignores: this configuration is a producer's (remove it)"
                )
            if canonical(key) == "bootstrap.servers":
                # Not supported here: librdkafka would connect to these brokers while
                # bootstrap_servers (checked as 'host:port', named in every connection
                # error) named others. KafkaConfig.load(overrides=...) moves them into
                # the field instead, as a later source replaces an earlier one.
                raise ConfigurationError(
                    f"override key {key!r} is not taken: the brokers are KafkaConfig's "
                    "bootstrap_servers (a Publisher's first argument), which is checked and "
                    "named in connection errors. Pass them there (to change a config's, "
                    "dataclasses.replace(config, bootstrap_servers=...))"
                )
            if key in UNSUPPORTED_PROPERTIES:
                raise ConfigurationError(
                    f"override key {key!r} cannot be set: {UNSUPPORTED_PROPERTIES[key]}"
                )
            _check_value(key, value)
            _check_range(key, value)
        self._check_aliases()
        # Keep the string values of properties not known to be harmless wrapped,
        # so that printing ``config.overrides`` (or the dataclass fields) never
        # shows them; ``to_librdkafka()`` unwraps them.
        wrapped = {
            k: _Masked(v) if isinstance(v, str) and is_secret_key(k) else v
            for k, v in self.overrides.items()
        }
        object.__setattr__(self, "overrides", wrapped)
        self._warn_tls_off()

    def _check_aliases(self) -> None:
        """Refuse one property under two of librdkafka's names, as a config file does.

        librdkafka applies properties in order, so which of the two values counted
        would depend on the order of the dict.
        """
        seen: dict[str, str] = {}
        for key in self.overrides:
            other = seen.setdefault(canonical(key), key)
            if other != key:
                raise ConfigurationError(
                    f"overrides give {other!r} and {key!r}, which are one librdkafka "
                    "property under two names; give it once"
                )

    def _warn_tls_off(self) -> None:
        """Log one WARNING if the overrides switch TLS verification off.

        Not for a copy that :meth:`with_overrides` made of a config that already
        warned of the same settings.
        """
        off = _tls_off(self.overrides)
        if off and not off <= _TLS_WARNED.get():
            _log.warning(
                "tls_verification_disabled",
                properties=", ".join(f"{k}={self.overrides[k]}" for k in sorted(off)),
                risk="; ".join(_TLS_OFF[k] for k in sorted(off))
                + ": anyone on the network path can pose as the broker",
                hint="remove these settings and set ssl.ca.location to the CA that signed "
                "the brokers' certificates (a test cluster only may keep them)",
            )

    def _properties(self) -> dict[str, ConfigValue | Secret | Callback]:
        """The librdkafka property dict with secrets still wrapped."""
        props: dict[str, ConfigValue | Secret | Callback] = dict(PROFILES[self.profile])
        props["bootstrap.servers"] = self.bootstrap_servers
        props["client.id"] = self.client_id
        for f in fields(self):
            if f.name in {"bootstrap_servers", "profile", "client_id", "overrides"}:
                continue
            value = getattr(self, f.name)
            if value is not None:
                props[f.name.replace("_", ".")] = value
        # An override replaces a profile's or a field's value under any of its names
        # (queue.buffering.max.ms replaces the profile's linger.ms), so librdkafka gets
        # each property once.
        given = {canonical(key) for key in self.overrides}
        props = {k: v for k, v in props.items() if canonical(k) not in given}
        props.update(self.overrides)
        return props

    def to_librdkafka(self) -> dict[str, ConfigValue | Callback]:
        """The full librdkafka property dict, secrets included. Never log it.

        Callbacks (:data:`CALLBACKS`) are in it as the very objects given.
        """
        return {k: _reveal(v) for k, v in self._properties().items()}

    def client_properties(self) -> dict[str, ConfigValue | Callback]:
        """What any client of this cluster needs: where it is and how to log in. Never log it.

        For a consumer or admin client the tools make (e.g. to read a
        dead-letter topic): ``bootstrap.servers``, ``client.id``, every
        ``security.*``, ``sasl.*`` and ``ssl.*`` property, ``oauth_cb``, and the
        other global properties among the overrides; no profile (producer)
        setting and no producer-only override.
        """
        props = self.to_librdkafka()
        return {
            k: v
            for k, v in props.items()
            if k in {"bootstrap.servers", "client.id", "oauth_cb"}
            or k.startswith(("security.", "sasl.", "ssl.", "https."))
            or (k in self.overrides and k not in _PRODUCER_ONLY and k not in CALLBACKS)
        }

    def with_overrides(
        self, overrides: Mapping[str, ConfigValue | Secret | Callback]
    ) -> KafkaConfig:
        """A copy with ``overrides`` applied over this config's own (same checks).

        E.g. a config loaded from a file, plus a token provider::

            KafkaConfig.load().with_overrides({"oauth_cb": fetch_token})

        A property set here replaces this config's value under any of its names:
        ``with_overrides({"message.timeout.ms": 30_000})`` replaces a
        ``delivery.timeout.ms`` (its other name) too, so the latest value counts.

        Raises:
            ConfigurationError: as the constructor.
        """
        given = {canonical(key) for key in overrides if isinstance(key, str)}
        kept = {k: v for k, v in self.overrides.items() if canonical(k) not in given}
        token = _TLS_WARNED.set(_tls_off(self.overrides))
        try:
            return replace(self, overrides={**kept, **overrides})
        finally:
            _TLS_WARNED.reset(token)

    @classmethod
    def from_file(
        cls,
        path: str | os.PathLike[str],
        *,
        overrides: Mapping[str, ConfigValue | Secret | Callback] | None = None,
    ) -> KafkaConfig:
        """Load a config file: TOML (``.toml``) or properties (``.properties``/``.conf``).

        Keys are librdkafka property names (plus eventwire's ``profile``); a secret
        may be given by reference, ``<property>.env = "VAR"`` or
        ``<property>.file = "/path"`` (a relative path is relative to the config
        file). ``overrides`` (e.g. an ``oauth_cb``) are applied last. The full
        format is in :mod:`eventwire._config_load`.

        Raises:
            ConfigurationError: the file cannot be read or parsed, a key is not a
                librdkafka producer property, a referenced variable is unset or a
                referenced file unreadable, or a value is invalid. The message
                names the file, the key and the variable or path, never a value.
        """
        return cls._build(load(path, env_prefix=None, overrides=overrides))

    @classmethod
    def from_env(
        cls,
        prefix: str = "EVENTWIRE_KAFKA_",
        *,
        environ: Mapping[str, str] | None = None,
        overrides: Mapping[str, ConfigValue | Secret | Callback] | None = None,
    ) -> KafkaConfig:
        """Load from environment variables: ``EVENTWIRE_KAFKA_BOOTSTRAP_SERVERS=h:9092`` etc.

        After the prefix, ``_`` stands for ``.`` and ``__`` for ``_``:
        ``..._SASL_PASSWORD`` is ``sasl.password``, ``..._LOG__LEVEL`` is
        ``log_level``; ``..._SASL_PASSWORD_FILE`` is a reference to a file
        holding it. ``<prefix>PROFILE`` is eventwire's profile; ``<prefix>CONFIG``
        (a file) is ignored here (:meth:`load` reads it). ``environ`` defaults to
        ``os.environ``.

        Raises:
            ConfigurationError: as :meth:`from_file`, naming the variable.
        """
        return cls._build(
            load(None, env_prefix=prefix, environ=environ, overrides=overrides, use_env_file=False)
        )

    @classmethod
    def load(
        cls,
        file: str | os.PathLike[str] | None = None,
        *,
        env_prefix: str | None = "EVENTWIRE_KAFKA_",
        environ: Mapping[str, str] | None = None,
        overrides: Mapping[str, ConfigValue | Secret | Callback] | None = None,
    ) -> KafkaConfig:
        """The config file (``file``, else ``$EVENTWIRE_KAFKA_CONFIG``), then the environment.

        Each property is taken from the last of: the file, the ``env_prefix``
        variables (None: the environment is not read), ``overrides``.

        Raises:
            ConfigurationError: as :meth:`from_file` and :meth:`from_env`, or
                neither gives ``bootstrap.servers``.
        """
        return cls._build(load(file, env_prefix=env_prefix, environ=environ, overrides=overrides))

    @classmethod
    def _build(cls, loaded: Loaded) -> KafkaConfig:
        try:
            return cls(overrides=loaded.overrides, **loaded.fields)  # type: ignore[arg-type]
        except ConfigurationError as exc:
            raise ConfigurationError(f"{exc} (from {loaded.where})") from None

    def redacted(self) -> dict[str, str]:
        """The librdkafka property dict with values masked as ``***``.

        A value is shown only if its property is in :data:`NON_SECRET_PROPERTIES`
        and it was not given as a :class:`Secret`; a callable is ``<callback>``.
        A broker list or URL (:data:`URL_PROPERTIES`) is shown with its userinfo
        (``***@host:9092``) and query string (``?***``) masked.
        """
        return {k: _shown(k, v) for k, v in self._properties().items()}

    def secret_values(self) -> list[str]:
        """The strings to scrub from text that comes from librdkafka (logs, errors).

        Those are the values :meth:`redacted` masks, except the ones that cannot be
        a secret worth hiding and whose scrubbing would wreck the logs: bools and
        numbers, ``"true"``/``"false"``, numeric strings, and strings shorter than
        :data:`MIN_SCRUBBED_LENGTH`. That exception never applies to a value given
        as a :class:`Secret` or to a property whose name says it holds a secret
        (password, passphrase, secret, token, private key, PEM, ...): those are
        scrubbed whatever their length. Credentials embedded in a shown broker list
        or URL (:data:`URL_PROPERTIES`: ``user:pass@``, a query string) are in it too.
        """
        values: list[str] = []
        for key, wrapped in self._properties().items():
            value = _reveal(wrapped)
            if not isinstance(value, str) or not value:
                continue
            if key in URL_PROPERTIES and not isinstance(wrapped, Secret):
                values += embedded_secrets(value)  # user:pass@, ?query of a shown value
            elif isinstance(wrapped, Secret) and not isinstance(wrapped, _Masked):
                values.append(value)  # the user (or a secret field) said so
            elif is_secret_key(key) and (
                _SECRET_NAME.search(key)
                or not (
                    len(value) < MIN_SCRUBBED_LENGTH
                    or value.lower() in ("true", "false")
                    or _NUMBER.fullmatch(value)
                )
            ):
                values.append(value)
        return values

    def __repr__(self) -> str:
        shown = ", ".join(f"{k}={v!r}" for k, v in self.redacted().items())
        return f"KafkaConfig({shown})"
