"""Event shapes: the kinds of class eventwire publishes, told apart once per class.

* ``msgspec.Struct``, dataclasses (frozen, slots ...) and attrs classes: msgspec
  encodes, decodes and describes them natively (the fast path).
* pydantic v2 models (``BaseModel`` subclasses): pydantic's own serializer and
  validator do the work, by field alias (``by_alias=True``: what
  ``model_validate_json`` reads back by default).

pydantic is optional (``pip install eventwire[pydantic]``) and never imported here:
a model is recognised by the attributes pydantic gives its classes, so eventwire
imports without it. Everything that inspects a class runs once per class (when a
route is bound), never per event.
"""

from __future__ import annotations

import dataclasses
import enum
import re
import sys
import typing
from typing import Any, TypeVar

import msgspec

from eventwire._errors import RoutingError

__all__ = [
    "Shape",
    "check_event_class",
    "check_round_trip",
    "field_names",
    "from_builtins",
    "is_pydantic_model",
    "json_schema",
    "shape_of",
    "to_builtins",
    "validation_message",
]

T = TypeVar("T")


class Shape(enum.Enum):
    """The kind of class an event is."""

    STRUCT = "msgspec.Struct"
    DATACLASS = "dataclass"
    ATTRS = "attrs"
    PYDANTIC = "pydantic"

    @property
    def native(self) -> bool:
        """True if msgspec encodes and decodes this shape itself (all but pydantic)."""
        return self is not Shape.PYDANTIC


def is_pydantic_model(cls: object) -> bool:
    """True if ``cls`` is a pydantic v2 ``BaseModel`` subclass (without importing pydantic)."""
    return (
        isinstance(cls, type)
        and hasattr(cls, "__pydantic_serializer__")
        and hasattr(cls, "model_validate_json")
    )


def shape_of(cls: object) -> Shape | None:
    """The shape of the class ``cls``, or None if eventwire cannot publish it.

    A pydantic dataclass counts as a dataclass (msgspec encodes it; its validators
    do not run on decode).
    """
    if not isinstance(cls, type):
        return None
    if issubclass(cls, msgspec.Struct):
        return Shape.STRUCT
    if is_pydantic_model(cls):
        return Shape.PYDANTIC
    if hasattr(cls, "__attrs_attrs__"):
        return Shape.ATTRS
    if dataclasses.is_dataclass(cls):
        return Shape.DATACLASS
    return None


def check_event_class(cls: object) -> Shape:
    """Return the shape of ``cls``, or raise RoutingError saying what an event class must be.

    A pydantic model must be complete (no unresolved forward reference): its
    serializer is needed for every event.
    """
    shape = shape_of(cls)
    name = getattr(cls, "__qualname__", None) or repr(cls)
    if shape is None:
        hint = ""
        if isinstance(cls, type) and any(
            str(getattr(base, "__module__", "")).startswith("pydantic.v1") for base in cls.__mro__
        ):
            hint = " pydantic v1 models (pydantic.v1.BaseModel) are not supported: use v2's."
        elif isinstance(cls, type):
            hint = (
                " If it is a dataclass or an attrs class, apply @event above (after) "
                "@dataclass / @attrs.define, so that it sees the finished class."
            )
        raise RoutingError(
            f"{name!r} is not an event class: eventwire publishes instances of "
            "msgspec.Struct, dataclass, attrs and pydantic v2 BaseModel classes (e.g. "
            f"`class OrderPlaced(msgspec.Struct, frozen=True): ...`).{hint}"
        )
    if shape is Shape.PYDANTIC and getattr(cls, "__pydantic_complete__", True) is False:
        raise RoutingError(
            f"pydantic model {name} is not fully defined (a forward reference is not "
            f"resolved): define the types it refers to, then call {name}.model_rebuild()."
        )
    return shape


def check_round_trip(cls: type) -> None:
    """Raise RoutingError if events of ``cls`` would lose a field's value, or never decode.

    Run once per class where a route is bound to it (``@event``, ``routes=``). What
    is refused, each named by class and field:

    * a field of an attrs class (the event or one nested in it) whose name starts
      with ``_``: msgspec, which encodes attrs classes, never writes such a field,
      and has no option to (its decoder reads them: only the write loses them);
    * in a pydantic model (or one nested in it): a ``SecretStr``, ``SecretBytes`` or
      ``Secret[...]`` field, which pydantic writes as ``"**********"``, unless a
      serializer of the model's (``field_serializer``, ``PlainSerializer``,
      ``WrapSerializer``, ``model_serializer``) decides what is written; a field
      written under a name its validator does not read (a ``serialization_alias``
      without the matching validation alias); a required field with
      ``exclude=True``, never written.
    """
    shape = check_event_class(cls)
    if shape is Shape.PYDANTIC:
        _check_pydantic(cls)
    else:
        _check_attrs_private(cls)


def _check_attrs_private(cls: type) -> None:
    """The attrs check of :func:`check_round_trip`, for a Struct, dataclass or attrs event."""
    if "attr" not in sys.modules:  # (attrs imports ``attr``): no attrs class can exist
        return
    inspect = msgspec.inspect
    try:
        info: object = inspect.type_info(cls)
    except Exception:  # a type msgspec cannot describe: publish() reports it
        return
    seen: set[int] = set()
    todo = [info]
    while todo:
        node = todo.pop()
        if isinstance(node, list | tuple):
            todo.extend(node)
            continue
        if not isinstance(node, inspect.Type | inspect.Field) or id(node) in seen:
            continue
        seen.add(id(node))
        if isinstance(node, inspect.DataclassType) and hasattr(node.cls, "__attrs_attrs__"):
            for field in node.fields:
                if field.name.startswith("_"):
                    raise _private_attrs_field(cls, node.cls, field.name)
        todo.extend(getattr(node, name) for name in node.__struct_fields__)


def _private_attrs_field(cls: type, owner: type, name: str) -> RoutingError:
    where = "" if owner is cls else f" (in {cls.__qualname__})"
    return RoutingError(
        f"cannot publish {cls.__qualname__}: field {name!r} of the attrs class "
        f"{owner.__qualname__}{where} starts with '_', and msgspec, which encodes attrs "
        "classes, never writes such a field: its value would be lost (consumers would "
        "get its default, or fail to decode). Rename the field without the leading "
        f"underscore ({name.lstrip('_')!r}: attrs' __init__ parameter keeps that name), "
        "or make the class a dataclass or a msgspec.Struct, which write it."
    )


def _check_pydantic(cls: type) -> None:
    """The pydantic checks of :func:`check_round_trip`, over ``cls`` and the models in it."""
    import pydantic  # noqa: PLC0415  (installed: it made cls)

    # (pydantic.Secret, the generic one, is pydantic >= 2.7's; eventwire takes 2.6)
    secret_types = tuple(
        t
        for t in (pydantic.SecretStr, pydantic.SecretBytes, getattr(pydantic, "Secret", None))
        if isinstance(t, type)
    )
    seen: set[int] = set()
    todo: list[type] = [cls]
    while todo:
        owner = todo.pop()
        if id(owner) in seen:
            continue
        seen.add(id(owner))
        decorators = getattr(owner, "__pydantic_decorators__", None)
        if decorators is not None and decorators.model_serializers:
            continue  # the model's own serializer decides what is written
        serialized: set[str] = set()
        for decorator in decorators.field_serializers.values() if decorators else ():
            serialized.update(decorator.info.fields)
        for name, annotation, field in _members(owner):
            if field is not None and field.exclude is True:
                if field.is_required():
                    raise _excluded_required(cls, owner, name)
                continue  # never written
            if name in serialized or "*" in serialized:
                continue  # a field_serializer decides what is written
            if field is not None:
                if _has_serializer(field.metadata):
                    continue
                if is_pydantic_model(owner):
                    _check_names(cls, owner, name, field)
            todo.extend(_written_classes(cls, owner, name, annotation, secret_types))


def _written_classes(
    cls: type, owner: type, name: str, annotation: Any, secret_types: tuple[type, ...]
) -> list[type]:
    """The models and dataclasses in a field's annotation; RoutingError for a secret type."""
    found: list[type] = []
    for node in _annotation_types(annotation):
        origin = typing.get_origin(node) or node
        if isinstance(origin, type) and issubclass(origin, secret_types):
            raise _secret_field(cls, owner, name, origin)
        if isinstance(node, type) and (is_pydantic_model(node) or dataclasses.is_dataclass(node)):
            found.append(node)
    return found


def _members(owner: type) -> list[tuple[str, Any, Any]]:
    """(name, annotation, FieldInfo or None) of each field ``owner`` writes."""
    fields = getattr(owner, "__pydantic_fields__", None)
    if not isinstance(fields, dict):  # a model of pydantic < 2.10 has them here only
        fields = getattr(owner, "model_fields", None)
    if isinstance(fields, dict):  # a model, or a pydantic dataclass
        members: list[tuple[str, Any, Any]] = [
            (name, field.annotation, field) for name, field in fields.items()
        ]
        computed = (
            getattr(owner, "__pydantic_computed_fields__", None)
            or getattr(owner, "model_computed_fields", None)
            or {}
        )
        members += [(name, f.return_type, None) for name, f in computed.items()]
        return members
    if not dataclasses.is_dataclass(owner):
        return []
    try:  # a plain dataclass inside a model: pydantic writes it with its own rules
        hints = typing.get_type_hints(owner, include_extras=True)
    except Exception:
        return []
    return [(f.name, hints.get(f.name, Any), None) for f in dataclasses.fields(owner)]


def _annotation_types(annotation: Any) -> list[Any]:
    """Every type in ``annotation``, through unions, containers and ``Annotated``.

    Not under an ``Annotated`` serializer: what it writes is the user's decision.
    """
    found: list[Any] = []
    seen: set[int] = set()
    todo = [annotation]
    while todo:
        node = todo.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        if typing.get_origin(node) is typing.Annotated:
            if _has_serializer(getattr(node, "__metadata__", ())):
                continue
            todo.append(node.__origin__)
            continue
        found.append(node)
        todo.extend(a for a in typing.get_args(node) if not isinstance(a, str | int))
    return found


def _has_serializer(metadata: Any) -> bool:
    """Whether pydantic metadata holds a ``PlainSerializer`` or ``WrapSerializer``."""
    return any(
        type(item).__name__ in {"PlainSerializer", "WrapSerializer"}
        and type(item).__module__.startswith("pydantic")
        for item in metadata
    )


def _check_names(cls: type, owner: type, name: str, field: Any) -> None:
    """RoutingError if the name a model field is written under is not one its validator reads."""
    written = field.serialization_alias or field.alias or name
    config: Any = getattr(owner, "model_config", {})
    read: set[str] = set()
    if config.get("validate_by_alias", True):
        alias = field.validation_alias if field.validation_alias is not None else field.alias
        read.update(_alias_names(alias) if alias is not None else {name})
    if config.get("validate_by_name") or config.get("populate_by_name"):
        read.add(name)
    if written not in read:
        where = "" if owner is cls else f" (in {cls.__qualname__})"
        raise RoutingError(
            f"cannot publish {cls.__qualname__}: field {name!r} of {owner.__qualname__}"
            f"{where} is written as {written!r} but its validator reads "
            f"{', '.join(repr(n) for n in sorted(read)) or 'no plain name'}, so no event "
            f"could be decoded. Give it one alias both ways (Field(alias={written!r})), or "
            f"read {written!r} too (validation_alias=AliasChoices({written!r}, ...))."
        )


def _alias_names(alias: Any) -> set[str]:
    """The top-level names a validation alias (str, AliasPath, AliasChoices) reads."""
    if isinstance(alias, str):
        return {alias}
    choices = getattr(alias, "choices", None)
    if isinstance(choices, list):
        return {name for choice in choices for name in _alias_names(choice)}
    path = getattr(alias, "path", None)
    if isinstance(path, list) and len(path) == 1 and isinstance(path[0], str):
        return {path[0]}
    return set()


def _excluded_required(cls: type, owner: type, name: str) -> RoutingError:
    where = "" if owner is cls else f" (in {cls.__qualname__})"
    return RoutingError(
        f"cannot publish {cls.__qualname__}: field {name!r} of {owner.__qualname__}{where} "
        "is required but excluded (Field(exclude=True)): it is never written, so no event "
        "could be decoded. Give it a default, or do not exclude it."
    )


def _secret_field(cls: type, owner: type, name: str, secret: type) -> RoutingError:
    where = "" if owner is cls else f" (in {cls.__qualname__})"
    return RoutingError(
        f"cannot publish {cls.__qualname__}: field {name!r} of {owner.__qualname__}{where} "
        f"is a {secret.__name__}, which pydantic writes as '**********': its value would "
        "be lost (consumers would read the mask). Leave the secret out of the event, or "
        "decide to send it in clear text with a field_serializer that writes it, e.g. "
        f"`@pydantic.field_serializer({name!r})` returning `value.get_secret_value()`."
    )


def field_names(cls: type) -> tuple[str, ...]:
    """The attribute names of the fields of the event class ``cls`` (in declaration order).

    For a pydantic model: its fields and computed fields, by attribute name (not alias).
    """
    shape = check_event_class(cls)
    if shape is Shape.STRUCT:
        return tuple(cls.__struct_fields__)  # type: ignore[attr-defined]
    if shape is Shape.PYDANTIC:
        model: Any = cls
        return (*model.model_fields, *model.model_computed_fields)
    if shape is Shape.ATTRS:
        return tuple(a.name for a in cls.__attrs_attrs__)  # type: ignore[attr-defined]
    return tuple(f.name for f in dataclasses.fields(cls))


def to_builtins(event: Any) -> Any:
    """``event`` as JSON-compatible builtins (dicts, lists, str, numbers, bool, None).

    ``msgspec.to_builtins`` for a Struct, dataclass or attrs instance; for a pydantic
    model, ``model_dump(mode="json", by_alias=True)`` -- the value pydantic's JSON
    serializer writes. What a Confluent-style serializer takes.
    """
    if is_pydantic_model(type(event)):
        return event.model_dump(mode="json", by_alias=True)
    return msgspec.to_builtins(event)


def from_builtins(obj: Any, cls: type[T]) -> T:
    """Build a ``cls`` from builtins (the inverse of :func:`to_builtins`).

    ``msgspec.convert`` for a Struct, dataclass or attrs class; ``model_validate``
    (validators run) for a pydantic model.

    Raises:
        msgspec.ValidationError, or pydantic's ValidationError (a ValueError):
            ``obj`` does not fit ``cls``.
    """
    if is_pydantic_model(cls):
        model: Any = cls
        result: T = model.model_validate(obj)
        return result
    return msgspec.convert(obj, cls)


def validation_message(exc: BaseException, cls: type | None = None) -> str:
    """What a validation error says, without the values of the record it quotes.

    pydantic's ``ValidationError`` text quotes each offending input
    (``input_value='...'``), which is payload data (maybe personal data) that must
    not reach error messages or logs. Its errors are listed by location, message and
    type only, and even those leave data out: a location part that is not a field
    name, alias or model name of ``cls`` (a dict key) is shown as ``[...]``, and a
    message that pydantic built from the input (a union's tag, a parser's complaint),
    or a validator's own text that repeats the value, as "the value is not valid".

    msgspec's ``ValidationError`` keeps its path (``- at `$.plan```) and what was
    expected, and loses the input it quotes: the value of an enum, ``Literal`` or tag
    it did not know (``Invalid enum value 'SSN-123'`` is "Invalid enum value (not
    shown)"), the name of an unknown field, and, in the text of an error raised by
    the class's own code (``__post_init__``, an attrs validator), every quoted part
    and number. Any other error is its own text.
    """
    if isinstance(exc, msgspec.ValidationError):
        return _msgspec_message(exc)
    errors = getattr(exc, "errors", None)
    if not (callable(errors) and hasattr(exc, "error_count") and hasattr(exc, "title")):
        return str(exc)
    try:
        # the inputs are read only to tell whether a message quotes one (never shown)
        found: list[dict[str, Any]] = errors(include_url=False, include_input=True)
    except TypeError:  # not pydantic's: its own text
        return str(exc)
    words = _schema_words(cls) if cls is not None else frozenset()
    parts = [
        f"{_location(e.get('loc', ()), words)}: {_safe_message(e)} [type={e.get('type', '?')}]"
        for e in found
    ]
    count = len(found)
    return f"{count} validation error{'s' if count != 1 else ''} for {exc.title}: " + "; ".join(
        parts
    )


#: The messages of msgspec's ValidationError that quote the input, and what is left of them.
_MSGSPEC_QUOTING = (
    ("Invalid enum value ", "Invalid enum value (not shown)"),  # enum, Literal
    ("Invalid value ", "Invalid value (not shown)"),  # a tagged union's tag
    ("Object contains unknown field ", "Object contains an unknown field (not shown)"),
)
#: In an application's own error text: a quoted part, or a number (a run of digits).
_QUOTED_OR_NUMBER = re.compile(r"'[^']*'|\"[^\"]*\"|`[^`]*`|\d+(?:[.,:_-]?\d+)*")


def _msgspec_message(exc: msgspec.ValidationError) -> str:
    """The message of msgspec's error without the input it quotes (see :func:`validation_message`).

    Its text is ``<what>`` followed by `` - at `<path>``` (none at the top level); the
    path is built from field names, indexes and ``[...]`` for a dict key, so it is kept.
    """
    text = str(exc)
    cause = exc.__cause__
    if isinstance(cause, TypeError | ValueError) and not isinstance(cause, msgspec.MsgspecError):
        # msgspec wraps an error of the class's own code: its text, then the path
        own = str(cause)
        if text.startswith(own):
            args = cause.args  # an attrs validator's: (message, attribute, ..., value)
            words = args[0] if len(args) > 1 and isinstance(args[0], str) else own
            return _QUOTED_OR_NUMBER.sub("...", words) + text[len(own) :]
    what, path = text, ""
    if text.endswith("`"):  # (a quoted value never ends the message: its quote does)
        at = text.rfind(" - at `")
        if at >= 0:
            what, path = text[:at], text[at:]
    for prefix, shown in _MSGSPEC_QUOTING:
        if what.startswith(prefix):
            return shown + path
    return text


#: Context keys of a pydantic error that come from the schema, not from the input: a
#: message rendered from only these is safe to show.
_SCHEMA_CONTEXT = frozenset(
    {
        "expected",
        "expected_tags",
        "discriminator",
        "pattern",
        "max_length",
        "min_length",
        "gt",
        "ge",
        "lt",
        "le",
        "multiple_of",
        "max_digits",
        "decimal_places",
        "whole_digits",
        "class_name",
    }
)


#: Error types whose message is a validator's own text (the application's words).
_VALIDATOR_ERRORS = frozenset({"value_error", "assertion_error"})


def _safe_message(error: dict[str, Any]) -> str:
    """The error message if nothing of the input is in it, else "the value is not valid"."""
    message = str(error.get("msg", "?"))
    context = error.get("ctx") or {}
    if set(context) <= _SCHEMA_CONTEXT:
        return message  # made from the schema alone
    if error.get("type") in _VALIDATOR_ERRORS and not _quotes_input(message, error.get("input")):
        return message  # a validator's words that do not repeat the value
    return "the value is not valid"  # built from the input (a tag, a parser's complaint)


def _quotes_input(message: str, value: Any, budget: int = 1000) -> bool:
    """Whether ``message`` holds the text of ``value`` or of any scalar inside it."""
    todo = [value]
    while todo and budget > 0:
        budget -= 1
        item = todo.pop()
        if isinstance(item, dict):
            todo.extend(item.keys())
            todo.extend(item.values())
        elif isinstance(item, list | tuple | set | frozenset):
            todo.extend(item)
        elif item is not None and not isinstance(item, bool):
            text = item.decode(errors="replace") if isinstance(item, bytes) else str(item)
            if text and text in message:
                return True
    return bool(todo)  # too large to check all of it: assume it does


def _location(loc: Any, words: frozenset[str]) -> str:
    shown = []
    for part in loc:
        if isinstance(part, int):
            shown.append(f"[{part}]")
        else:
            shown.append(str(part) if part in words else "[...]")
    return ".".join(shown).replace(".[", "[") or "(value)"


def _schema_words(cls: type) -> frozenset[str]:
    """Field names, aliases and model names reachable from ``cls``'s annotations."""
    words: set[str] = set()
    seen: set[int] = set()
    todo: list[Any] = [cls]
    while todo:
        node = todo.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        fields = getattr(node, "model_fields", None) if isinstance(node, type) else None
        if isinstance(fields, dict):
            words.add(node.__name__)
            for name, field in fields.items():
                words.add(name)
                aliases = (field.alias, field.validation_alias, field.serialization_alias)
                words.update(a for a in aliases if isinstance(a, str))
                todo.append(field.annotation)
        elif isinstance(node, type) and dataclasses.is_dataclass(node):
            words.add(node.__name__)
            for f in dataclasses.fields(node):
                words.add(f.name)
                todo.append(f.type)
        todo.extend(typing.get_args(node))
    return frozenset(words)


def json_schema(cls: type) -> dict[str, Any]:
    """The JSON Schema of the JSON that events of ``cls`` are written as.

    ``msgspec.json.schema(cls)`` for a Struct, dataclass or attrs class;
    ``cls.model_json_schema(by_alias=True, mode="serialization")`` for a pydantic
    model (field aliases, computed fields included).

    Raises:
        RoutingError: ``cls`` is not an event class.
    """
    if check_event_class(cls) is Shape.PYDANTIC:
        model: Any = cls
        schema: dict[str, Any] = model.model_json_schema(by_alias=True, mode="serialization")
        return schema
    return msgspec.json.schema(cls)
