r"""Load a :class:`KafkaConfig` from a config file and from environment variables.

**Config files.** A name ending in ``.toml`` is TOML; any other (``.properties``,
``.conf``, ...) is a librdkafka-style properties file. Keys are librdkafka
property names, plus eventwire's ``profile``: the producer and global properties
eventwire lists (librdkafka 2.16's), and any other name the installed librdkafka
knows (asked of librdkafka, :func:`eventwire.transports.kafka.librdkafka_knows`),
so a newer librdkafka's properties work before eventwire lists them. A
consumer-only property (``group.id``...) and any name librdkafka does not know
are refused, naming the key, where it was, and the installed librdkafka version.
In TOML, a dotted key nests tables and a quoted key does not: ``bootstrap.servers = "h:9092"`` and
``"bootstrap.servers" = "h:9092"`` are the same property here, so giving both
is refused. A list of strings is joined with commas. A ``[relay]`` table
(``relay.<name>=`` lines in a properties file) holds the standalone relay's
settings, read by the CLI; an ``[outbox]`` table (``outbox.<name>=``) the outbox the
CLI's outbox and dlq commands read (``sqlite``, ``postgres``, ``postgres_env``,
``postgres_file``); a ``[schema_registry]`` table (``schema_registry.<name>=``)
the Schema Registry's (:class:`eventwire.schema_registry.SchemaRegistryConfig`). In a
properties file each line is ``key=value``,
``key: value`` or ``key value``: as in Java's ``Properties``, the key ends at the
first ``=``, ``:`` or blank not escaped by a backslash, and blanks and one ``=``
or ``:`` separate it from the value (which keeps any later ``=`` or ``:``). A
line whose first non-blank character is ``#`` or ``!`` is a comment. Unlike
Java, a value is taken as written (no escapes, so ``C:\certs`` stays as it is)
and there are no continuation lines.

**Secrets by reference.** ``<property>.env = "VAR"`` takes the value of the
environment variable ``VAR``; ``<property>.file = "PATH"`` takes the content of
a file (one trailing newline dropped; a relative path is relative to the config
file's directory). librdkafka's own properties that end in ``.file``
(``sasl.oauthbearer.assertion.file`` and the like) are paths, not references.
A property given both directly and by reference in one source is refused. When a
reference to a secret (any property not in
:data:`~eventwire._properties.NON_SECRET_PROPERTIES`) does not resolve -- the variable
is unset or empty, the file missing, unreadable or empty -- the error names the
property, the file and line (or the variable) holding the reference, and what it
must hold (a variable's NAME, a file's PATH), never the reference's own text: the
secret itself, written where the name or the path belongs, looks like either (a
generated upper-case password is a fine variable name, a base64 secret holds ``/``).

**Environment variables.** ``EVENTWIRE_KAFKA_<NAME>``: after the prefix the
name is lower-cased, ``_`` stands for ``.`` and ``__`` for ``_``, so
``EVENTWIRE_KAFKA_SASL_PASSWORD`` is ``sasl.password``,
``EVENTWIRE_KAFKA_LOG__LEVEL`` is ``log_level`` and
``EVENTWIRE_KAFKA_SASL_PASSWORD_FILE`` is a reference to a file.
``EVENTWIRE_KAFKA_PROFILE`` is the profile and ``EVENTWIRE_KAFKA_CONFIG`` names
the config file; ``EVENTWIRE_KAFKA_CACHE`` (the devkit's jar cache) is skipped.
A variable set to the empty string counts as unset. The relay's
settings are ``EVENTWIRE_RELAY_<NAME>`` (``EVENTWIRE_RELAY_METRICS_PORT``).

**Precedence.** Property by property: the file, then the environment, then
Python ``overrides`` (the only way to pass a callback such as ``oauth_cb``).
Within one source (one file, or the environment) a property is given once: the
same key twice, a TOML quoted and dotted key for one property, or two of
librdkafka's names for one property (``bootstrap.servers`` and
``metadata.broker.list``, ``linger.ms`` and ``queue.buffering.max.ms``, ... see
:data:`~eventwire._properties.ALIASES`) are refused with the property and the
file or variable named. Across sources, a later source's value replaces an
earlier one under any of the property's names (the environment's
``..._METADATA_BROKER_LIST`` replaces the file's ``bootstrap.servers``), and so does
a property in ``overrides``. Brokers in ``overrides`` (``bootstrap.servers`` or
``metadata.broker.list``: the command line's ``--bootstrap``) become KafkaConfig's
``bootstrap_servers``, which is checked and named in connection errors; KafkaConfig's
own ``overrides`` refuses them.

**Not supported.** ``transactional.id`` (and its references) is refused, naming
where it was: eventwire does not use Kafka transactions (see
:data:`UNSUPPORTED_PROPERTIES`).

**Warnings.** A config file other users may read (mode ``o+r``) that holds a
secret property inline (not by ``.env``/``.file`` reference) logs one WARNING,
``config_file_exposes_secret`` (``file``, ``properties``, ``mode``, ``hint``: chmod
600 or use a reference) on the ``eventwire.kafka`` logger; never a value.

**Redaction.** eventwire's lists decide only what may be shown, not what is
accepted: values of properties not in :data:`~eventwire._config.NON_SECRET_PROPERTIES`
(an allow-list) become :class:`~eventwire._config.Secret` and are masked in
``repr``, :meth:`~eventwire.KafkaConfig.redacted` and logs. So a property that
only a newer librdkafka knows is masked whatever its name -- whether it looks
secret (``*.password``, ``*.secret``) or harmless -- until eventwire lists it as
harmless. Every error is a
:class:`ConfigurationError` naming the file, line, variable or key, never a
value; a key that does not look like a property name (it may be a value, e.g.
a line with an unexpected separator) is described, not quoted.
"""

from __future__ import annotations

import difflib
import os
import re
import stat
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from eventwire._errors import ConfigurationError
from eventwire._properties import (
    CALLBACKS,
    CONSUMER_PROPERTIES,
    NON_SECRET_PROPERTIES,
    RESERVED,
    SECRET_PROPERTIES,
    Callback,
    ConfigValue,
    Secret,
    canonical,
)
from eventwire.observability.logging import get_logger

__all__ = [
    "CONFIG_FILE_VAR",
    "ENV_PREFIX",
    "KNOWN_PROPERTIES",
    "RELAY_ENV_PREFIX",
    "UNSUPPORTED_PROPERTIES",
    "ConfigFile",
    "Loaded",
    "config_file_path",
    "load",
    "load_section",
    "read_env",
    "read_file",
]

#: The default prefix of the environment variables that hold librdkafka properties.
ENV_PREFIX = "EVENTWIRE_KAFKA_"
#: After the prefix, the variable naming the config file (``EVENTWIRE_KAFKA_CONFIG``).
CONFIG_FILE_VAR = "CONFIG"
#: Variables under the default prefix that are not properties, and are skipped:
#: ``EVENTWIRE_KAFKA_CACHE`` is the devkit's Kafka jar cache.
_NOT_PROPERTIES = frozenset({f"{ENV_PREFIX}CACHE"})
#: The prefix of the standalone relay's settings in the environment.
RELAY_ENV_PREFIX = "EVENTWIRE_RELAY_"
#: The properties a file or the environment may set without asking librdkafka
#: (eventwire's lists); any other name is taken if the installed librdkafka knows it.
KNOWN_PROPERTIES: frozenset[str] = NON_SECRET_PROPERTIES | SECRET_PROPERTIES
#: eventwire's own keys beside the librdkafka properties.
_EVENTWIRE_KEYS = frozenset({"profile"})
#: eventwire's own tables in a config file.
_SECTIONS = frozenset({"outbox", "relay", "schema_registry"})
_REFERENCE_KINDS = ("env", "file")
#: What a key that may be quoted in a message looks like: a property-like name. Any
#: other text (a line that is really a value, a secret pasted as a key) is not shown.
_KEY_LIKE = re.compile(r"[A-Za-z0-9_.\-]{1,100}")
#: librdkafka properties eventwire refuses wherever they are given (a file, the
#: environment, ``overrides``), with why and what to use instead.
UNSUPPORTED_PROPERTIES: Mapping[str, str] = {
    "transactional.id": (
        "eventwire does not support Kafka transactions: it never calls "
        "init_transactions(), so with a transactional.id every publish would fail "
        "(_STATE). Remove it. For an event written atomically with a database change, "
        "use the outbox (Publisher(..., outbox=SQLiteOutbox(...) or PostgresOutbox(...))); "
        "against duplicates from retries, idempotence is already on "
        "(enable.idempotence=true in every profile)"
    ),
}
_log = get_logger("eventwire.kafka")


def _key(key: str) -> str:
    """``key`` quoted for a message, or a description if it may be a value, not a key.

    A key that is a secret property's name run on into more text (``sasl.password-pw``,
    a mistyped separator) may hold the secret: it is not shown either.
    """
    if _KEY_LIKE.fullmatch(key) and not _runs_on_from_a_secret(key):
        return repr(key)
    return (
        f"a key of {len(key)} characters that is not a property name (not shown: "
        "it may hold a value; check the separator between key and value)"
    )


def _runs_on_from_a_secret(key: str) -> bool:
    return _secret_run_on_from(key) is not None


def _secret_run_on_from(key: str) -> str | None:
    """The secret property ``key`` starts with and runs on from, if any (the longest)."""
    names = [
        name
        for name in SECRET_PROPERTIES
        if key.startswith(name) and len(key) > len(name) and key[len(name)] != "."
    ]
    return max(names, key=len) if names else None


# librdkafka property -> KafkaConfig field.
_FIELDS: Mapping[str, str] = {
    "bootstrap.servers": "bootstrap_servers",
    "metadata.broker.list": "bootstrap_servers",
    "client.id": "client_id",
    "security.protocol": "security_protocol",
    "sasl.mechanism": "sasl_mechanism",
    "sasl.mechanisms": "sasl_mechanism",
    "sasl.username": "sasl_username",
    "sasl.password": "sasl_password",
    "sasl.oauthbearer.client.id": "sasl_oauthbearer_client_id",
    "sasl.oauthbearer.client.secret": "sasl_oauthbearer_client_secret",
    "sasl.oauthbearer.token.endpoint.url": "sasl_oauthbearer_token_endpoint_url",
    "ssl.ca.location": "ssl_ca_location",
    "ssl.certificate.location": "ssl_certificate_location",
    "ssl.key.location": "ssl_key_location",
    "ssl.key.password": "ssl_key_password",
}


@dataclass(frozen=True, slots=True)
class _Entry:
    """One property as a source gives it: a value, or a reference to one."""

    value: ConfigValue
    #: None: ``value`` is the value; "env"/"file": it names a variable / a file.
    ref: Literal["env", "file"] | None
    #: Where it came from, for messages ("config file 'x.toml'", "variable X").
    origin: str
    #: The directory a relative file reference is relative to.
    base: Path | None = None


@dataclass(frozen=True, slots=True)
class ConfigFile:
    """A parsed config file: its librdkafka properties and eventwire's own tables."""

    path: Path
    properties: dict[str, _Entry] = field(default_factory=dict)
    #: eventwire's tables by name (``"relay"``), values as the file gives them.
    sections: dict[str, dict[str, object]] = field(default_factory=dict)


def config_file_path(
    file: str | os.PathLike[str] | None,
    env_prefix: str | None = ENV_PREFIX,
    environ: Mapping[str, str] | None = None,
) -> Path | None:
    """``file``, else the path in ``<env_prefix>CONFIG`` (if set and not empty), else None."""
    if file is not None:
        return Path(file)
    env = os.environ if environ is None else environ
    named = env.get(f"{env_prefix}{CONFIG_FILE_VAR}") if env_prefix is not None else None
    return Path(named) if named else None


def read_file(path: str | os.PathLike[str]) -> ConfigFile:
    """Parse a config file (TOML if its name ends in ``.toml``, else properties).

    References are not resolved here (see :func:`load`).

    Raises:
        ConfigurationError: the file cannot be read or parsed, or a key is not a
            librdkafka producer property (nor ``profile``, a reference, or a
            line of eventwire's tables); the file and key (or line) are named.
    """
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8-sig")  # a leading BOM (Windows editors) is no key
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise ConfigurationError(
            f"cannot read the Kafka config file {str(p)!r}: {reason}"
        ) from None
    result = ConfigFile(p)
    origin = f"config file {str(p)!r}"
    if p.suffix.lower() == ".toml":
        _read_toml(text, result, origin)
    else:
        _read_properties(text, result, origin)
    return result


def _read_toml(text: str, result: ConfigFile, origin: str) -> None:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigurationError(f"{origin} is not valid TOML: {exc}") from None
    flat: dict[str, object] = {}
    for key, value in data.items():
        if key in _SECTIONS:
            if not isinstance(value, dict):
                raise ConfigurationError(f"{origin}: {key!r} must be a table ([{key}])")
            result.sections[key] = dict(value)
        else:
            _flatten(key, value, flat, origin)
    for key, value in flat.items():
        _add(result.properties, key, _toml_value(key, value, origin), origin, result.path.parent)


def _flatten(prefix: str, value: object, into: dict[str, object], origin: str) -> None:
    """Dotted TOML keys nest tables; join them back into librdkafka names.

    A quoted key (``"sasl.username"``) and a dotted or table one (``sasl.username``,
    ``[sasl] username``) are different TOML keys but one property: refused.
    """
    if isinstance(value, dict):
        for key, inner in value.items():
            _flatten(f"{prefix}.{key}", inner, into, origin)
    elif prefix in into:
        raise ConfigurationError(
            f"{origin}: {_key(prefix)} is given twice (as a quoted key and as a dotted key "
            "or table); give it once"
        )
    else:
        into[prefix] = value


def _toml_value(key: str, value: object, origin: str) -> ConfigValue:
    if isinstance(value, list) and all(isinstance(v, str | int | float) for v in value):
        return ",".join(str(v) for v in value)
    if isinstance(value, str | int | float | bool):
        return value
    raise ConfigurationError(
        f"{origin}: {_key(key)} must be a string, number, boolean or list of strings, "
        f"got a TOML {type(value).__name__}"
    )


def _split_line(line: str) -> tuple[str, str] | None:
    """A properties line's key and value, split as Java's ``Properties.load`` does.

    The key ends at the first ``=``, ``:`` or blank not escaped by a backslash (an
    escaped character is kept, without its backslash); blanks, then one ``=`` or
    ``:``, then blanks separate it from the value. The value is taken as written (no
    escapes). None: the line has no separator and no value (a bare word).
    """
    key: list[str] = []
    i, n = 0, len(line)
    while i < n:
        c = line[i]
        if c == "\\" and i + 1 < n:
            key.append(line[i + 1])
            i += 2
            continue
        if c in "=:" or c.isspace():
            break
        key.append(c)
        i += 1
    if i == n:
        return None
    rest = line[i:].lstrip(" \t\f")
    if rest[:1] in ("=", ":"):
        rest = rest[1:].lstrip(" \t\f")
    return "".join(key), rest


def _read_properties(text: str, result: ConfigFile, origin: str) -> None:
    lines: dict[str, int] = {}
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line[0] in "#!":
            continue
        split = _split_line(line)
        where = f"{origin}, line {number}"
        if split is None or not split[0]:
            raise ConfigurationError(f"{where}: expected 'key=value' (or 'key: value')")
        key, value = split
        if key in lines:
            raise ConfigurationError(
                f"{where}: {_key(key)} is given twice (also line {lines[key]})"
            )
        lines[key] = number
        section, dot, name = key.partition(".")
        if section in _SECTIONS and dot:
            result.sections.setdefault(section, {})[name] = value.strip()
        else:
            _add(result.properties, key, value.strip(), where, result.path.parent)


def read_env(
    prefix: str = ENV_PREFIX, environ: Mapping[str, str] | None = None
) -> dict[str, _Entry]:
    """The properties set by ``<prefix>*`` variables (not ``<prefix>CONFIG``), by property.

    Raises:
        ConfigurationError: a variable names no librdkafka producer property
            (nor ``PROFILE`` or a ``_ENV``/``_FILE`` reference); the variable is named.
    """
    env = os.environ if environ is None else environ
    entries: dict[str, _Entry] = {}
    for name in sorted(env):
        if (
            not name.startswith(prefix)
            or name == f"{prefix}{CONFIG_FILE_VAR}"
            or name in _NOT_PROPERTIES
            or not env[name]
        ):
            continue
        rest = name[len(prefix) :].lower()
        key = "_".join(part.replace("_", ".") for part in rest.split("__"))
        _add(entries, key, env[name], f"environment variable {name}", None)
    return entries


def _add(
    entries: dict[str, _Entry], key: str, value: ConfigValue, origin: str, base: Path | None
) -> None:
    """Classify ``key`` (property, eventwire key or reference) and record it by property."""
    prop, ref = _property_of(key, origin)
    if ref is not None and (not isinstance(value, str) or not value):
        raise ConfigurationError(
            f"{origin}: {key!r} must name a{'n environment variable' if ref == 'env' else ' file'}"
        )
    # ``entries`` holds one source (a file, or the environment): a property given
    # twice there, directly and by reference or under two of its names, is refused.
    if prop in entries:
        raise ConfigurationError(
            f"{origin}: {prop!r} is given twice (also by {entries[prop].origin}); "
            "give it directly or by reference, once"
        )
    alias = next((p for p in entries if p != prop and canonical(p) == canonical(prop)), None)
    if alias is not None:
        raise ConfigurationError(
            f"{origin}: {prop!r} and {alias!r} (given by {entries[alias].origin}) are one "
            "librdkafka property under two names; give it once"
        )
    entries[prop] = _Entry(value, ref, origin, base)


def _librdkafka_knows(name: str) -> bool:
    """Whether the installed librdkafka has a property ``name`` (asked of librdkafka)."""
    from eventwire.transports.kafka import librdkafka_knows  # noqa: PLC0415 - import cycle

    return bool(_KEY_LIKE.fullmatch(name)) and librdkafka_knows(name)


def _property_of(key: str, origin: str) -> tuple[str, Literal["env", "file"] | None]:
    """The property ``key`` sets, and whether it is a reference ("env"/"file") to its value.

    A name in eventwire's lists is taken at once; any other name is taken if the
    installed librdkafka knows it (a property newer than eventwire's lists), except
    the consumer-only ones and the callbacks.
    """
    base, _, kind = key.rpartition(".")
    for prop in (key, base) if kind in _REFERENCE_KINDS else (key,):
        if prop in UNSUPPORTED_PROPERTIES:
            raise ConfigurationError(
                f"{origin}: {prop!r} cannot be set: {UNSUPPORTED_PROPERTIES[prop]}"
            )
    if key in KNOWN_PROPERTIES or key in _EVENTWIRE_KEYS:
        return key, None
    if base in KNOWN_PROPERTIES and kind in _REFERENCE_KINDS:
        return base, "env" if kind == "env" else "file"
    if key in CALLBACKS or key in RESERVED:
        what = (
            f"a callback: pass it in Python, e.g. KafkaConfig.load(overrides={{{key!r}: fn}})"
            if key in CALLBACKS
            else f"set by eventwire itself ({RESERVED[key]})"
        )
        raise ConfigurationError(f"{origin}: {key!r} cannot be set here: it is {what}")
    for name in (key, base if kind in _REFERENCE_KINDS else None):
        if name in CONSUMER_PROPERTIES:
            raise ConfigurationError(
                f"{origin}: {name!r} is a librdkafka consumer property, which a producer "
                "ignores: this configuration is a producer's (remove it)"
            )
    if _librdkafka_knows(key):
        return key, None
    if kind in _REFERENCE_KINDS and _librdkafka_knows(base):
        return base, "env" if kind == "env" else "file"
    from eventwire.transports.kafka import librdkafka_version  # noqa: PLC0415 - import cycle

    close = difflib.get_close_matches(key, sorted(KNOWN_PROPERTIES | _EVENTWIRE_KEYS), n=1)
    hint = f"; did you mean {close[0]!r}?" if close and _KEY_LIKE.fullmatch(key) else ""
    run_on = _secret_run_on_from(key)
    if run_on is not None:
        hint = f"; did you mean {run_on!r}, with '=' between it and its value?"
    raise ConfigurationError(
        f"{origin}: {_key(key)} is not a property of the installed librdkafka "
        f"({librdkafka_version()}), nor 'profile', nor a reference '<property>.env' / "
        f"'<property>.file'{hint}"
    )


def _resolve(entries: Mapping[str, _Entry], environ: Mapping[str, str]) -> dict[str, object]:
    """Each property's value, references followed; values not known harmless as Secrets."""
    props: dict[str, object] = {}
    for prop, entry in entries.items():
        value: ConfigValue
        # The reference's text may be the secret itself, written in the wrong place:
        # it is quoted in a message only for a property whose value may be shown.
        shown = prop in NON_SECRET_PROPERTIES
        if entry.ref == "env":
            var = str(entry.value)
            if not environ.get(var):
                raise ConfigurationError(_unset_variable(prop, var, entry.origin, shown=shown))
            value = environ[var]
        elif entry.ref == "file":
            value = _read_secret_file(
                prop, str(entry.value), entry.origin, base=entry.base, shown=shown
            )
        else:
            value = entry.value
        if prop in NON_SECRET_PROPERTIES or prop == "profile" or isinstance(value, bool):
            props[prop] = value
        elif isinstance(value, str | int | float):
            # A number too (ssl.keystore.password = 98765432 in TOML): kept as text,
            # which librdkafka takes for every property, so it is scrubbed like any secret.
            props[prop] = Secret(str(value))
        else:
            props[prop] = value
    return props


def _unset_variable(prop: str, var: str, origin: str, *, shown: bool) -> str:
    """The message for a reference to an unset (or empty) variable.

    The variable's name is quoted only if ``shown`` (``prop`` holds no secret): for a
    secret, the reference's text may be the secret itself (a generated upper-case
    password looks like any variable name), so the message names ``prop`` and where
    the reference is, and says what it must hold.
    """
    if shown:
        return f"{prop}: environment variable {var!r} (named by {origin}) is not set"
    return (
        f"{prop}: {_reference(prop, 'env', origin)} must hold the NAME of an environment "
        "variable that holds the value, and the variable it names does not exist (or is "
        f"empty). Its text is not shown: {prop} is a secret, and the secret itself written "
        "there by mistake would be shown with it. Check that it holds a variable's name (e.g. "
        f"{_example_variable(prop)}) and that the variable is set for this process; put "
        f"the secret in that variable and give that variable's name (or set {prop} directly)"
    )


def _example_variable(prop: str) -> str:
    return "KAFKA_" + re.sub(r"[^A-Z0-9]", "_", prop.upper())


def _reference(prop: str, kind: str, origin: str) -> str:
    """Where a reference is: a variable, or a config file (and line) with its key."""
    return origin if origin.startswith("environment variable") else f"{origin} ({prop}.{kind})"


def _read_secret_file(
    prop: str, given: str, origin: str, *, base: Path | None = None, shown: bool = False
) -> str:
    """The content of the file a ``<prop>.file`` reference names (``given``, its text).

    A relative path is relative to ``base``. Unless ``shown`` (``prop`` holds no
    secret), a message never quotes ``given`` nor the path made of it: the secret
    itself, written where the path belongs, may hold a ``/`` as a path does (base64
    does). It names ``prop``, where the reference is, and what it must hold.
    """
    try:
        path = Path(given).expanduser()
    except RuntimeError:  # "~user" of no such user, or no home directory
        path = Path(given)
    if not path.is_absolute() and base is not None:
        path = base / path
    where = _reference(prop, "file", origin)
    what = f"{str(path)!r} (named by {origin})" if shown else f"the file named by {where}"
    try:
        text = path.read_text(encoding="utf-8")
    except (FileNotFoundError, NotADirectoryError):
        if shown:
            raise ConfigurationError(f"{prop}: cannot read {what}: no such file") from None
        relative = f" (a relative path is taken from {str(base)!r})" if base is not None else ""
        raise ConfigurationError(
            f"{prop}: {where} must hold the PATH of a file that holds the value, and no "
            f"file has the name it gives{relative}. Its text is not shown: {prop} is a "
            "secret, and the secret itself written there by mistake would be shown with "
            "it. Put the secret in a file only this user can read and give its path, e.g. "
            f"'./secrets/{prop}' (or set {prop} directly)"
        ) from None
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        if isinstance(exc, OSError):
            reason = exc.strerror or type(exc).__name__
        elif isinstance(exc, UnicodeDecodeError):
            reason = "not UTF-8 text"
        else:  # a NUL in the path: not a path at all
            reason = "it is not a file path"
        hidden = "" if shown else f" (the path is not shown: {prop} is a secret)"
        raise ConfigurationError(f"{prop}: cannot read {what}: {reason}{hidden}") from None
    if text.endswith("\n"):
        text = text[:-2] if text.endswith("\r\n") else text[:-1]
    if not text:
        raise ConfigurationError(f"{prop}: {what} is empty")
    return text


@dataclass(frozen=True, slots=True)
class Loaded:
    """What the sources gave: KafkaConfig's constructor arguments, and where they came from.

    :meth:`eventwire.KafkaConfig.load` builds the config from it (this module does
    not import that class: it only reads the sources).
    """

    #: Keyword arguments for KafkaConfig's named fields (``bootstrap_servers``...).
    fields: dict[str, object]
    #: Every other property, for ``overrides``.
    overrides: dict[str, ConfigValue | Secret | Callback]
    #: The sources, for messages ("config file 'x.toml' and EVENTWIRE_KAFKA_* variables").
    where: str


def _build(
    props: dict[str, object],
    overrides: Mapping[str, ConfigValue | Secret | Callback] | None,
    sources: list[str],
) -> Loaded:
    where = " and ".join(sources) or "no config file and no environment variable"
    kwargs: dict[str, object] = {}
    rest: dict[str, ConfigValue | Secret | Callback] = {}
    for prop, value in props.items():
        if prop == "profile":
            kwargs["profile"] = str(value)
        elif prop in _FIELDS:
            text = value if isinstance(value, Secret) else str(value)
            if prop == "security.protocol":
                text = str(text).upper()
            kwargs[_FIELDS[prop]] = text
        else:
            assert isinstance(value, str | int | float | bool | Secret)
            rest[prop] = value
    extra = dict(overrides or {})
    # Brokers in ``overrides`` (the command line's --bootstrap, a caller's own) replace
    # the sources' in the bootstrap_servers field, as any property of a later source
    # does: KafkaConfig checks the field ('host:port') and names it in connection errors,
    # and its constructor refuses the brokers among its own ``overrides``.
    brokers = [name for name in ("bootstrap.servers", "metadata.broker.list") if name in extra]
    if len(brokers) > 1:
        raise ConfigurationError(
            "overrides give 'bootstrap.servers' and 'metadata.broker.list', which are one "
            "librdkafka property under two names; give it once"
        )
    if brokers:
        value = extra.pop(brokers[0])
        kwargs["bootstrap_servers"] = value.get() if isinstance(value, Secret) else value
    if "bootstrap_servers" not in kwargs:
        raise ConfigurationError(
            f"bootstrap.servers is not set ({where}): give it in the config file, "
            f"or as {ENV_PREFIX}BOOTSTRAP_SERVERS"
        )
    # A property in ``overrides`` replaces the sources' under any of its names.
    given = {canonical(name) for name in extra}
    rest = {name: value for name, value in rest.items() if canonical(name) not in given}
    rest.update(extra)
    return Loaded(kwargs, rest, where)


def load(
    file: str | os.PathLike[str] | None,
    *,
    env_prefix: str | None = ENV_PREFIX,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, ConfigValue | Secret | Callback] | None = None,
    use_env_file: bool = True,
) -> Loaded:
    """Read the file, then the ``env_prefix`` variables, then ``overrides``, for a KafkaConfig.

    ``file`` None: the file named by ``<env_prefix>CONFIG`` if ``use_env_file``
    (else none). ``env_prefix`` None: the environment gives no property (file
    references to variables still read ``environ``, by default ``os.environ``).

    Raises:
        ConfigurationError: see :func:`read_file` and :func:`read_env`; a
            referenced variable is unset or a referenced file unreadable or
            empty; or ``bootstrap.servers`` is given nowhere. The message names
            the key and its source.
    """
    env = os.environ if environ is None else environ
    entries: dict[str, _Entry] = {}
    sources: list[str] = []
    path = config_file_path(file, env_prefix if use_env_file else None, env)
    if path is not None:
        entries.update(read_file(path).properties)
        sources.append(f"config file {str(path)!r}")
        _warn_if_exposed(path, entries)
    if env_prefix is not None:
        from_env = read_env(env_prefix, env)
        if from_env:
            # A later source replaces a property under any of its names.
            given = {canonical(p) for p in from_env}
            entries = {p: e for p, e in entries.items() if canonical(p) not in given}
            entries.update(from_env)
            sources.append(f"{env_prefix}* variables")
    return _build(_resolve(entries, env), overrides, sources)


def _warn_if_exposed(path: Path, entries: Mapping[str, _Entry]) -> None:
    """One WARNING if a file other users can read holds a secret in plain text.

    Names the file and the properties, never a value. A secret given by reference
    (``.env``/``.file``) is not in the file, so it does not count.
    """
    try:
        mode = path.stat().st_mode
    except OSError:
        return
    if not mode & stat.S_IROTH:
        return
    inline = sorted(p for p, e in entries.items() if e.ref is None and p in SECRET_PROPERTIES)
    if inline:
        _log.warning(
            "config_file_exposes_secret",
            file=str(path),
            properties=", ".join(inline),
            mode=oct(stat.S_IMODE(mode)),
            hint=f"every user of this machine can read it: chmod 600 {str(path)!r}, or give "
            "the secret by reference ('<property>.env = \"VAR\"' or "
            "'<property>.file = \"/path\"' to a file only this user can read)",
        )


def load_section(
    name: str,
    file: str | os.PathLike[str] | None,
    *,
    env_prefix: str,
    kafka_env_prefix: str | None = ENV_PREFIX,
    environ: Mapping[str, str] | None = None,
) -> dict[str, object]:
    """The table ``name`` of the config file, with ``<env_prefix><KEY>`` variables over it.

    The file is ``file``, else the one named by ``<kafka_env_prefix>CONFIG``.
    Keys are lower-case (``EVENTWIRE_RELAY_METRICS_PORT`` is ``metrics_port``);
    values are as the file gives them (str from a properties file or a
    variable). Checking the keys and values is the caller's job.

    Raises:
        ConfigurationError: the file cannot be read or parsed.
    """
    env = os.environ if environ is None else environ
    path = config_file_path(file, kafka_env_prefix, env)
    values: dict[str, object] = {}
    if path is not None:
        values.update(read_file(path).sections.get(name, {}))
    for var in sorted(env):
        if var.startswith(env_prefix) and env[var]:
            values[var[len(env_prefix) :].lower()] = env[var]
    return values
