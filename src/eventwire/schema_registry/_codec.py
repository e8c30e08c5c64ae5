"""JsonSchemaCodec and AvroCodec: TopicCodecs over confluent-kafka's registry serializers."""

from __future__ import annotations

import contextlib
import contextvars
import copy
import json
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from typing import Any, Literal, TypeVar

import msgspec

from eventwire import _shapes
from eventwire._codec import JsonCodec, SerializationContext
from eventwire._config import Scrubber
from eventwire._errors import ConfigurationError, SerializationError
from eventwire._properties import embedded_secrets, mask_embedded
from eventwire.schema_registry._avro import avro_schema
from eventwire.schema_registry._config import SchemaRegistryConfig
from eventwire.schema_registry._errors import (
    RegistryError,
    SchemaIncompatibleError,
    SchemaNotFoundError,
    SchemaRegistryUnavailableError,
)

__all__ = ["AvroCodec", "JsonSchemaCodec", "SubjectNameStrategy"]

T = TypeVar("T")

#: ``"topic"`` (``<topic>-value``, Confluent's default), ``"record"`` (the record's
#: full name) or ``"topic_record"`` (``<topic>-<record>``); or a function
#: ``(ctx, record_name) -> subject`` of Confluent's shape.
SubjectNameStrategy = (
    Literal["topic", "record", "topic_record"] | Callable[[Any, str | None], str | None]
)
_STRATEGIES = {
    "topic": "topic_subject_name_strategy",
    "record": "record_subject_name_strategy",
    "topic_record": "topic_record_subject_name_strategy",
}
_INSTALL_HINT = (
    "the Schema Registry codecs need confluent-kafka's schema_registry extras: "
    "pip install 'eventwire[registry]'"
)

# How an event type becomes a JSON Schema, and an event becomes / comes back from plain
# builtins: eventwire._shapes' helpers, so Structs, dataclasses, attrs classes and
# pydantic models (its own JSON Schema, by alias) all work.
_json_schema: Callable[[Any], dict[str, Any]] = _shapes.json_schema
_to_builtins: Callable[..., Any] = _shapes.to_builtins


def _from_builtins(obj: Any, cls: type[T]) -> T:
    if _shapes.is_pydantic_model(cls):
        return _shapes.from_builtins(obj, cls)  # validators run
    return msgspec.convert(obj, cls, strict=False)


def _sr() -> Any:
    """confluent_kafka.schema_registry, imported on first use (the ``registry`` extra)."""
    try:
        import confluent_kafka.schema_registry as sr  # noqa: PLC0415
    except ImportError as exc:
        raise ConfigurationError(f"{_INSTALL_HINT} ({exc})") from None
    return sr


class _RegistryCodec:
    """What both codecs share: the client, per-(type, topic) serializers, errors, headers."""

    content_type: str
    _schema_type: str
    #: The ``content-type`` written when none is given.
    _default_content_type: str

    def __init__(
        self,
        registry: SchemaRegistryConfig | str | Any | None = None,
        *,
        subject_name_strategy: SubjectNameStrategy = "topic",
        auto_register: bool | None = None,
        use_latest_version: bool = False,
        normalize: bool = False,
        schemas: Mapping[type, str] | None = None,
        dataschema: bool = True,
        content_type: str | None = None,
    ) -> None:
        content_type = content_type or self._default_content_type
        sr = _sr()
        if auto_register is None:
            auto_register = not use_latest_version
        if auto_register and use_latest_version:
            raise ConfigurationError(
                "auto_register and use_latest_version cannot both be on: either the codec "
                "registers its own schema, or it writes with the latest registered version"
            )
        url = self._connect(registry, sr)
        self._shown_url = mask_embedded(url)
        # ce_dataschema: the schema's URL on the registry, without credentials or query.
        self._schema_base = _without_credentials(url).rstrip("/") + "/schemas/ids/"
        if isinstance(subject_name_strategy, str):
            if subject_name_strategy not in _STRATEGIES:
                raise ConfigurationError(
                    f"subject_name_strategy {subject_name_strategy!r} is unknown: use "
                    + ", ".join(repr(s) for s in _STRATEGIES)
                    + " or a function (ctx, record_name) -> subject"
                )
            self._subject_fn = getattr(sr, _STRATEGIES[subject_name_strategy])
        elif callable(subject_name_strategy):
            self._subject_fn = subject_name_strategy
        else:
            raise ConfigurationError("subject_name_strategy must be a name or a function")
        self.subject_name_strategy = subject_name_strategy
        self.auto_register = auto_register
        self.use_latest_version = use_latest_version
        self._serializer_conf: dict[str, Any] = {
            "auto.register.schemas": auto_register,
            "use.latest.version": use_latest_version,
            "normalize.schemas": normalize,
            "subject.name.strategy": self._subject_fn,
        }
        self._explicit = dict(schemas or {})
        self.dataschema = dataschema
        self.content_type = content_type
        self._lock = threading.Lock()
        self._schemas: dict[type, tuple[str, str | None]] = {}
        self._serializers: dict[tuple[type, str, str], Any] = {}
        #: The serializers that have encoded once (their schema id is cached), by
        #: (type, topic, field): the per-event path looks only here.
        self._warm: dict[tuple[type, str, str], Any] = {}
        #: The first encode of each (type, topic, field) in flight or just failed: one
        #: registry lookup at a time, its outcome shared by the threads that wait for it.
        self._lookups: dict[tuple[type, str, str], _Lookup] = {}
        self._deserializer: Any = None
        self._headers: dict[int, bytes] = {}

    def _connect(self, registry: SchemaRegistryConfig | str | Any | None, sr: Any) -> str:
        """Set the client, its config and the scrubber; return the first registry URL."""
        self._config: SchemaRegistryConfig | None
        if registry is None:
            registry = SchemaRegistryConfig.load()
        if isinstance(registry, str):
            registry = SchemaRegistryConfig(url=registry)
        if isinstance(registry, SchemaRegistryConfig):
            self._config = registry
            self._scrub = Scrubber(registry.secret_values())
            try:
                self._client = sr.SchemaRegistryClient(registry.client_conf())
            except Exception as exc:  # its own checks of the settings (ssl files, auth)
                raise ConfigurationError(
                    f"the Schema Registry client refused {registry!r}: "
                    f"{type(exc).__name__}: {self._scrub(str(exc))}"
                ) from None
            url = registry.url.split(",")[0].strip()
            conf = registry.client_conf()
        elif not all(hasattr(registry, m) for m in ("register_schema", "get_latest_version")):
            raise ConfigurationError(
                f"{type(self).__name__}(registry=...) takes a SchemaRegistryConfig, a URL "
                "(str), a confluent_kafka SchemaRegistryClient (or MockSchemaRegistryClient), "
                f"or None (SchemaRegistryConfig.load()), not {type(registry).__name__}"
            )
        else:  # a SchemaRegistryClient of the caller's (e.g. MockSchemaRegistryClient)
            self._config = None
            self._client = registry
            conf = _client_conf(registry)
            url = str(conf.get("url") or "registry").split(",")[0].strip()
            self._scrub = Scrubber(
                [str(conf[k]) for k in _SECRET_CONF if conf.get(k)] + embedded_secrets(url)
            )
        self._budget, self._memo = _lookup_bounds(conf)
        return url

    # -- what each format says --------------------------------------------------------
    def _derive(self, cls: type) -> tuple[str, str | None]:
        """(schema text, record name) of ``cls``."""
        raise NotImplementedError

    def _new_serializer(self, schema: str) -> Any:
        raise NotImplementedError

    def _new_deserializer(self) -> Any:
        raise NotImplementedError

    def _builtins(self, event: Any) -> Any:
        return _to_builtins(event)

    def _check(self, event: Any) -> None:
        """Refuse an event the format cannot carry faithfully (before any registry call)."""

    # -- schemas ------------------------------------------------------------------------
    def schema_of(self, cls: type) -> str:
        """The schema text (JSON) this codec writes ``cls`` with (derived once, or explicit)."""
        return self._schema_and_name(cls)[0]

    def subject_for(self, cls: type, topic: str, field: str = "value") -> str:
        """The subject ``cls``'s schema is registered under for ``topic``.

        Raises:
            ConfigurationError: the strategy gave no subject (None, not a str, or
                empty): e.g. ``"record"`` with an explicit schema that has no name/title.
        """
        name = self._schema_and_name(cls)[1]
        subject = self._subject_fn(SerializationContext(topic, field), name)
        if not isinstance(subject, str) or not subject:
            strategy = self.subject_name_strategy
            shown = strategy if isinstance(strategy, str) else getattr(strategy, "__name__", "?")
            raise ConfigurationError(
                f"subject_name_strategy {shown!r} gave no subject ({subject!r}) for a "
                f"{cls.__qualname__} to topic {topic!r} (record name {name!r}): a strategy "
                "must return a non-empty str; for 'record' and 'topic_record', give the "
                "schema a name (Avro) or a title (JSON Schema)"
            )
        return subject

    def _schema_and_name(self, cls: type) -> tuple[str, str | None]:
        found = self._schemas.get(cls)
        if found is None:
            found = self._schemas[cls] = self._derive(cls)
        return found

    def _first_encode(
        self, event: Any, cls: type, key: tuple[type, str, str], ctx: SerializationContext
    ) -> bytes:
        """Encode the first event(s) of ``key``: one registry lookup, its outcome shared.

        The first caller starts the lookup (confluent-kafka's serializer registers or
        looks up the schema id on its first call, which a second thread must not run
        at the same time); callers arriving meanwhile wait for its outcome instead of
        each making their own attempt in turn. The wait is bounded by the registry's
        ``timeout`` x (``max_retries`` + 1) plus back-off, however slowly the registry
        answers; an unavailable registry is remembered for ``retries_max_wait_ms``.
        """
        self._serializer(cls, ctx)  # derives the schema: a type without one fails here
        self.subject_for(cls, ctx.topic, ctx.field)  # a usable subject first
        self._check(event)
        payload = self._builtins(event)
        while True:
            warm = self._warm.get(key)
            if warm is not None:
                data: bytes = warm(payload, ctx)
                return data
            now = time.monotonic()
            with self._lock:
                lookup = self._lookups.get(key)
                owner = lookup is None or (lookup.done.is_set() and not lookup.remembered(now))
                if owner:
                    deadline = None if self._budget is None else now + self._budget
                    lookup = self._lookups[key] = _Lookup(deadline, self._memo)
            assert lookup is not None
            if owner:
                self._start(lookup, key, cls, payload, ctx)
            elif not lookup.done.is_set() and lookup.overdue(now):
                raise self._too_slow(cls, ctx, lookup, now)
            if not lookup.done.wait(lookup.remaining()):
                raise self._too_slow(cls, ctx, lookup, time.monotonic())
            if lookup.error is None:
                if owner:
                    assert lookup.data is not None
                    return lookup.data
                continue  # the serializer is warm now: encode this event with it
            if owner or isinstance(lookup.error, RegistryError):
                note = "" if owner else " (the outcome of the lookup another thread made)"
                raise _again(lookup.error, note)
            # the other caller's event was at fault, not the registry: try with this one

    def _start(
        self,
        lookup: _Lookup,
        key: tuple[type, str, str],
        cls: type,
        payload: Any,
        ctx: SerializationContext,
    ) -> None:
        """Run the lookup: in this thread, or in a worker when it has a deadline."""

        def attempt() -> None:
            try:
                serializer = self._serializer(cls, ctx)
                lookup.data = serializer(payload, ctx)
                self._warm[key] = serializer
            except Exception as exc:
                with self._lock:  # a fresh serializer next time: this one may keep a
                    self._serializers.pop(key, None)  # half-filled cache
                lookup.error = self._translate_any(exc, cls, ctx)
            finally:
                lookup.finished = time.monotonic()
                lookup.done.set()

        if lookup.deadline is None:
            attempt()
            return
        context = contextvars.copy_context()
        threading.Thread(
            target=context.run, args=(attempt,), name="eventwire-registry-lookup", daemon=True
        ).start()

    def _too_slow(
        self, cls: type, ctx: SerializationContext, lookup: _Lookup, now: float
    ) -> SchemaRegistryUnavailableError:
        subject: str | None = None
        with contextlib.suppress(Exception):
            subject = self.subject_for(cls, ctx.topic, ctx.field)
        on_subject = f" (subject {subject!r})" if subject else ""
        return SchemaRegistryUnavailableError(
            f"the Schema Registry at {self._shown_url} did not answer the lookup of the "
            f"schema of {cls.__qualname__} to topic {ctx.topic!r}{on_subject} within "
            f"{self._budget:g} s (its timeout x (max_retries + 1), plus back-off; the "
            f"lookup started {now - lookup.started:.1f} s ago). Nothing was sent. (With an "
            "outbox, the event was not stored either.) Retry once the registry is back; "
            "types whose schema id is cached keep working meanwhile.",
            subject=subject,
        )

    def _serializer(self, cls: type, ctx: SerializationContext) -> Any:
        key = (cls, ctx.topic, ctx.field)
        serializer = self._serializers.get(key)
        if serializer is None:
            with self._lock:
                serializer = self._serializers.get(key)
                if serializer is None:
                    schema, _ = self._schema_and_name(cls)
                    serializer = self._serializers[key] = self._new_serializer(schema)
        return serializer

    # -- TopicCodec -----------------------------------------------------------------------
    def encode_for(self, event: Any, ctx: SerializationContext) -> bytes:
        """Encode ``event`` in Confluent's wire format (0, 4-byte schema id, payload).

        The schema id is looked up (or registered) once per type and topic, then cached.
        Adds ``ce_dataschema`` (``<registry>/schemas/ids/<id>``) to ``ctx.headers``.

        Raises:
            SchemaIncompatibleError, SchemaNotFoundError, SchemaRegistryUnavailableError,
            RegistryError, SerializationError: see :mod:`eventwire.schema_registry`.
        """
        cls = type(event)
        key = (cls, ctx.topic, ctx.field)
        try:
            serializer = self._warm.get(key)
            if serializer is not None:
                self._check(event)
                data = serializer(self._builtins(event), ctx)
            else:  # its first use registers or looks up the schema id
                data = self._first_encode(event, cls, key, ctx)
        except SerializationError:
            raise
        except Exception as exc:
            raise self._translate_any(exc, cls, ctx) from None
        if not isinstance(data, bytes) or len(data) < 5 or data[0] != 0:
            raise SerializationError(
                f"the registry serializer returned no Confluent-framed bytes for a "
                f"{cls.__qualname__} to topic {ctx.topic!r}"
            )
        if self.dataschema:
            schema_id = int.from_bytes(data[1:5], "big")
            header = self._headers.get(schema_id)
            if header is None:
                header = self._headers[schema_id] = f"{self._schema_base}{schema_id}".encode()
            ctx.headers.append(("ce_dataschema", header))
        return data

    def decode_from(self, data: bytes, type: type[T], ctx: SerializationContext) -> T:
        """Decode Confluent-framed ``data`` with its writer schema (fetched once per id).

        Raises:
            SerializationError: ``data`` is not Confluent-framed (no registry call is
                made), or does not fit ``type``.
            SchemaNotFoundError: the registry has no schema with the record's id.
            SchemaRegistryUnavailableError, RegistryError: the registry could not give
                the writer's schema; the record is not at fault.
        """
        problem = _frame_problem(data)
        if problem is not None:
            raise SerializationError(
                f"cannot decode a {type.__qualname__} from topic {ctx.topic!r}: {problem}"
            )
        try:
            if self._deserializer is None:
                with self._lock:
                    if self._deserializer is None:
                        self._deserializer = self._new_deserializer()
            obj = self._deserializer(data, ctx)
        except SerializationError:
            raise
        except Exception as exc:
            raise self._translate(exc, type, ctx, "decode", data) from None
        try:
            return _from_builtins(obj, type)
        except (msgspec.ValidationError, TypeError, ValueError) as exc:
            raise SerializationError(
                f"cannot decode a {type.__qualname__} from topic {ctx.topic!r}: the record "
                f"does not fit it: {_shapes.validation_message(exc, type)}"
            ) from None

    # -- errors ---------------------------------------------------------------------------
    def _translate_any(
        self, exc: Exception, cls: type, ctx: SerializationContext
    ) -> SerializationError:
        """The SerializationError an encode's failure ``exc`` is."""
        if isinstance(exc, SerializationError):
            return exc
        if isinstance(exc, ConfigurationError):  # a type with no schema form: the event's fault
            return SerializationError(str(exc))
        return self._translate(exc, cls, ctx, "encode")

    def _translate(  # noqa: PLR0911, PLR0912 - one return per kind of failure
        self, exc: Exception, cls: type, ctx: SerializationContext, what: str, data: bytes = b""
    ) -> SerializationError:
        sr = _sr()
        subject: str | None = None
        with contextlib.suppress(Exception):  # only for the message
            subject = self.subject_for(cls, ctx.topic, ctx.field) if what == "encode" else None
        about = f"{cls.__qualname__} {'to' if what == 'encode' else 'from'} topic {ctx.topic!r}"
        where = f"the Schema Registry at {self._shown_url}"
        on_subject = f" (subject {subject!r})" if subject else ""
        if what == "encode":
            nothing = "Nothing was sent."
            later = (
                "(With an outbox, the event was not stored either.) Retry once the registry "
                "is back; types whose schema id is cached keep working meanwhile."
            )
        else:
            nothing = "The record is not at fault."
            later = (
                "Decode it again once the registry is back (do not skip it); records whose "
                "writer schema is cached keep decoding meanwhile."
            )
        if isinstance(exc, sr.SchemaRegistryError):
            status = int(exc.http_status_code)
            detail = _clip(self._scrub(str(exc.error_message)))
            code = exc.error_code if isinstance(exc.error_code, int) else None
            if status == 409:
                mode = self._compatibility(subject)
                return SchemaIncompatibleError(
                    f"{where} refused the schema of {about}{on_subject}: it is not "
                    f"compatible with the versions registered there under the subject's "
                    f"compatibility rule {mode or '(unknown)'} ({detail}). {nothing} "
                    f"{self._compatibility_hint(mode)} If the change cannot be made "
                    "compatible, publish the new shape as a new event type or to a new "
                    "topic; change the subject's compatibility level only on purpose.",
                    subject=subject,
                    status=status,
                    compatibility=mode,
                )
            by_guid = what == "decode" and data[:1] == b"\x01"
            if status == 404 and by_guid:
                return SchemaNotFoundError(
                    f"{where} has no schema with the GUID the record of {about} names "
                    f"({_schema_id_of(data)}; {detail}): the record's first byte 0x01 is "
                    "Confluent's schema-GUID framing, which not every registry serves; or "
                    "the value is not Confluent-framed at all. Point the codec at the "
                    "registry the producer used.",
                    subject=None,
                    status=status,
                )
            if status == 404 and not (code is not None and 40400 <= code <= 40499):
                return RegistryError(  # not the registry's own "not found": a wrong path
                    f"{where} answered HTTP 404 for {about}{on_subject} without a Schema "
                    f"Registry error code ({detail}): the URL is probably not the registry "
                    "API's base (a wrong path?). Give the base the API answers on: e.g. "
                    "http://host:8081 for Confluent's registry, "
                    f"http://host:8080/apis/ccompat/v7 for Apicurio. {nothing}",
                    subject=subject,
                    status=status,
                )
            if status == 404 and what == "decode":
                return SchemaNotFoundError(
                    f"{where} has no schema with the id the record of {about} was written "
                    f"with ({_schema_id_of(data)}; {detail}): it was deleted, or the record "
                    "was written against another registry. Point the codec at the registry "
                    "the producer used.",
                    subject=None,
                    status=status,
                )
            if status == 404:
                if self.use_latest_version:
                    remedy = (
                        "The codec writes with the subject's latest version "
                        "(use_latest_version=True) and the registry has none: register the "
                        "schema first (e.g. in your deployment pipeline)."
                    )
                elif not self.auto_register:
                    remedy = (
                        "The codec does not register schemas (auto_register=False): register "
                        "the schema first (e.g. in your deployment pipeline), or use "
                        "auto_register=True."
                    )
                else:
                    remedy = (
                        "The registry answered a registration with not found: check that the "
                        "URL is the registry API's base and the subject may be written."
                    )
                return SchemaNotFoundError(
                    f"{where} has no matching schema for {about}{on_subject} ({detail}). "
                    f"{nothing} {remedy}",
                    subject=subject,
                    status=status,
                )
            if status in (401, 403):
                return RegistryError(
                    f"{where} refused the credentials for {about}{on_subject} (HTTP {status}: "
                    f"{detail}). {nothing} Check schema_registry basic_auth_user_info / "
                    "bearer_auth_token and the account's rights on the subject"
                    + ("." if what == "encode" else "; then decode the record again."),
                    subject=subject,
                    status=status,
                )
            if status >= 500 or status in (408, 429) or status <= 0:
                return SchemaRegistryUnavailableError(
                    f"{where} failed for {about}{on_subject} (HTTP {status}: {detail}). "
                    f"{nothing} {later}",
                    subject=subject,
                    status=status,
                )
            return RegistryError(
                f"{where} refused a request for {about}{on_subject} (HTTP {status}: {detail}). "
                f"{nothing}",
                subject=subject,
                status=status,
            )
        if isinstance(exc, OSError | TimeoutError) or _is_transport_error(exc):
            return SchemaRegistryUnavailableError(
                f"{where} could not be reached for {about}{on_subject}: "
                f"{type(exc).__name__}: {_clip(self._scrub(str(exc)))}. {nothing} {later}",
                subject=subject,
            )
        if _not_a_registry_answer(exc, what):
            return RegistryError(
                f"{where} answered a request for {about}{on_subject} with something that is "
                f"not a Schema Registry response ({type(exc).__name__}: "
                f"{_clip(self._scrub(str(exc)))}). {nothing} Check the URL: it must be the "
                "registry API's base (not a web page, a proxy's login page or a UI).",
                subject=subject,
            )
        return SerializationError(
            f"cannot {what} {about}{on_subject} with {type(self).__name__}: "
            f"{type(exc).__name__}: {_clip(self._scrub(str(exc)))}"
        )

    def _compatibility_hint(self, mode: str | None) -> str:
        """What the subject's compatibility rule lets change, for this codec's format."""
        level = (mode or "").upper().removesuffix("_TRANSITIVE")
        if self._schema_type == "JSON":
            # msgspec's schemas are open content models (no additionalProperties: false):
            # the registry's JSON Schema rules then count an added property as narrowing.
            return {
                "BACKWARD": (
                    "Under BACKWARD the registry's JSON Schema rules accept removing a "
                    "field but refuse adding one, even an optional one: the derived "
                    "schema is an open content model."
                ),
                "FORWARD": (
                    "Under FORWARD the registry's JSON Schema rules accept adding a field "
                    "but refuse removing or retyping one."
                ),
                "FULL": (
                    "Under FULL the registry's JSON Schema rules refuse adding and removing "
                    "fields alike (the derived schema is an open content model)."
                ),
            }.get(level, "Make the change compatible under that rule.")
        return {
            "BACKWARD": (
                "Make the change compatible: for BACKWARD, give a new field a default (or "
                "make it optional with a None default); do not retype a field."
            ),
            "FORWARD": (
                "Make the change compatible: for FORWARD, remove only fields that had a "
                "default; adding fields is fine; do not retype a field."
            ),
            "FULL": (
                "Make the change compatible: for FULL, add or remove only fields with a "
                "default; do not retype a field."
            ),
        }.get(level, "Make the change compatible under that rule.")

    def _compatibility(self, subject: str | None) -> str | None:
        """The subject's compatibility level, else the registry's; None if it does not say."""
        for scope in (subject, None) if subject else (None,):
            try:
                level = self._client.get_compatibility(scope)
            except Exception:  # the registry may not say; the message copes
                continue
            if level:
                return str(level)
        return None

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(registry={self._shown_url!r}, "
            f"subject_name_strategy={self.subject_name_strategy!r}, "
            f"auto_register={self.auto_register}, use_latest_version={self.use_latest_version})"
        )


_SECRET_CONF = ("basic.auth.user.info", "bearer.auth.token", "ssl.key.password")


class _Lookup:
    """One first encode of a (type, topic, field) in flight, and then its outcome."""

    __slots__ = ("data", "deadline", "done", "error", "finished", "memo", "started")

    def __init__(self, deadline: float | None, memo: float) -> None:
        self.started = time.monotonic()
        self.deadline = deadline
        self.memo = memo
        self.done = threading.Event()
        self.data: bytes | None = None
        self.error: SerializationError | None = None
        self.finished = 0.0

    def remaining(self) -> float | None:
        return None if self.deadline is None else max(0.0, self.deadline - time.monotonic())

    def overdue(self, now: float) -> bool:
        return self.deadline is not None and now >= self.deadline

    def remembered(self, now: float) -> bool:
        """A registry outage is remembered for a moment: callers then fail at once."""
        return (
            isinstance(self.error, SchemaRegistryUnavailableError)
            and now - self.finished < self.memo
        )


def _lookup_bounds(conf: Mapping[str, Any]) -> tuple[float | None, float]:
    """(the longest a lookup may take or None, how long an outage is remembered).

    From the client's settings: ``timeout`` per attempt, ``max.retries`` retries at most
    ``retries.max.wait.ms`` apart, for each URL (confluent-kafka's defaults where unset).
    A client without a ``timeout`` (a MockSchemaRegistryClient) has no deadline.
    """

    def number(name: str, default: float) -> float:
        value = conf.get(name, default)
        ok = isinstance(value, int | float) and not isinstance(value, bool) and value >= 0
        return float(value) if ok else default

    memo = number("retries.max.wait.ms", 20000) / 1000
    timeout = number("timeout", 0)
    if not timeout:
        return None, memo
    retries = int(number("max.retries", 3))
    urls = max(1, len(str(conf.get("url") or "").split(",")))
    return urls * ((retries + 1) * timeout + retries * memo), memo


def _again(error: SerializationError, note: str = "") -> SerializationError:
    """A copy of ``error`` to raise in another thread (one exception, one traceback)."""
    again = copy.copy(error)
    again.args = (f"{error.args[0] if error.args else error}{note}",)
    return again


def _client_conf(client: Any) -> dict[str, Any]:
    """The configuration a ``SchemaRegistryClient`` was made with (empty if it does not say)."""
    try:
        conf = client.config()
    except Exception:
        return {}
    return dict(conf) if isinstance(conf, Mapping) else {}


def _schema_id_of(data: bytes) -> str:
    """``"schema id N"`` (or ``"schema GUID ..."``) of a Confluent-framed record."""
    if len(data) >= _GUID_FRAME and data[0] == 1:
        return f"schema GUID {uuid.UUID(bytes=data[1:_GUID_FRAME])}"
    return f"schema id {int.from_bytes(data[1:5], 'big')}"


#: Confluent's frames: byte 0 then a 4-byte schema id, or byte 1 then a 16-byte GUID.
_ID_FRAME = 5
_GUID_FRAME = 17
#: How much of a registry's answer (or an error's text) a message quotes.
_CLIP = 300


def _clip(text: str) -> str:
    """``text`` cut for a message (a registry's error page may be kilobytes of HTML)."""
    if len(text) <= _CLIP:
        return text
    return f"{text[:_CLIP]}... ({len(text)} characters)"


def _frame_problem(data: bytes) -> str | None:
    """What keeps ``data`` from being a Confluent-framed value, or None if it is one."""
    if len(data) >= _ID_FRAME and data[0] == 0:
        return None
    if len(data) >= _GUID_FRAME and data[0] == 1:
        return None
    first = f"first byte 0x{data[0]:02x}" if data else "no byte"
    return (
        f"the value is not in Confluent's wire format ({first}, {len(data)} bytes; expected "
        "byte 0 and a 4-byte schema id, or byte 1 and a 16-byte schema GUID, then the "
        "body): was it written by a Schema Registry serializer?"
    )


def _not_a_registry_answer(exc: Exception, what: str) -> bool:
    """``exc`` comes from reading a registry's answer that is no registry answer.

    confluent-kafka's client parses the answer's JSON (``response.json()``) and fields
    (``RegisteredSchema.from_dict``) in its ``schema_registry_client`` modules; a
    serializer given no id by the answer says "Schema ID is not set".
    """
    if what == "encode" and str(exc) in ("Schema ID is not set", "Schema GUID is not set"):
        return True
    if not isinstance(exc, ValueError | KeyError | TypeError | AttributeError):
        return False
    tb = exc.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_filename.endswith("schema_registry_client.py"):
            return True
        tb = tb.tb_next
    return False


def _is_transport_error(exc: Exception) -> bool:
    """An httpx/httpx2 transport error (connection refused, timeout, TLS...)."""
    return any(c.__name__ in ("TransportError", "TimeoutException") for c in type(exc).__mro__)


def _without_credentials(url: str) -> str:
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    host, slash, path = rest.partition("/")
    host = host.rpartition("@")[2]
    return f"{scheme}://{host}{slash}{path.split('?', 1)[0]}"


class JsonSchemaCodec(_RegistryCodec):
    """JSON with a JSON Schema in a Confluent-compatible Schema Registry.

    Writes Confluent's wire format -- byte 0, the 4-byte schema id, then the JSON
    document -- which confluent-kafka's ``JSONDeserializer`` (and Confluent's Java
    ``KafkaJsonSchemaDeserializer``) read. The schema is derived from the event type
    (``msgspec.json.schema``; its ``title`` is ``module.QualName``, the record name
    for the ``record`` strategies) or given per type in ``schemas``.

    Args:
        registry: a :class:`SchemaRegistryConfig`, a URL, a ``SchemaRegistryClient``
            (e.g. confluent-kafka's ``MockSchemaRegistryClient`` in unit tests), or
            None: :meth:`SchemaRegistryConfig.load` (config file and environment).
        subject_name_strategy: ``"topic"`` (default), ``"record"``, ``"topic_record"``,
            or a function ``(ctx, record_name) -> subject``.
        auto_register: register the schema if the subject lacks it (default: on,
            unless ``use_latest_version``).
        use_latest_version: write with the subject's latest registered schema (looked
            up once; ``cache_latest_ttl_sec`` in the config refreshes it).
        normalize: ask the registry to normalize schemas.
        schemas: explicit schema (JSON text) per event type.
        validate: also validate each event against the schema (jsonschema; slow, and
            redundant for a schema derived from the type).
        dataschema: add the CloudEvents ``ce_dataschema`` header
            (``<registry url>/schemas/ids/<id>``).
        content_type: the ``content-type`` header (default ``application/json``; the
            value carries the 5-byte prefix, ``ce_dataschema`` says by which schema).

    Like :class:`~eventwire.JsonCodec`, it refuses NaN and infinities, which JSON cannot
    carry.
    """

    _schema_type = "JSON"
    _default_content_type = "application/json"

    def __init__(
        self,
        registry: SchemaRegistryConfig | str | Any | None = None,
        *,
        subject_name_strategy: SubjectNameStrategy = "topic",
        auto_register: bool | None = None,
        use_latest_version: bool = False,
        normalize: bool = False,
        schemas: Mapping[type, str] | None = None,
        validate: bool = False,
        dataschema: bool = True,
        content_type: str | None = None,
    ) -> None:
        super().__init__(
            registry,
            subject_name_strategy=subject_name_strategy,
            auto_register=auto_register,
            use_latest_version=use_latest_version,
            normalize=normalize,
            schemas=schemas,
            dataschema=dataschema,
            content_type=content_type,
        )
        self.validate = validate
        self._finite = JsonCodec()

    def _derive(self, cls: type) -> tuple[str, str | None]:
        explicit = self._explicit.get(cls)
        if explicit is not None:
            title = json.loads(explicit).get("title")
            return explicit, title if isinstance(title, str) else None
        return json_schema(cls), f"{cls.__module__}.{cls.__qualname__}"

    def _new_serializer(self, schema: str) -> Any:
        from confluent_kafka.schema_registry.json_schema import JSONSerializer  # noqa: PLC0415

        conf = {**self._serializer_conf, "validate": self.validate}
        return JSONSerializer(schema, self._client, conf=conf, json_encode=msgspec.json.encode)

    def _new_deserializer(self) -> Any:
        from confluent_kafka.schema_registry.json_schema import JSONDeserializer  # noqa: PLC0415

        return JSONDeserializer(None, schema_registry_client=self._client)

    def _check(self, event: Any) -> None:
        check = self._finite.finite_check(type(event))
        if check is not None:
            check(event)


def json_schema(cls: type) -> str:
    """The JSON Schema (text) :class:`JsonSchemaCodec` derives for ``cls``.

    msgspec's schema with the event type as the root (its other types under ``$defs``)
    and ``title`` ``module.QualName``.
    """
    schema = _json_schema(cls)
    title = f"{cls.__module__}.{cls.__qualname__}"
    defs: dict[str, Any] = dict(schema.get("$defs", {}))
    ref = schema.get("$ref", "")
    name = ref.removeprefix("#/$defs/") if isinstance(ref, str) else ""
    if name in defs and f'"#/$defs/{name}"' not in json.dumps(defs):
        root = dict(defs.pop(name))  # inline the root: no self-reference to keep
        root["title"] = title
        if defs:
            root["$defs"] = defs
        return json.dumps(root)
    return json.dumps({"title": title, **schema})


class AvroCodec(_RegistryCodec):
    """Avro (fastavro) with its schema in a Confluent-compatible Schema Registry.

    Writes Confluent's wire format -- byte 0, the 4-byte schema id, the Avro binary
    body -- which confluent-kafka's ``AvroDeserializer`` and Confluent's Java
    ``KafkaAvroDeserializer`` read. The schema is derived from the event type (see
    :func:`~eventwire.schema_registry.avro_schema` for the mapping; the record's full
    name ``module.QualName`` is the record name for the ``record`` strategies) or
    given per type in ``schemas``. Arguments as :class:`JsonSchemaCodec`
    (``content_type`` default ``application/avro``).
    """

    _schema_type = "AVRO"
    _default_content_type = "application/avro"

    def _derive(self, cls: type) -> tuple[str, str | None]:
        explicit = self._explicit.get(cls)
        schema = json.loads(explicit) if explicit is not None else avro_schema(cls)
        name = schema.get("name") if isinstance(schema, dict) else None
        namespace = schema.get("namespace") if isinstance(schema, dict) else None
        full = f"{namespace}.{name}" if namespace and name and "." not in name else name
        return explicit if explicit is not None else json.dumps(schema), full

    def _new_serializer(self, schema: str) -> Any:
        from confluent_kafka.schema_registry.avro import AvroSerializer  # noqa: PLC0415

        return AvroSerializer(self._client, schema, conf=dict(self._serializer_conf))

    def _new_deserializer(self) -> Any:
        from confluent_kafka.schema_registry.avro import AvroDeserializer  # noqa: PLC0415

        return AvroDeserializer(self._client)

    def _builtins(self, event: Any) -> Any:
        # Avro carries bytes, timestamps, dates, UUIDs and decimals as such (not as text):
        # a pydantic model is dumped in python mode (by alias), then enums become their
        # values and tuples/sets lists, as for the other shapes.
        if _shapes.is_pydantic_model(type(event)):
            event = event.model_dump(mode="python", by_alias=True)
        return msgspec.to_builtins(event, builtin_types=_AVRO_NATIVE)


def _avro_native() -> tuple[type, ...]:
    import datetime  # noqa: PLC0415
    import decimal  # noqa: PLC0415
    import uuid  # noqa: PLC0415

    return (bytes, bytearray, datetime.datetime, datetime.date, uuid.UUID, decimal.Decimal)


_AVRO_NATIVE = _avro_native()
