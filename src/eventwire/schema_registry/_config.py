"""Where the Schema Registry is and how to log in: :class:`SchemaRegistryConfig`.

Read from the same config file as Kafka (its ``[schema_registry]`` table; in a
properties file ``schema_registry.<key>=`` lines) and from ``EVENTWIRE_SCHEMA_REGISTRY_<KEY>``
variables, the variables winning key by key. The file is the one given, else the one
``EVENTWIRE_KAFKA_CONFIG`` names::

    bootstrap.servers = "kafka:9092"

    [schema_registry]
    url = "https://registry:8081"
    basic_auth_user_info.env = "SR_USER_INFO"   # "user:password", from a variable
    # bearer_auth_token.file = "/run/secrets/sr-token"
    # ssl_ca_location = "/etc/ssl/ca.pem"

A secret (``basic_auth_user_info``, ``bearer_auth_token``, ``ssl_key_password``) may be
given inline, or by reference: ``<key>.env = "VAR"`` / ``<key>.file = "PATH"`` in the file,
``EVENTWIRE_SCHEMA_REGISTRY_<KEY>_FILE`` in the environment. Secrets are
:class:`~eventwire.Secret`: never in a repr, a log or an error message; credentials in the
URL (``https://user:pw@host``) are masked wherever the URL is shown.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from eventwire._config_load import ENV_PREFIX as KAFKA_ENV_PREFIX
from eventwire._config_load import config_file_path, load_section
from eventwire._errors import ConfigurationError
from eventwire._properties import Secret, embedded_secrets, mask_embedded, without_userinfo

__all__ = ["ENV_PREFIX", "SchemaRegistryConfig"]

#: The prefix of the registry's environment variables.
ENV_PREFIX = "EVENTWIRE_SCHEMA_REGISTRY_"
_SECRETS = frozenset({"basic_auth_user_info", "bearer_auth_token", "ssl_key_password"})
_INTS = frozenset({"max_retries", "retries_wait_ms", "retries_max_wait_ms"})
_FLOATS = frozenset({"timeout", "cache_latest_ttl_sec"})
_MASK = "***"


@dataclass(frozen=True, slots=True)
class SchemaRegistryConfig:
    """Connection settings of a Confluent-compatible Schema Registry.

    Args:
        url: base URL(s), comma-separated (``https://registry:8081``).
        basic_auth_user_info: ``"user:password"`` for HTTP basic auth.
        bearer_auth_token: a static bearer token (``Authorization: Bearer ...``).
        bearer_auth_logical_cluster: Confluent Cloud's ``target-sr-cluster`` header
            (sent with a bearer token; empty by default).
        bearer_auth_identity_pool_id: Confluent Cloud's identity pool, if any.
        ssl_ca_location: CA file or directory to verify an ``https`` registry with.
        ssl_certificate_location, ssl_key_location, ssl_key_password: a client
            certificate (mutual TLS).
        timeout: seconds an HTTP request may take. The first publish of a type to a
            topic (its schema id lookup) gives up after ``timeout`` x (``max_retries``
            + 1) plus the back-off waits, per URL, however slowly the registry answers;
            a decode's fetch of a writer schema is bounded per network operation only.
        max_retries: retries of a request that failed at the network level or with
            a retriable status (408, 429, 5xx), ``retries_wait_ms`` apart at first,
            backing off to ``retries_max_wait_ms``. Small by default: a publish of a
            type whose schema id is not cached yet waits for them. After an unavailable
            registry, such publishes fail at once for ``retries_max_wait_ms``.
        cache_latest_ttl_sec: how long ``use_latest_version`` trusts the latest
            version it fetched (None: until the process ends).
    """

    url: str
    basic_auth_user_info: Secret | None = None
    bearer_auth_token: Secret | None = None
    bearer_auth_logical_cluster: str = ""
    bearer_auth_identity_pool_id: str | None = None
    ssl_ca_location: str | None = None
    ssl_certificate_location: str | None = None
    ssl_key_location: str | None = None
    ssl_key_password: Secret | None = None
    timeout: float = 10.0
    max_retries: int = 1
    retries_wait_ms: int = 200
    retries_max_wait_ms: int = 2000
    cache_latest_ttl_sec: float | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.url, str):
            raise ConfigurationError(
                f"schema_registry url must be a str, not {type(self.url).__name__}"
            )
        if not self.url.strip():
            raise ConfigurationError(
                "schema_registry url is empty: pass the registry's base URL, e.g. "
                f"'http://localhost:8081' (or set {ENV_PREFIX}URL)"
            )
        for entry in (e.strip() for e in self.url.split(",")):
            if not entry.startswith(("http://", "https://")):
                raise ConfigurationError(
                    f"schema_registry url: the entry {_malformed_shown(entry)} does not start "
                    "with http:// or https://"
                )
            if "?" in entry or "#" in entry:
                base = entry.split("?", 1)[0].split("#", 1)[0]
                raise ConfigurationError(
                    f"schema_registry url {mask_embedded(base)!r} has a query string or a "
                    "fragment (not shown: it may hold a key). The client appends the API's "
                    "paths to the URL, so every request would go to a wrong address. Give "
                    "the registry's base URL alone; credentials go in basic_auth_user_info "
                    "or bearer_auth_token"
                )
        for name in _SECRETS:
            value = getattr(self, name)
            if isinstance(value, str):
                object.__setattr__(self, name, Secret(value))
            elif value is not None and not isinstance(value, Secret):
                raise ConfigurationError(
                    f"schema_registry {name} must be a str or an eventwire.Secret, not "
                    f"{type(value).__name__} (not shown)"
                )
        self._check_plain_fields()
        self._check_auth()

    def _check_auth(self) -> None:
        """Credentials given once, in a usable form; TLS files that exist."""
        if self.basic_auth_user_info is not None and ":" not in self.basic_auth_user_info.get():
            raise ConfigurationError(
                "schema_registry basic_auth_user_info must be 'user:password' (not shown)"
            )
        if self.basic_auth_user_info is not None and self.bearer_auth_token is not None:
            raise ConfigurationError(
                "schema_registry: give basic_auth_user_info or bearer_auth_token, not both"
            )
        _, userinfos = without_userinfo(self.url)
        if userinfos and (
            self.basic_auth_user_info is not None or self.bearer_auth_token is not None
        ):
            raise ConfigurationError(
                f"schema_registry url {self.shown_url!r} has credentials and "
                "basic_auth_user_info or bearer_auth_token is given too: give them once "
                "(prefer basic_auth_user_info, out of the URL)"
            )
        first_has = _has_userinfo(self.url.split(",")[0])
        if len(set(userinfos)) > 1 or (userinfos and not first_has):
            # the client sends the first URL's credentials to every registry it tries
            raise ConfigurationError(
                f"schema_registry url {self.shown_url!r} gives credentials for some "
                "registries only, or different ones: the client sends one set to every "
                "registry, so give it once, as basic_auth_user_info"
            )
        if (
            self.ssl_key_location is not None or self.ssl_key_password is not None
        ) and self.ssl_certificate_location is None:
            raise ConfigurationError(
                "schema_registry ssl_key_location/ssl_key_password need "
                "ssl_certificate_location (the client certificate) too"
            )
        for name in ("ssl_ca_location", "ssl_certificate_location", "ssl_key_location"):
            path = getattr(self, name)
            if path is not None and not Path(path).expanduser().exists():
                raise ConfigurationError(
                    f"schema_registry {name} {path!r} does not exist: give the path of the "
                    "PEM file (or, for ssl_ca_location, a directory of them)"
                )

    def _check_plain_fields(self) -> None:
        """Numbers and strings of the right type (a config file's text is converted)."""
        for name in _INTS | _FLOATS:
            value = getattr(self, name)
            if name == "cache_latest_ttl_sec" and value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ConfigurationError(
                    f"schema_registry {name} must be a number, not {type(value).__name__}"
                )
            if name in _INTS and not isinstance(value, int):
                if not value.is_integer():
                    raise ConfigurationError(f"schema_registry {name} must be a whole number")
                object.__setattr__(self, name, value := int(value))
            if not value >= 0 or (name == "timeout" and value == 0):  # (NaN is not >= 0)
                raise ConfigurationError(
                    f"schema_registry {name} must be {'above' if name == 'timeout' else 'at least'}"
                    f" 0, not {value!r}"
                )
        for name in (
            "bearer_auth_logical_cluster",
            "bearer_auth_identity_pool_id",
            "ssl_ca_location",
            "ssl_certificate_location",
            "ssl_key_location",
        ):
            value = getattr(self, name)
            if isinstance(value, os.PathLike):
                object.__setattr__(self, name, value := os.fspath(value))
            if value is not None and not isinstance(value, str):
                raise ConfigurationError(
                    f"schema_registry {name} must be a str, not {type(value).__name__}"
                )

    @property
    def shown_url(self) -> str:
        """The URL(s) with any credentials and query string masked: safe to show."""
        return mask_embedded(self.url)

    def client_conf(self) -> dict[str, Any]:
        """The ``SchemaRegistryClient`` configuration, secrets included. Never log it."""
        # credentials in the URL go as basic auth: the HTTP client logs the URL it calls
        url, userinfos = without_userinfo(self.url)
        conf: dict[str, Any] = {
            "url": url,
            "timeout": self.timeout,
            "max.retries": self.max_retries,
            "retries.wait.ms": self.retries_wait_ms,
            "retries.max.wait.ms": self.retries_max_wait_ms,
        }
        if self.cache_latest_ttl_sec is not None:
            conf["cache.latest.ttl.sec"] = self.cache_latest_ttl_sec
        if self.basic_auth_user_info is not None:
            conf["basic.auth.user.info"] = self.basic_auth_user_info.get()
        elif userinfos and ":" in userinfos[0]:  # a user name alone never sent credentials
            user, _, password = userinfos[0].partition(":")
            conf["basic.auth.user.info"] = f"{unquote(user)}:{unquote(password)}"
        if self.bearer_auth_token is not None:
            conf["bearer.auth.credentials.source"] = "STATIC_TOKEN"
            conf["bearer.auth.token"] = self.bearer_auth_token.get()
            conf["bearer.auth.logical.cluster"] = self.bearer_auth_logical_cluster
            if self.bearer_auth_identity_pool_id:
                conf["bearer.auth.identity.pool.id"] = self.bearer_auth_identity_pool_id
        for name in ("ssl_ca_location", "ssl_certificate_location", "ssl_key_location"):
            if getattr(self, name) is not None:
                conf[name.replace("_", ".")] = getattr(self, name)
        if self.ssl_key_password is not None:
            conf["ssl.key.password"] = self.ssl_key_password.get()
        return conf

    def secret_values(self) -> list[str]:
        """The strings to scrub from any text shown (credentials, URL userinfo)."""
        values = [
            s.get()
            for s in (self.basic_auth_user_info, self.bearer_auth_token, self.ssl_key_password)
            if s is not None
        ]
        if self.basic_auth_user_info is not None:
            values.append(self.basic_auth_user_info.get().partition(":")[2])
        values += embedded_secrets(self.url)
        user_info = self.client_conf().get("basic.auth.user.info")
        if user_info:  # as the Authorization header carries it (a proxy's page may echo it)
            values.append(base64.b64encode(user_info.encode()).decode())
        return [v for v in values if v]

    def __repr__(self) -> str:
        shown = []
        for f in fields(self):
            value = getattr(self, f.name)
            if value is None or (f.name == "bearer_auth_logical_cluster" and not value):
                continue
            if f.name == "url":
                shown.append(f"url={self.shown_url!r}")
            elif isinstance(value, Secret):
                shown.append(f"{f.name}={_MASK!r}")
            else:
                shown.append(f"{f.name}={value!r}")
        return f"SchemaRegistryConfig({', '.join(shown)})"

    @classmethod
    def load(
        cls,
        file: str | os.PathLike[str] | None = None,
        *,
        env_prefix: str | None = ENV_PREFIX,
        environ: Mapping[str, str] | None = None,
    ) -> SchemaRegistryConfig:
        """The ``[schema_registry]`` table of the config file, then the variables.

        The file is ``file``, else the one ``EVENTWIRE_KAFKA_CONFIG`` names (if any);
        ``env_prefix`` None reads no variable.

        Raises:
            ConfigurationError: unknown key, bad value, a reference to an unset
                variable or unreadable file, or no ``url`` anywhere. Names the key
                and its source, never a value.
        """
        env = os.environ if environ is None else environ
        path = config_file_path(file, KAFKA_ENV_PREFIX, env)
        values = load_section(
            "schema_registry",
            path,
            env_prefix=env_prefix or ENV_PREFIX,
            kafka_env_prefix=None,
            environ=env if env_prefix is not None else {},
        )
        sources = [f"config file {str(path)!r}"] if path is not None else []
        if env_prefix is not None:
            sources.append(f"{env_prefix}* variables")
        where = " and ".join(sources) or "no config file and no variable"
        base = path.parent if path is not None else None
        return cls._from_values(values, where, env, base)

    @classmethod
    def _from_values(
        cls,
        values: Mapping[str, object],
        where: str,
        environ: Mapping[str, str],
        base: Path | None,
    ) -> SchemaRegistryConfig:
        known = {f.name for f in fields(cls)}
        kwargs: dict[str, object] = {}
        for raw_key, raw in values.items():
            key, value = _dereference(raw_key, raw, where, environ, base)
            if key not in known:
                raise ConfigurationError(
                    f"schema_registry key {key!r} (from {where}) is unknown: use one of "
                    + ", ".join(sorted(known))
                )
            if key in kwargs:
                raise ConfigurationError(
                    f"schema_registry key {key!r} is given twice ({where}): give it once"
                )
            kwargs[key] = _typed(key, value, where)
        if "url" not in kwargs:
            raise ConfigurationError(
                f"schema_registry url is not set ({where}): give it in the config file's "
                f"[schema_registry] table, or as {ENV_PREFIX}URL"
            )
        try:
            return cls(**kwargs)  # type: ignore[arg-type]
        except ConfigurationError as exc:
            raise ConfigurationError(f"{exc} (from {where})") from None


def _malformed_shown(entry: str) -> str:
    """An entry that is not an http(s) URL, quoted safely.

    Its userinfo cannot be found reliably without a well-formed ``scheme://``, so an
    entry holding ``@``, ``?`` or ``#`` is quoted only up to its first ``:`` or ``/``.
    """
    if not any(c in entry for c in "@?#"):
        return repr(entry)
    cut = min((i for i in (entry.find(":"), entry.find("/")) if i >= 0), default=len(entry))
    return f"starting {entry[:cut]!r} (the rest is not shown: it may hold credentials)"


def _has_userinfo(entry: str) -> bool:
    return bool(without_userinfo(entry)[1])


def _dereference(
    key: str, raw: object, where: str, environ: Mapping[str, str], base: Path | None
) -> tuple[str, object]:
    """Follow ``<key>.env``/``<key>.file`` (a TOML table or a dotted line) and ``<KEY>_FILE``."""
    kind: str | None = None
    if isinstance(raw, dict) and len(raw) == 1 and next(iter(raw)) in ("env", "file"):
        kind, raw = next(iter(raw.items()))
    elif key.rpartition(".")[2] in ("env", "file") and "." in key:
        key, _, kind = key.rpartition(".")
    elif key.endswith("_file") and key[: -len("_file")] in _SECRETS:
        key, kind = key[: -len("_file")], "file"
    if kind is None:
        return key, raw
    if not isinstance(raw, str) or not raw:
        raise ConfigurationError(f"schema_registry {key}.{kind} (from {where}) must name a {kind}")
    if kind == "env":
        if not environ.get(raw):
            raise ConfigurationError(
                f"schema_registry {key}: the environment variable it names (from {where}) is "
                "not set"
            )
        return key, environ[raw]
    path = Path(raw).expanduser()
    if not path.is_absolute() and base is not None:
        path = base / path
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        # Not the path of a secret: a secret pasted where its file's path belongs
        # ("user:password") would be shown.
        named = "the file it names" if key in _SECRETS else repr(str(path))
        raise ConfigurationError(
            f"schema_registry {key}: cannot read {named} (named by {where}; "
            f"{type(exc).__name__}). {key}.file must be the path of a file holding the value"
        ) from None
    return key, text.removesuffix("\n")


def _typed(key: str, value: object, where: str) -> object:
    try:
        if key in _INTS:
            return int(str(value))
        if key in _FLOATS:
            return float(str(value))
    except ValueError:
        raise ConfigurationError(f"schema_registry {key} (from {where}) must be a number") from None
    if not isinstance(value, str):
        raise ConfigurationError(f"schema_registry {key} (from {where}) must be a string")
    return Secret(value) if key in _SECRETS else value
