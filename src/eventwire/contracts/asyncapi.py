"""An AsyncAPI 3.0 document of routed event types: what consumers in any language may rely on.

* ``channels``: one per topic (the channel id and ``address`` are the topic name).
* ``components.messages``: one per event type; ``name`` is the ``ce_type``, ``payload``
  the JSON Schema of the event (``msgspec.json.schema_components``), ``headers`` the
  CloudEvents Kafka binary-mode headers (``ce_specversion``, ``ce_id``, ``ce_type``,
  ``ce_source``, ``ce_time``, ``content-type``), ``bindings.kafka.key`` the key schema
  (UTF-8 text) and ``x-eventwire-key`` where it comes from (a field name, a function,
  or none).
* ``operations``: ``send_<topic>``, one ``send`` per channel, listing its messages.
* ``components.schemas``: every Struct, Enum, dataclass ... the events use, shared.
* pydantic v2 models: their payload is pydantic's own JSON Schema (serialization mode,
  by alias: the JSON pydantic writes), annotated as :mod:`eventwire.contracts._pydantic`
  says; their messages carry ``x-eventwire-shape: pydantic`` (pydantic's validator
  reads them, and pydantic writes every field).

The schemas are msgspec's, in the AsyncAPI Schema dialect (a superset of JSON Schema
draft 07, AsyncAPI 3.0's default): fixed-length arrays are written with
``items: [...]``/``additionalItems`` instead of draft 2020-12's ``prefixItems``, and
msgspec's OpenAPI-style ``discriminator`` object is kept as ``x-discriminator``. Where
JSON Schema cannot tell two msgspec types apart on the wire, an ``x-eventwire-type``
annotation says what the decoder expects (``datetime``/``naive-datetime``/``time``:
a datetime or time whose offset is optional or absent), and dict keys that are not
text get ``propertyNames`` (an integer key is ``{"pattern": "^-?[0-9]+$"}``), so the
compatibility checker (:mod:`eventwire.contracts.compat`) sees what the codec sees.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import msgspec

from eventwire._event import Route
from eventwire._shapes import is_pydantic_model
from eventwire.contracts._collect import ContractError, RoutedType, routed_types
from eventwire.contracts._pydantic import pydantic_components

__all__ = [
    "ASYNCAPI_VERSION",
    "KAFKA_BINDING_VERSION",
    "build_asyncapi",
    "dump_document",
    "load_document",
]

#: The AsyncAPI specification version of the documents written here.
ASYNCAPI_VERSION = "3.0.0"
#: The version of the AsyncAPI Kafka bindings used (channel and message bindings).
KAFKA_BINDING_VERSION = "0.5.0"

_REF_PREFIX = "#/components/schemas/"
_ID_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")
_INT_KEY = {"pattern": "^-?[0-9]+$"}
#: The message annotation saying a pydantic model writes and reads its events (absent:
#: msgspec, for Structs, dataclasses and attrs classes).
SHAPE = "x-eventwire-shape"
#: On each message of a MessagePack contract: how the wire differs from the payload
#: schema, which describes the event's JSON form.
MSGPACK_NOTE = "x-eventwire-msgpack"
_MSGPACK_DIFFERENCES = (
    "The payload schema describes the event's JSON form. MessagePack (msgspec) writes the "
    "same map with these differences: bytes fields are bin, not base64 text; aware "
    "datetimes are the timestamp extension (type -1), in UTC (the UTC offset is not kept); "
    "integer dict keys are integers, not text. Naive datetimes, dates, times, durations, "
    "UUIDs and Decimals are text, as in JSON."
)


def build_asyncapi(
    types: Mapping[type, Route] | Iterable[type] | Sequence[RoutedType],
    *,
    title: str = "eventwire events",
    version: str = "1.0.0",
    content_type: str = "application/json",
    source: str | None = None,
) -> dict[str, Any]:
    """The AsyncAPI 3.0 document (plain dicts and lists) of the given routed event types.

    Args:
        types: ``@event`` classes, a ``{cls: Route}`` mapping (``routes=``), or
            :class:`RoutedType` objects (from :func:`eventwire.contracts.collect_routes`).
        title: ``info.title``.
        version: ``info.version``: the version of this contract.
        content_type: the codec's content type (``application/json``, or
            ``application/msgpack`` for ``codec="msgpack"``: the payload schema is still
            the JSON form of the event, and each message's ``x-eventwire-msgpack`` says
            what MessagePack writes differently: bytes, aware datetimes, integer keys).
        source: the publisher's ``source=`` (``ce_source``) if it is fixed.

    Raises:
        ContractError: a class has no route, two share a ``ce_type``, or msgspec (or
            pydantic, for a model) cannot describe an event type as JSON Schema.
    """
    items = _as_routed(types)
    classes = [item.cls for item in items]
    schemas, names = _schemas_of(classes)
    message_ids = _unique_ids(item.type_name for item in items)
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    messages: dict[str, Any] = {}
    for item, message_id in zip(items, message_ids, strict=True):
        topic = item.route.topic
        messages[message_id] = _message(item, names[item.cls], content_type, source)
        channel = channels.setdefault(
            topic,
            {
                "address": topic,
                "title": topic,
                "messages": {},
                "bindings": {"kafka": {"topic": topic, "bindingVersion": KAFKA_BINDING_VERSION}},
            },
        )
        channel["messages"][message_id] = {"$ref": f"#/components/messages/{message_id}"}
        operation = operations.setdefault(
            f"send_{topic}",
            {
                "action": "send",
                "summary": f"Publish events to the Kafka topic {topic}.",
                "channel": {"$ref": f"#/channels/{topic}"},
                "messages": [],
            },
        )
        operation["messages"].append({"$ref": f"#/channels/{topic}/messages/{message_id}"})
    return {
        "asyncapi": ASYNCAPI_VERSION,
        "info": {
            "title": title,
            "version": version,
            "description": "Domain events published with eventwire: CloudEvents 1.0 Kafka "
            "binding, binary mode (ce_* headers, the event as the value).",
        },
        "defaultContentType": content_type,
        "channels": dict(sorted(channels.items())),
        "operations": dict(sorted(operations.items())),
        "components": {"messages": messages, "schemas": dict(sorted(schemas.items()))},
    }


def _as_routed(
    types: Mapping[type, Route] | Iterable[type] | Sequence[RoutedType],
) -> list[RoutedType]:
    if isinstance(types, Mapping):
        return routed_types(types)
    listed: list[Any] = list(types)
    if listed and all(isinstance(t, RoutedType) for t in listed):
        return sorted(listed, key=lambda item: str(item.type_name))
    return routed_types(listed)


def _unique_ids(type_names: Iterable[str]) -> list[str]:
    """Component ids for the messages (``^[A-Za-z0-9._-]+$``), unique."""
    ids: list[str] = []
    for name in type_names:
        base = _ID_UNSAFE.sub("_", name) or "message"
        candidate, n = base, 2
        while candidate in ids:
            candidate, n = f"{base}_{n}", n + 1
        ids.append(candidate)
    return ids


def _message(
    item: RoutedType, schema_name: str, content_type: str, source: str | None
) -> dict[str, Any]:
    key = item.route.key
    if key is None:
        key_schema: dict[str, Any] = {
            "type": "null",
            "description": "No key: events spread over the partitions, in no order.",
        }
        key_doc: dict[str, Any] = {"kind": "none"}
    elif isinstance(key, str):
        key_schema = {
            "type": "string",
            "description": f"The event's {key!r} field as UTF-8 text (an int in decimal, "
            "a UUID in its canonical form); events with the same key keep their order.",
        }
        key_doc = {"kind": "field", "field": key}
    else:
        function = f"{getattr(key, '__module__', '?')}.{getattr(key, '__qualname__', key)}"
        key_schema = {
            "type": "string",
            "description": f"Computed by the function {function} (UTF-8 text).",
        }
        key_doc = {"kind": "function", "function": function}
    source_schema: dict[str, Any] = {
        "type": "string",
        "description": "CloudEvents source: the publisher's source=.",
    }
    if source is not None:
        source_schema["const"] = source
    headers = {
        "type": "object",
        "properties": {
            "ce_specversion": {"type": "string", "const": "1.0"},
            "ce_id": {
                "type": "string",
                "description": "Event id (a UUIDv7 unless the publisher was given one); "
                "the same when an event is re-sent, so consumers de-duplicate on it.",
            },
            "ce_type": {"type": "string", "const": item.type_name},
            "ce_source": source_schema,
            "ce_time": {
                "type": "string",
                "format": "date-time",
                "description": "When the event was published (RFC 3339, UTC, milliseconds).",
            },
            "content-type": {"type": "string", "const": content_type},
        },
        "required": [
            "ce_specversion",
            "ce_id",
            "ce_type",
            "ce_source",
            "ce_time",
            "content-type",
        ],
    }
    message: dict[str, Any] = {
        "name": item.type_name,
        "title": item.cls.__qualname__,
        "contentType": content_type,
        "headers": headers,
        "payload": {"$ref": f"{_REF_PREFIX}{schema_name}"},
        "correlationId": {
            "description": "The CloudEvents id.",
            "location": "$message.header#/ce_id",
        },
        "bindings": {"kafka": {"key": key_schema, "bindingVersion": KAFKA_BINDING_VERSION}},
        "x-eventwire-key": key_doc,
    }
    if is_pydantic_model(item.cls):
        message[SHAPE] = "pydantic"
    if content_type.split(";", 1)[0].strip().lower() == "application/msgpack":
        message[MSGPACK_NOTE] = _MSGPACK_DIFFERENCES
    doc = (item.cls.__doc__ or "").strip()
    if doc:
        message["summary"] = doc.splitlines()[0]
    return message


# -- schemas -------------------------------------------------------------------------------


def _schemas_of(classes: list[type]) -> tuple[dict[str, Any], dict[type, str]]:
    """``components.schemas`` for ``classes`` and the component name of every class.

    msgspec describes the Structs, dataclasses and attrs classes; pydantic its models
    (:mod:`eventwire.contracts._pydantic`). A pydantic component whose name a msgspec
    one already has (and with another schema) is renamed ``<name>_2``, ``<name>_3`` ...
    """
    pydantic = [c for c in classes if is_pydantic_model(c)]
    native = [c for c in classes if not is_pydantic_model(c)]
    schemas, names = _msgspec_schemas(native) if native else ({}, {})
    if pydantic:
        models, model_names = pydantic_components(pydantic, _REF_PREFIX)
        renamed: dict[str, str] = {}
        for name, schema in models.items():
            candidate, n = name, 2
            while (candidate in schemas and schemas[candidate] != _draft07(schema)) or (
                candidate != name and candidate in models
            ):
                candidate, n = f"{name}_{n}", n + 1
            if candidate != name:
                renamed[_REF_PREFIX + name] = _REF_PREFIX + candidate
        for name, schema in models.items():
            target = renamed.get(_REF_PREFIX + name, _REF_PREFIX + name)
            schemas[target.removeprefix(_REF_PREFIX)] = _draft07(_rename_refs(schema, renamed))
        for cls, name in model_names.items():
            names[cls] = renamed.get(_REF_PREFIX + name, _REF_PREFIX + name).removeprefix(
                _REF_PREFIX
            )
    return schemas, names


def _rename_refs(schema: Any, renamed: Mapping[str, str]) -> Any:
    """``schema`` with every reference in ``renamed`` (``$ref``, discriminator mappings) renamed."""
    if not renamed:
        return schema
    if isinstance(schema, list):
        return [_rename_refs(item, renamed) for item in schema]
    if isinstance(schema, dict):
        return {key: _rename_refs(value, renamed) for key, value in schema.items()}
    if isinstance(schema, str):
        return renamed.get(schema, schema)
    return schema


def _msgspec_schemas(classes: list[type]) -> tuple[dict[str, Any], dict[type, str]]:
    mi = msgspec.inspect
    try:
        infos = mi.multi_type_info(classes)
    except (TypeError, ValueError) as exc:
        raise ContractError(f"msgspec cannot describe the event types: {exc}") from exc
    components: dict[type, Any] = {}
    for info in infos:
        _collect_components(info, components)
    nameable = list(components)
    try:
        refs, schemas = msgspec.json.schema_components(
            nameable, ref_template=_REF_PREFIX + "{name}"
        )
    except (TypeError, ValueError) as exc:
        raise ContractError(f"msgspec cannot write a JSON Schema of the events: {exc}") from exc
    names = {
        cls: str(ref["$ref"]).removeprefix(_REF_PREFIX)
        for cls, ref in zip(nameable, refs, strict=True)
    }
    for cls, info in components.items():
        _annotate_component(info, schemas[names[cls]])
    return {name: _draft07(schema) for name, schema in schemas.items()}, names


def _collect_components(info: Any, out: dict[type, Any]) -> None:
    mi = msgspec.inspect
    if isinstance(info, mi.StructType | mi.TypedDictType | mi.DataclassType | mi.NamedTupleType):
        if info.cls not in out:
            out[info.cls] = info
            for field in info.fields:
                _collect_components(field.type, out)
    elif isinstance(info, mi.EnumType):
        out[info.cls] = info
    elif isinstance(info, mi.Metadata):
        _collect_components(info.type, out)
    elif isinstance(info, mi.CollectionType):
        _collect_components(info.item_type, out)
    elif isinstance(info, mi.TupleType):
        for item in info.item_types:
            _collect_components(item, out)
    elif isinstance(info, mi.DictType | mi.FrozenDictType):
        _collect_components(info.key_type, out)
        _collect_components(info.value_type, out)
    elif isinstance(info, mi.UnionType):
        for item in info.types:
            _collect_components(item, out)


def _annotate_component(info: Any, schema: dict[str, Any]) -> None:
    """Add what msgspec's JSON Schema leaves out to a component's schema (see the module doc)."""
    mi = msgspec.inspect
    if isinstance(info, mi.EnumType):
        return
    fields = list(info.fields)
    if isinstance(info, mi.NamedTupleType) or (isinstance(info, mi.StructType) and info.array_like):
        offset = 1 if isinstance(info, mi.StructType) and info.tag_field is not None else 0
        items = schema.get("prefixItems", [])
        for n, field in enumerate(fields):
            if n + offset < len(items):
                _annotate(field.type, items[n + offset])
        return
    properties = schema.get("properties", {})
    for field in fields:
        name = getattr(field, "encode_name", field.name)
        if name in properties:
            _annotate(field.type, properties[name])


def _annotate(info: Any, schema: dict[str, Any]) -> None:  # noqa: PLR0912 - a type switch
    mi = msgspec.inspect
    while isinstance(info, mi.Metadata):
        info = info.type
    if "$ref" in schema or not isinstance(schema, dict):
        return
    if isinstance(info, mi.DateTimeType) and "format" not in schema:
        schema["x-eventwire-type"] = "datetime" if info.tz is None else "naive-datetime"
    elif isinstance(info, mi.TimeType) and info.tz is None and "format" not in schema:
        schema["x-eventwire-type"] = "time"
    elif isinstance(info, mi.CollectionType) and "items" in schema:
        _annotate(info.item_type, schema["items"])
    elif isinstance(info, mi.TupleType):
        for item, item_schema in zip(info.item_types, schema.get("prefixItems", []), strict=False):
            _annotate(item, item_schema)
    elif isinstance(info, mi.DictType | mi.FrozenDictType):
        key = info.key_type
        while isinstance(key, mi.Metadata):
            key = key.type
        if "propertyNames" not in schema:
            if isinstance(key, mi.IntType):
                schema["propertyNames"] = dict(_INT_KEY)
            elif not isinstance(key, mi.StrType | mi.AnyType):
                schema["propertyNames"] = {"x-eventwire-type": type(key).__name__}
        if "additionalProperties" in schema:
            _annotate(info.value_type, schema["additionalProperties"])
    elif isinstance(info, mi.UnionType) and "anyOf" in schema:
        # msgspec lists the members that are not (object-like) Structs or None first,
        # in order: the schemas to annotate (Structs are references).
        others = [
            t
            for t in info.types
            if not isinstance(_unwrap(t), mi.NoneType)
            and not (isinstance(_unwrap(t), mi.StructType) and not _unwrap(t).array_like)
        ]
        for member, member_schema in zip(others, schema["anyOf"], strict=False):
            _annotate(member, member_schema)


def _unwrap(info: Any) -> Any:
    while isinstance(info, msgspec.inspect.Metadata):
        info = info.type
    return info


def _draft07(schema: Any) -> Any:
    """The schema with msgspec's draft 2020-12 keywords in their draft 07 form (AsyncAPI's base)."""
    if isinstance(schema, list):
        return [_draft07(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    out = {key: _draft07(value) for key, value in schema.items()}
    if "prefixItems" in out:
        prefix = out.pop("prefixItems")
        additional = out.pop("items", True)
        out["items"] = prefix
        if additional is not True:
            out["additionalItems"] = additional
    if isinstance(out.get("discriminator"), dict):
        out["x-discriminator"] = out.pop("discriminator")
    if isinstance(out.get("default"), list) and _is_set(out):
        out["default"] = _sorted_set(out["default"], out)
    return out


def _is_set(schema: Mapping[str, Any]) -> bool:
    """The schema (or a member of its union) is a set's: ``uniqueItems`` (order has no meaning)."""
    members = [schema, *schema.get("anyOf", ()), *schema.get("oneOf", ())]
    return any(isinstance(m, dict) and m.get("uniqueItems") is True for m in members)


def _sorted_set(items: list[Any], schema: Mapping[str, Any]) -> list[Any]:
    """A set default in a stable order (sets of sets too).

    A set or frozenset is written in hash order, which differs from run to run
    (``PYTHONHASHSEED``); the document must not.
    """
    item_schema = next(
        (
            m.get("items")
            for m in [schema, *schema.get("anyOf", ()), *schema.get("oneOf", ())]
            if isinstance(m, dict) and m.get("uniqueItems") is True
        ),
        None,
    )
    if isinstance(item_schema, dict) and _is_set(item_schema):  # a set of frozensets
        items = [_sorted_set(i, item_schema) if isinstance(i, list) else i for i in items]
    return sorted(items, key=lambda item: json.dumps(item, sort_keys=True))


# -- files ---------------------------------------------------------------------------------


def dump_document(document: Mapping[str, Any], path: str | Path | None = None) -> str:
    """The document as YAML (as JSON when ``path`` ends in ``.json``); written to ``path`` if given.

    YAML needs PyYAML (the ``cli`` and ``contracts`` extras).
    """
    if path is not None and str(path).endswith(".json"):
        text = json.dumps(document, indent=2, ensure_ascii=False) + "\n"
    else:
        yaml = _yaml()
        text = yaml.safe_dump(
            _plain(document), sort_keys=False, allow_unicode=True, default_flow_style=False
        )
    if path is not None:
        Path(path).write_text(text, encoding="utf-8")
    return text


def load_document(path: str | Path) -> dict[str, Any]:
    """Read an AsyncAPI document (YAML or JSON) written by :func:`dump_document` or by hand.

    Raises:
        ContractError: the file cannot be read, is not YAML/JSON, or is not an AsyncAPI
            3 document.
    """
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ContractError(f"cannot read {path}: {exc.strerror or exc}") from None
    is_json = str(path).endswith(".json")
    yaml = None if is_json else _yaml()
    errors: tuple[type[Exception], ...] = (ValueError,) if yaml is None else (yaml.YAMLError,)
    try:
        document = json.loads(text) if yaml is None else yaml.safe_load(text)
    except errors as exc:
        raise ContractError(f"{path} is not valid {'JSON' if is_json else 'YAML'}: {exc}") from None
    return check_document(document, str(path))


def check_document(document: object, where: str = "the document") -> dict[str, Any]:
    """``document`` if it looks like an AsyncAPI 3 document, else raise ContractError."""
    if not isinstance(document, dict) or not str(document.get("asyncapi", "")).startswith("3."):
        raise ContractError(f"{where} is not an AsyncAPI 3 document (no 'asyncapi: 3.x.y')")
    return document


def _yaml() -> Any:
    try:
        import yaml  # noqa: PLC0415
    except ImportError:
        raise ContractError(
            "YAML needs PyYAML: pip install 'eventwire[contracts]' (or write .json)"
        ) from None
    return yaml


def _plain(value: Any) -> Any:
    """Plain dicts/lists/scalars (PyYAML's safe dumper refuses subclasses)."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value
