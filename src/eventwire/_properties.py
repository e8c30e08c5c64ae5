"""What eventwire knows of librdkafka's properties, and the Secret wrapper.

Which properties hold no secret (their values may be shown), which hold one,
which take a Python callback, and which eventwire reserves for itself. A leaf
module: :mod:`eventwire._config` and :mod:`eventwire._config_load` both read it.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import unquote

from eventwire._errors import ConfigurationError

__all__ = [
    "ALIASES",
    "CALLBACKS",
    "CONSUMER_PROPERTIES",
    "NON_SECRET_PROPERTIES",
    "RESERVED",
    "SECRET_PROPERTIES",
    "URL_PROPERTIES",
    "Callback",
    "ConfigValue",
    "Secret",
    "canonical",
    "embedded_secrets",
    "mask_embedded",
]

ConfigValue = str | int | float | bool
#: A callable handed to librdkafka where it takes a callback (see :data:`CALLBACKS`).
Callback = Callable[..., Any]

#: librdkafka properties (2.16, producer and global) whose values hold no secret,
#: so ``repr``, :meth:`KafkaConfig.redacted` and logs may show them. Built from
#: librdkafka's CONFIGURATION.md (``rd_kafka_conf_properties_show``): every ``*``
#: (global) and ``P`` (producer) property except those that can carry a secret
#: (passwords, passphrases, client secrets, inline private keys, the OAUTHBEARER
#: config and extensions, ``sasl.kerberos.kinit.cmd``), the ``see dedicated API``
#: callbacks and the deprecated ``topic.blacklist``. Everything NOT listed here
#: is masked, so a property librdkafka adds later is secret until listed.
#: Identities (``sasl.username``, OAuth client ids, Kerberos principals), file
#: paths and public certificates are not secrets and are shown.
NON_SECRET_PROPERTIES: frozenset[str] = frozenset(
    {
        # Connection, metadata and sockets
        "builtin.features",
        "client.id",
        "metadata.broker.list",
        "bootstrap.servers",
        "message.max.bytes",
        "message.copy.max.bytes",
        "receive.message.max.bytes",
        "max.in.flight.requests.per.connection",
        "max.in.flight",
        "metadata.recovery.strategy",
        "metadata.recovery.rebootstrap.trigger.ms",
        "topic.metadata.refresh.interval.ms",
        "metadata.max.age.ms",
        "topic.metadata.refresh.fast.interval.ms",
        "topic.metadata.refresh.fast.cnt",
        "topic.metadata.refresh.sparse",
        "topic.metadata.propagation.max.ms",
        "debug",
        "socket.timeout.ms",
        "socket.blocking.max.ms",
        "socket.send.buffer.bytes",
        "socket.receive.buffer.bytes",
        "socket.keepalive.enable",
        "socket.nagle.disable",
        "socket.max.fails",
        "broker.address.ttl",
        "broker.address.family",
        "socket.connection.setup.timeout.ms",
        "connections.max.idle.ms",
        "reconnect.backoff.jitter.ms",
        "reconnect.backoff.ms",
        "reconnect.backoff.max.ms",
        "statistics.interval.ms",
        "enabled_events",
        "log_level",
        "log.queue",
        "log.thread.name",
        "enable.random.seed",
        "log.connection.close",
        "internal.termination.signal",
        "api.version.request",
        "api.version.request.timeout.ms",
        "api.version.fallback.ms",
        "broker.version.fallback",
        "allow.auto.create.topics",
        "client.rack",
        "client.dns.lookup",
        "enable.metrics.push",
        "retry.backoff.ms",
        "retry.backoff.max.ms",
        "plugin.library.paths",
        # TLS: paths, public certificates, algorithms (not ssl.key.password,
        # ssl.key.pem or ssl.keystore.password)
        "security.protocol",
        "ssl.cipher.suites",
        "ssl.curves.list",
        "ssl.sigalgs.list",
        "ssl.key.location",
        "ssl.certificate.location",
        "ssl.certificate.pem",
        "ssl.ca.location",
        "ssl.ca.pem",
        "https.ca.location",
        "https.ca.pem",
        "ssl.ca.certificate.stores",
        "ssl.crl.location",
        "ssl.keystore.location",
        "ssl.providers",
        "ssl.engine.location",
        "ssl.engine.id",
        "enable.ssl.certificate.verification",
        "ssl.endpoint.identification.algorithm",
        # SASL: mechanisms, identities, paths and claims (not sasl.password,
        # sasl.oauthbearer.config/.extensions/.client.secret, the assertion's
        # private key and passphrase, or sasl.kerberos.kinit.cmd)
        "sasl.mechanisms",
        "sasl.mechanism",
        "sasl.kerberos.service.name",
        "sasl.kerberos.principal",
        "sasl.kerberos.keytab",
        "sasl.kerberos.min.time.before.relogin",
        "sasl.username",
        "enable.sasl.oauthbearer.unsecure.jwt",
        "sasl.oauthbearer.method",
        "sasl.oauthbearer.client.id",
        "sasl.oauthbearer.client.credentials.client.id",
        "sasl.oauthbearer.scope",
        "sasl.oauthbearer.token.endpoint.url",
        "sasl.oauthbearer.sub.claim.name",
        "sasl.oauthbearer.grant.type",
        "sasl.oauthbearer.assertion.algorithm",
        "sasl.oauthbearer.assertion.private.key.file",
        "sasl.oauthbearer.assertion.file",
        "sasl.oauthbearer.assertion.claim.aud",
        "sasl.oauthbearer.assertion.claim.exp.seconds",
        "sasl.oauthbearer.assertion.claim.iss",
        "sasl.oauthbearer.assertion.claim.jti.include",
        "sasl.oauthbearer.assertion.claim.nbf.seconds",
        "sasl.oauthbearer.assertion.claim.sub",
        "sasl.oauthbearer.assertion.jwt.template.file",
        "sasl.oauthbearer.metadata.authentication.type",
        # Producer
        "transactional.id",
        "transaction.timeout.ms",
        "enable.idempotence",
        "enable.gapless.guarantee",
        "queue.buffering.max.messages",
        "queue.buffering.max.kbytes",
        "queue.buffering.max.ms",
        "linger.ms",
        "message.send.max.retries",
        "retries",
        "queue.buffering.backpressure.threshold",
        "compression.codec",
        "compression.type",
        "compression.level",
        "batch.num.messages",
        "batch.size",
        "sticky.partitioning.linger.ms",
        "request.required.acks",
        "acks",
        "request.timeout.ms",
        "message.timeout.ms",
        "delivery.timeout.ms",
        "queuing.strategy",
        "produce.offset.report",
        "partitioner",
    }
)

#: librdkafka properties (2.16, producer and global) set by a string that can hold a
#: secret, so always masked (``topic.blacklist``, deprecated, is masked too). With
#: :data:`NON_SECRET_PROPERTIES` they are the properties a config file or the
#: environment may set without asking librdkafka; any other name is accepted there
#: only if the installed librdkafka knows it, and is masked (these lists decide
#: redaction, not what is accepted).
SECRET_PROPERTIES: frozenset[str] = frozenset(
    {
        "sasl.password",
        "sasl.kerberos.kinit.cmd",
        "sasl.oauthbearer.config",
        "sasl.oauthbearer.extensions",
        "sasl.oauthbearer.client.secret",
        "sasl.oauthbearer.client.credentials.client.secret",
        "sasl.oauthbearer.assertion.private.key.passphrase",
        "sasl.oauthbearer.assertion.private.key.pem",
        "ssl.key.password",
        "ssl.key.pem",
        "ssl.keystore.password",
        "topic.blacklist",
    }
)

#: librdkafka's consumer-only properties (``C`` in its CONFIGURATION.md, 2.16): librdkafka
#: knows them, but a producer ignores them, so a config file or the environment that
#: sets one is refused as a mistake (this config is a producer's).
CONSUMER_PROPERTIES: frozenset[str] = frozenset(
    {
        "group.id",
        "group.instance.id",
        "partition.assignment.strategy",
        "session.timeout.ms",
        "heartbeat.interval.ms",
        "group.protocol.type",
        "group.protocol",
        "group.remote.assignor",
        "coordinator.query.interval.ms",
        "max.poll.interval.ms",
        "enable.auto.commit",
        "auto.commit.enable",
        "auto.commit.interval.ms",
        "enable.auto.offset.store",
        "queued.min.messages",
        "queued.max.messages.kbytes",
        "fetch.wait.max.ms",
        "fetch.queue.backoff.ms",
        "fetch.message.max.bytes",
        "max.partition.fetch.bytes",
        "fetch.max.bytes",
        "fetch.min.bytes",
        "fetch.error.backoff.ms",
        "offset.store.method",
        "offset.store.path",
        "offset.store.sync.interval.ms",
        "isolation.level",
        "enable.partition.eof",
        "check.crcs",
        "auto.offset.reset",
        "consume.callback.max.messages",
        "consume_cb",
        "rebalance_cb",
        "offset_commit_cb",
    }
)

#: The callbacks ``overrides`` accepts as Python callables, with confluent-kafka's
#: contract for each. They reach ``confluent_kafka.Producer`` as the same object.
#: eventwire installs its own ``error_cb``, ``logger``, ``stats_cb`` and each
#: record's ``on_delivery``, so those are refused (see :data:`RESERVED`).
CALLBACKS: Mapping[str, str] = {
    "oauth_cb": (
        "OAUTHBEARER token provider: fn(oauthbearer_config: str) -> (token: str, "
        "expiry_epoch_s: float[, principal: str[, extensions: dict[str, str]]]); "
        "called when the producer is created (which waits up to 10 s for a token) and "
        "again before the token expires"
    ),
    "throttle_cb": (
        "broker throttling: fn(event: confluent_kafka.ThrottleEvent) -> None, "
        "called from the producer's poll thread"
    ),
}

#: Keys eventwire sets itself, with what to use instead; ``overrides`` refuses them.
RESERVED: Mapping[str, str] = {
    "on_delivery": "every publish returns a handle that reports its delivery",
    "delivery.report.only.error": "eventwire needs every delivery report",
    "error_cb": "client errors are logged and feed the circuit breaker",
    "logger": "librdkafka's lines go to eventwire's loggers",
    "stats_cb": "librdkafka statistics reach KafkaTransport(on_stats=...) and the metrics",
}


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


#: librdkafka's aliases (2.16, producer and global): alias -> the property it sets.
#: A source that gives a property under two of its names is refused.
ALIASES: Mapping[str, str] = {
    "metadata.broker.list": "bootstrap.servers",
    "max.in.flight": "max.in.flight.requests.per.connection",
    "sasl.mechanisms": "sasl.mechanism",
    "queue.buffering.max.ms": "linger.ms",
    "message.send.max.retries": "retries",
    "request.required.acks": "acks",
    "compression.codec": "compression.type",
    "message.timeout.ms": "delivery.timeout.ms",
    "sasl.oauthbearer.client.credentials.client.id": "sasl.oauthbearer.client.id",
    "sasl.oauthbearer.client.credentials.client.secret": "sasl.oauthbearer.client.secret",
}


def canonical(prop: str) -> str:
    """The property ``prop`` sets: itself, or the one it is an alias of."""
    return ALIASES.get(prop, prop)


#: Shown properties whose values are broker lists or URLs, which may embed
#: credentials (``user:pass@host:9092``, ``https://id:secret@idp/token?key=...``):
#: those parts are masked wherever the value is shown, and scrubbed from log text.
URL_PROPERTIES: frozenset[str] = frozenset(
    {
        "bootstrap.servers",
        "metadata.broker.list",
        "sasl.oauthbearer.token.endpoint.url",
    }
)

# [scheme://]userinfo@rest, userinfo being anything up to the last "@" before the host.
_SCHEME = r"[A-Za-z][A-Za-z0-9_+.-]*://"
_USERINFO = re.compile(rf"^(?P<scheme>{_SCHEME})?(?P<userinfo>[^/?#]*)@")
#: Query parameter values shorter than this (or numbers) are not scrubbed on their
#: own (the whole ``key=value`` parameter is): see ``MIN_SCRUBBED_LENGTH``.
_MIN_PARAM_VALUE = 6


def _split_entry(entry: str) -> tuple[str, str | None, str, str | None]:
    """``(scheme, userinfo or None, host/path, query+fragment or None)`` of one entry."""
    match = _USERINFO.match(entry)
    if match:
        scheme = match["scheme"] or ""
        userinfo: str | None = match["userinfo"]
        rest = entry[match.end() :]
    else:
        scheme_match = re.match(_SCHEME, entry)
        scheme = scheme_match.group() if scheme_match else ""
        userinfo, rest = None, entry[len(scheme) :]
    cut = min((i for i in (rest.find("?"), rest.find("#")) if i >= 0), default=-1)
    if cut >= 0 and scheme:
        return scheme, userinfo, rest[:cut], rest[cut:]
    return scheme, userinfo, rest, None


def mask_embedded(value: str) -> str:
    """``value`` (a broker list or a URL) with its userinfo and query string masked.

    ``"SASL_SSL://user:pw@h:9093,h2:9093"`` -> ``"SASL_SSL://***@h:9093,h2:9093"``;
    ``"https://id:s@idp/token?key=k"`` -> ``"https://***@idp/token?***"``.
    """
    shown = []
    for entry in value.split(","):
        lead = entry[: len(entry) - len(entry.lstrip())]
        scheme, userinfo, rest, query = _split_entry(entry.strip())
        masked = scheme + ("***@" if userinfo is not None else "") + rest
        if query is not None:
            masked += query[0] + "***"
        shown.append(lead + masked)
    return ",".join(shown)


def without_userinfo(value: str) -> tuple[str, list[str]]:
    """``value`` (a URL list) without the entries' userinfo, and each userinfo found.

    ``"https://u:p%40@h:8081,https://h2"`` -> ``("https://h:8081,https://h2", ["u:p%40"])``:
    a client given the credentials apart (HTTP basic auth) never has them in a URL it
    could log.
    """
    kept: list[str] = []
    found: list[str] = []
    for entry in value.split(","):
        scheme, userinfo, rest, query = _split_entry(entry.strip())
        if userinfo is not None:
            found.append(userinfo)
        kept.append(scheme + rest + (query or ""))
    return ",".join(kept), found


def embedded_secrets(value: str) -> list[str]:
    """The credentials a broker list or URL embeds, to scrub from log text.

    Each entry's userinfo (``user:pw``), its password part, their percent-decoded
    forms, and a URL's query string and each of its parameter values.
    """
    found: list[str] = []
    for entry in value.split(","):
        _, userinfo, _, query = _split_entry(entry.strip())
        if userinfo:
            password = userinfo.partition(":")[2]
            found += [userinfo, password, unquote(userinfo), unquote(password)]
        if query:
            body = query[1:]
            found.append(body)
            for param in re.split(r"[&;#]", body):
                found.append(param)
                for v in {param.partition("=")[2], unquote(param.partition("=")[2])}:
                    if len(v) >= _MIN_PARAM_VALUE and not v.isdigit():
                        found.append(v)
    return [s for s in dict.fromkeys(found) if s]
