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
import typing
from typing import Any, TypeVar

import msgspec

from eventwire._errors import RoutingError

__all__ = [
    "Shape",
    "check_event_class",
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
    or a validator's own text that repeats the value, as "the value is not valid". Any
    other error (msgspec's name the path and the expected type, never the value) is its
    own text.
    """
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
