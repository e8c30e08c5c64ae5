"""An Avro schema derived from an event type (:func:`avro_schema`).

A msgspec Struct, a dataclass, an attrs class or a pydantic v2 model; the fields of a
Struct, dataclass or attrs class as msgspec sees them, a model's as pydantic writes
them (by alias). The mapping:

========================  =====================================================
Python (annotation)       Avro
========================  =====================================================
``str``                   ``string``
``int``                   ``long``
``float``                 ``double``
``bool``                  ``boolean``
``bytes``/``bytearray``   ``bytes``
``datetime``              ``long`` / ``timestamp-micros`` (aware; UTC)
``date``                  ``int`` / ``date``
``UUID``                  ``string`` / ``uuid``
``Decimal`` (pydantic,    ``bytes`` / ``decimal`` with ``precision`` = ``max_digits`` and
``max_digits`` and        ``scale`` = ``decimal_places``
``decimal_places``)
``T | None``              ``["null", T]`` (default ``null`` when the field's is ``None``)
``list``/``tuple``/``set``  ``array``
``dict[str, X]``          ``map``
a Struct, dataclass,      ``record`` (named ``module.QualName``; a second use refers to it
attrs class, model        by name, so recursive types work)
a str ``Enum``            ``enum`` of its values (which must be Avro names)
an int ``Enum``           ``long``
``Literal["a", "b"]``     ``enum`` named ``<Record>_<field>``
========================  =====================================================

A field name is the name msgspec encodes (``rename=`` applies), or for a pydantic
model the field's serialization alias (else its name). A default that is a string,
number, bool, ``None``, an enum member or an empty list/dict is written as the Avro
default. pydantic's ``AwareDatetime``/``NaiveDatetime``/``PastDatetime``/
``FutureDatetime`` are datetimes, ``PastDate``/``FutureDate`` dates; a model's computed
fields are left out (they are derived, and a model with ``extra="forbid"`` refuses
them). Anything else (``Any``, other unions, ``array_like`` Structs, a ``Decimal``
without a precision ...) raises :class:`~eventwire.ConfigurationError` naming the
field: give the codec the schema explicitly (``schemas={Type: schema_json}``).
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from typing import Any

import msgspec

from eventwire._errors import ConfigurationError
from eventwire._shapes import is_pydantic_model, shape_of

__all__ = ["avro_schema"]

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_PRIMITIVES: dict[type, str] = {
    msgspec.inspect.StrType: "string",
    msgspec.inspect.IntType: "long",
    msgspec.inspect.FloatType: "double",
    msgspec.inspect.BoolType: "boolean",
    msgspec.inspect.BytesType: "bytes",
    msgspec.inspect.ByteArrayType: "bytes",
}
_SIMPLE = frozenset({*_PRIMITIVES.values(), "null"})


def _name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_]", "_", text) if text else "_"


def _fullname(cls: type) -> tuple[str, str]:
    """(namespace, name) of a record for ``cls``: its module and qualified name."""
    namespace = ".".join(_name(part) for part in cls.__module__.split("."))
    return namespace, _name(cls.__qualname__.replace("<locals>.", ""))


def avro_schema(cls: type) -> dict[str, Any]:
    """The Avro schema (as a dict) of the event type ``cls``.

    Raises:
        ConfigurationError: ``cls`` is not an event class (Struct, dataclass, attrs
            class, pydantic model), or a field's type has no Avro form here (the
            message names it and says what to do).
    """
    if shape_of(cls) is None:
        raise ConfigurationError(
            f"cannot derive an Avro schema from {getattr(cls, '__qualname__', cls)!r}: not a "
            "msgspec.Struct, dataclass, attrs class or pydantic model. Give the schema "
            "explicitly: AvroCodec(..., schemas={Type: schema_json})"
        )
    deriver = _Deriver(cls)
    return deriver.record(deriver.info(cls))  # type: ignore[return-value]


@dataclass(frozen=True, slots=True)
class _Decimal:
    """A Decimal with a precision and scale (pydantic's max_digits and decimal_places)."""

    precision: int
    scale: int


_PYDANTIC_TIMES = {
    "AwareDatetime": msgspec.inspect.DateTimeType(),
    "NaiveDatetime": msgspec.inspect.DateTimeType(),
    "PastDatetime": msgspec.inspect.DateTimeType(),
    "FutureDatetime": msgspec.inspect.DateTimeType(),
    "PastDate": msgspec.inspect.DateType(),
    "FutureDate": msgspec.inspect.DateType(),
}


def _model_info(cls: type) -> msgspec.inspect.DataclassType:
    """A pydantic model described as msgspec.inspect describes a dataclass.

    Fields by attribute name, written (``encode_name``) as their serialization alias,
    with their defaults; excluded and computed fields left out; a Decimal field with
    ``max_digits`` and ``decimal_places`` as :class:`_Decimal`.
    """
    from pydantic_core import PydanticUndefined  # noqa: PLC0415

    model: Any = cls
    fields = []
    for name, field in model.model_fields.items():
        if field.exclude:
            continue
        try:
            info: Any = msgspec.inspect.type_info(field.annotation)
        except Exception:  # described as "this type" by the deriver, naming the field
            info = msgspec.inspect.AnyType()
        digits: dict[str, int] = {
            key: int(getattr(meta, key))
            for meta in field.metadata
            for key in ("max_digits", "decimal_places")
            if getattr(meta, key, None) is not None
        }
        if len(digits) == 2:
            info = _with_decimal(info, _Decimal(digits["max_digits"], digits["decimal_places"]))
        default: Any = msgspec.NODEFAULT
        factory: Any = msgspec.NODEFAULT
        if field.default is not PydanticUndefined:
            default = field.default
        elif field.default_factory is not None and not getattr(
            field, "default_factory_takes_data", False
        ):
            factory = field.default_factory
        fields.append(
            msgspec.inspect.Field(
                name=name,
                encode_name=field.serialization_alias or field.alias or name,
                type=info,
                required=field.is_required(),
                default=default,
                default_factory=factory,
            )
        )
    return msgspec.inspect.DataclassType(cls=cls, fields=tuple(fields))


def _with_decimal(info: Any, decimal: _Decimal) -> Any:
    """``info`` with a Decimal (alone, or in an Optional) replaced by ``decimal``."""
    if isinstance(info, msgspec.inspect.DecimalType):
        return decimal
    if isinstance(info, msgspec.inspect.UnionType):
        return msgspec.inspect.UnionType(types=tuple(_with_decimal(t, decimal) for t in info.types))
    return info


class _Deriver:
    def __init__(self, root: type) -> None:
        self.root = root
        self.named: set[str] = set()

    def fail(self, where: str, what: str) -> ConfigurationError:
        return ConfigurationError(
            f"cannot derive an Avro schema for {self.root.__qualname__}: {where} is {what}, "
            "which has no Avro form here. Change the type, or give the schema explicitly: "
            "AvroCodec(..., schemas={" + self.root.__qualname__ + ": schema_json})"
        )

    def info(self, cls: type) -> msgspec.inspect.StructType | msgspec.inspect.DataclassType:
        """The description of the record type ``cls`` (a pydantic model's: :func:`_model_info`)."""
        if is_pydantic_model(cls):
            return _model_info(cls)
        info = msgspec.inspect.type_info(cls)
        if not isinstance(info, msgspec.inspect.StructType | msgspec.inspect.DataclassType):
            raise self.fail(cls.__qualname__, type(info).__name__.removesuffix("Type"))
        return info

    def record(
        self, info: msgspec.inspect.StructType | msgspec.inspect.DataclassType
    ) -> dict[str, Any] | str:
        namespace, name = _fullname(info.cls)
        full = f"{namespace}.{name}" if namespace else name
        if full in self.named:
            return full
        if getattr(info, "array_like", False):
            raise self.fail(info.cls.__qualname__, "an array_like Struct")
        self.named.add(full)
        fields: list[dict[str, Any]] = []
        tag_field = getattr(info, "tag_field", None)
        if tag_field is not None:
            fields.append({"name": tag_field, "type": "string", "default": str(info.tag)})  # type: ignore[union-attr]
        for field in info.fields:
            where = f"{info.cls.__qualname__}.{field.name}"
            schema = self.of(field.type, where, f"{name}_{_name(field.encode_name)}")
            entry: dict[str, Any] = {"name": field.encode_name, "type": schema}
            if not _NAME.fullmatch(field.encode_name):
                raise self.fail(where, f"named {field.encode_name!r} (not an Avro name)")
            if field.default is not msgspec.NODEFAULT:
                default = _default(field.default)
                if isinstance(schema, list) and default is not None:
                    # Avro checks a union's default against its first branch: T | None
                    # with a T default becomes [T, "null"]; other unions get no default.
                    if len(schema) == 2 and schema[0] == "null":
                        entry["type"] = [schema[1], "null"]
                    else:
                        default = _NO_DEFAULT
                if default is not _NO_DEFAULT:
                    entry["default"] = default
            elif field.default_factory is not msgspec.NODEFAULT:
                made = field.default_factory()
                if made in ([], {}):
                    entry["default"] = made
            fields.append(entry)
        return {"type": "record", "name": name, "namespace": namespace, "fields": fields}

    def of(self, info: Any, where: str, enum_name: str) -> Any:  # noqa: PLR0911, PLR0912
        inspect = msgspec.inspect
        if isinstance(info, inspect.Metadata):
            info = info.type
        primitive = _PRIMITIVES.get(type(info))
        if primitive is not None:
            return primitive
        if isinstance(info, inspect.DateTimeType):
            return {"type": "long", "logicalType": "timestamp-micros"}
        if isinstance(info, inspect.DateType):
            return {"type": "int", "logicalType": "date"}
        if isinstance(info, inspect.UUIDType):
            return {"type": "string", "logicalType": "uuid"}
        if isinstance(info, inspect.StructType | inspect.DataclassType):
            return self.record(info)
        if isinstance(info, _Decimal):
            return {
                "type": "bytes",
                "logicalType": "decimal",
                "precision": info.precision,
                "scale": info.scale,
            }
        if isinstance(info, inspect.DecimalType):
            raise self.fail(
                where,
                "a Decimal without a precision (for a pydantic model, give the field "
                "max_digits and decimal_places: Field(max_digits=12, decimal_places=2))",
            )
        if isinstance(info, inspect.CustomType):
            if is_pydantic_model(info.cls):
                return self.record(_model_info(info.cls))
            if info.cls.__module__.startswith("pydantic") and info.cls.__name__ in _PYDANTIC_TIMES:
                return self.of(_PYDANTIC_TIMES[info.cls.__name__], where, enum_name)
        if isinstance(
            info, inspect.ListType | inspect.VarTupleType | inspect.SetType | inspect.FrozenSetType
        ):
            return {"type": "array", "items": self.of(info.item_type, f"{where}[]", enum_name)}
        if isinstance(info, inspect.DictType):
            if not isinstance(info.key_type, inspect.StrType):
                raise self.fail(where, "a dict with non-str keys")
            return {"type": "map", "values": self.of(info.value_type, f"{where}{{}}", enum_name)}
        if isinstance(info, inspect.EnumType):
            return self.enum(info.cls, where)
        if isinstance(info, inspect.LiteralType):
            if not all(isinstance(v, str) and _NAME.fullmatch(v) for v in info.values):
                raise self.fail(where, "a Literal of values that are not all Avro names")
            return {"type": "enum", "name": enum_name, "symbols": list(info.values)}
        if isinstance(info, inspect.UnionType):
            others = [t for t in info.types if not isinstance(t, inspect.NoneType)]
            if len(others) == 1 and len(info.types) == 2:
                return ["null", self.of(others[0], where, enum_name)]
            branches = [self.of(t, where, enum_name) for t in info.types]
            if not all(isinstance(b, str) and b in _SIMPLE for b in branches):
                raise self.fail(where, "a union of composite types")
            return branches
        if isinstance(info, inspect.NoneType):
            return "null"
        raise self.fail(where, type(info).__name__.removesuffix("Type") or "this type")

    def enum(self, cls: type[enum.Enum], where: str) -> Any:
        values = [m.value for m in cls]
        if all(isinstance(v, int) and not isinstance(v, bool) for v in values):
            return "long"
        if not all(isinstance(v, str) and _NAME.fullmatch(v) for v in values):
            raise self.fail(where, f"the enum {cls.__qualname__}, whose values are not Avro names")
        namespace, name = _fullname(cls)
        full = f"{namespace}.{name}"
        if full in self.named:
            return full
        self.named.add(full)
        return {"type": "enum", "name": name, "namespace": namespace, "symbols": values}


_NO_DEFAULT: Any = object()


def _default(value: object) -> Any:
    """The Avro default for a field's default value, or _NO_DEFAULT if it has no simple one."""
    if isinstance(value, enum.Enum):
        value = value.value
    if value is None or isinstance(value, str | bool | int | float):
        return value
    if value in ([], {}, ()):
        return [] if isinstance(value, list | tuple) else {}
    return _NO_DEFAULT
