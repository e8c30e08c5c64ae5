"""Codecs: event <-> bytes with msgspec. One encoder per codec, reused.

A codec has a ``content_type`` (sent as the ``content-type`` header), an
``encode(event) -> bytes`` and a ``decode(data, type) -> event``. A
:class:`TopicCodec` is told where each value goes instead
(``encode_for(event, ctx)``, ``decode_from(data, type, ctx)``, the context
Confluent's serializers take); :class:`SerializerCodec` wraps any Confluent-style
serializer as one.
"""

from __future__ import annotations

import dataclasses
import functools
import keyword
import math
from collections.abc import Callable
from typing import Any, Protocol, TypeVar, runtime_checkable

import msgspec

from eventwire._errors import ConfigurationError, SerializationError
from eventwire._shapes import from_builtins, is_pydantic_model, to_builtins, validation_message

__all__ = [
    "ENCODE_ERRORS",
    "Codec",
    "JsonCodec",
    "MsgpackCodec",
    "SerializationContext",
    "SerializerCodec",
    "TopicCodec",
    "decode_value",
    "resolve_codec",
]

T = TypeVar("T")


@dataclasses.dataclass(slots=True)
class SerializationContext:
    """Where a value being encoded goes: what Confluent's serializers are given.

    The shape of ``confluent_kafka.serialization.SerializationContext`` (``topic``,
    ``field`` -- ``"value"`` or ``"key"``, ``headers``), so a Confluent serializer
    (``serializer(obj, ctx) -> bytes``, e.g. Schema Registry's ``AvroSerializer``
    or ``JSONSerializer``) can be called with it. ``headers`` is the list of extra
    headers this record will carry: a codec may append to it (e.g. a
    ``ce_dataschema``), and what it appends is written after the CloudEvents
    headers, kept for re-sends, and not checked against the reserved ``ce_`` names.
    """

    topic: str
    field: str = "value"
    headers: list[tuple[str, bytes]] = dataclasses.field(default_factory=list)


@runtime_checkable
class TopicCodec(Protocol):
    """A codec told where each value goes (:class:`SerializationContext`).

    Use it when the bytes depend on the topic -- a Schema Registry subject is
    ``<topic>-value`` by default -- or when the codec writes headers. A publisher
    given one calls :meth:`encode_for` instead of ``encode``; every other codec
    (:class:`Codec`) keeps working unchanged.
    """

    content_type: str

    def encode_for(self, event: Any, ctx: SerializationContext) -> bytes:
        """Encode ``event`` for ``ctx.topic``; raise SerializationError if it cannot be."""
        ...

    def decode_from(self, data: bytes, type: type[T], ctx: SerializationContext) -> T:
        """Decode ``data`` read from ``ctx.topic`` as ``type``; raise SerializationError."""
        ...


class SerializerCodec:
    """Plugs a Confluent-style serializer (and deserializer) into eventwire.

    ``serializer(obj, ctx) -> bytes`` and ``deserializer(data, ctx) -> obj`` are any
    callables of that shape: confluent-kafka's ``AvroSerializer``,
    ``JSONSerializer``, ``ProtobufSerializer`` and their deserializers, or your own.
    Events reach the serializer as plain builtins (dicts, lists, str, numbers:
    ``msgspec.to_builtins``, or for a pydantic model ``model_dump(mode="json",
    by_alias=True)``), which is what Confluent's serializers take when built
    without ``to_dict``; what the deserializer returns is converted to the event
    type (``msgspec.convert``, or pydantic's ``model_validate``). Pass
    ``to_builtins=False`` to hand over the event object itself (the serializer's
    ``to_dict`` then converts it).

    Any error of the serializer (an incompatible schema the registry refuses, the
    registry unreachable) becomes a SerializationError naming the event type and
    topic, raised by ``publish()`` before anything is enqueued.

    Args:
        serializer: ``(obj, ctx) -> bytes``.
        deserializer: ``(data, ctx) -> obj``, for :meth:`decode_from` (optional).
        content_type: the ``content-type`` header to write (CloudEvents
            ``datacontenttype``), e.g. ``"application/avro"``.
        to_builtins: convert the event to builtins first.
    """

    def __init__(
        self,
        serializer: Callable[[Any, SerializationContext], bytes | None],
        deserializer: Callable[[bytes, SerializationContext], Any] | None = None,
        *,
        content_type: str = "application/octet-stream",
        to_builtins: bool = True,
    ) -> None:
        self.serializer = serializer
        self.deserializer = deserializer
        self.content_type = content_type
        self.to_builtins = to_builtins

    def encode_for(self, event: Any, ctx: SerializationContext) -> bytes:
        """Serialize ``event`` (as builtins) for ``ctx``."""
        try:
            obj = to_builtins(event) if self.to_builtins else event
            data = self.serializer(obj, ctx)
        except SerializationError:
            raise
        except Exception as exc:
            raise SerializationError(
                f"cannot encode {type(event).__qualname__} for topic {ctx.topic!r} with "
                f"{_name(self.serializer)}: {exc}"
            ) from exc
        if not isinstance(data, bytes):
            raise SerializationError(
                f"{_name(self.serializer)} returned {type(data).__name__} for a "
                f"{type(event).__qualname__} to topic {ctx.topic!r}, not bytes"
            )
        return data

    def decode_from(self, data: bytes, type: type[T], ctx: SerializationContext) -> T:
        """Deserialize ``data`` read from ``ctx.topic`` and convert it to ``type``."""
        if self.deserializer is None:
            raise SerializationError(
                f"{_name(self.serializer)} has no deserializer: pass one to SerializerCodec"
            )
        try:
            obj = self.deserializer(data, ctx)
            return from_builtins(obj, type)
        except SerializationError:
            raise
        except Exception as exc:
            # a ValidationError of msgspec's or pydantic's quotes the input: left out
            reason = validation_message(exc, type)
            raise SerializationError(
                f"cannot decode a {type.__qualname__} from topic {ctx.topic!r} with "
                f"{_name(self.deserializer)}: {reason}"
            ) from (exc if reason == str(exc) else None)

    def __repr__(self) -> str:
        return f"SerializerCodec({_name(self.serializer)}, content_type={self.content_type!r})"


def _name(fn: object) -> str:
    name = getattr(fn, "__qualname__", None)
    return name if isinstance(name, str) else type(fn).__qualname__


@runtime_checkable
class Codec(Protocol):
    """Turns events into bytes and back."""

    content_type: str

    def encode(self, event: Any) -> bytes:
        """Encode ``event``; raise SerializationError if it cannot be encoded."""
        ...

    def decode(self, data: bytes, type: type[T]) -> T:
        """Decode ``data`` as ``type``; raise SerializationError if it does not fit."""
        ...


#: What msgspec's encoders raise for a value they cannot encode (RecursionError: an
#: event that contains itself, or one nested deeper than the interpreter's limit).
ENCODE_ERRORS = (TypeError, ValueError, OverflowError, RecursionError, msgspec.EncodeError)


class _MsgspecCodec:
    """msgspec for Structs, dataclasses and attrs classes; pydantic's own code for its models."""

    content_type: str
    _encoder: msgspec.json.Encoder | msgspec.msgpack.Encoder
    _decoders: dict[type, Any]
    #: The bare encoder of each pydantic model class met so far.
    _model_encoders: dict[type, Callable[[Any], bytes]]

    @property
    def fast_encode(self) -> Callable[[Any], bytes]:
        """The bare msgspec encoder: raises one of :data:`ENCODE_ERRORS` instead of ours.

        It encodes Structs, dataclasses and attrs instances; :meth:`encoder_for`
        gives the bare encoder of any event class (pydantic models too).
        """
        return self._encoder.encode

    def encoder_for(self, cls: type) -> Callable[[Any], bytes]:
        """The bare encoder of events of ``cls``: raises one of :data:`ENCODE_ERRORS`, not ours.

        msgspec's own encoder (:attr:`fast_encode`, the same object for every
        Struct, dataclass and attrs class); for a pydantic model, pydantic's
        serializer of that class (made once per class). For the publish hot path,
        which binds it to the class's route and calls :meth:`encode` again on an
        error to raise the explanatory SerializationError.
        """
        if not is_pydantic_model(cls):
            return self._encoder.encode
        encoder = self._model_encoders.get(cls)
        if encoder is None:
            encoder = self._model_encoders[cls] = self._model_encoder(cls)
        return encoder

    def encode(self, event: Any) -> bytes:
        try:
            return self._encoder.encode(event)
        except ENCODE_ERRORS as exc:
            if not is_pydantic_model(type(event)):
                raise self._encode_error(event, exc) from _cause(exc)
        try:  # a pydantic model: msgspec does not know it, pydantic encodes it
            return self.encoder_for(type(event))(event)
        except ENCODE_ERRORS as exc:
            raise self._encode_error(event, exc) from _cause(exc)

    def _encode_error(self, event: Any, exc: BaseException) -> SerializationError:
        what = f"cannot encode {type(event).__qualname__} as {self.content_type}: {exc}."
        if isinstance(exc, RecursionError) or "Circular reference" in str(exc):
            return SerializationError(
                f"{what} The event contains itself (a field refers back to the event or "
                "to one of its containers) or is nested too deeply; break the cycle, e.g. "
                "refer to the other object by its id."
            )
        if is_pydantic_model(type(event)):
            return SerializationError(
                f"{what} pydantic's serializer refused it: fix the field it names, or give "
                "it a field_serializer."
            )
        return SerializationError(
            f"{what} Use types msgspec supports (str, int, float, bool, datetime, UUID, "
            "Struct, dataclass, list, dict ...) in event fields."
        )

    def decode(self, data: bytes, type: type[T]) -> T:
        decoder = self._decoders.get(type)
        if decoder is None:
            decoder = self._decoders[type] = self._make_decoder(type)
        try:
            result: T = decoder.decode(data)
        except ValueError as exc:  # msgspec.DecodeError, pydantic's ValidationError
            reason = validation_message(exc, type)
            # pydantic's error quotes the input values: not kept as the cause either
            raise SerializationError(
                f"cannot decode {self.content_type} bytes as {type.__qualname__}: {reason}"
            ) from (exc if reason == str(exc) else None)
        except RecursionError:  # nested deeper than Python's stack (a crafted value)
            raise SerializationError(
                f"cannot decode {self.content_type} bytes as {type.__qualname__}: the value "
                "is nested too deeply"
            ) from None
        return result

    def _make_decoder(self, type: type[Any]) -> Any:
        raise NotImplementedError

    def _model_encoder(self, cls: type) -> Callable[[Any], bytes]:
        raise NotImplementedError


def _cause(exc: BaseException) -> BaseException | None:
    """The ``__cause__`` of our SerializationError: none for a recursion (its chain is huge)."""
    return None if isinstance(exc, RecursionError) else exc


class _ModelDecoder:
    """A decoder object (``decode(data)``) built on a function, for pydantic models."""

    __slots__ = ("decode",)

    def __init__(self, decode: Callable[[bytes], Any]) -> None:
        self.decode = decode


_UNCHECKED: Any = object()


class JsonCodec(_MsgspecCodec):
    """msgspec JSON, ``content-type: application/json``. The default.

    A pydantic model is written by pydantic's own JSON serializer (by alias:
    ``to_json(model, by_alias=True)``) and read back with ``model_validate_json``
    (its validators run); every other event class by msgspec.

    JSON has no NaN or infinity. msgspec writes a non-finite float as ``null``,
    which does not decode back as a ``float`` (not by this codec, nor by a
    consumer that checks types), so by default :meth:`encode` refuses an event
    holding one with a SerializationError naming the field (e.g. ``$.total``). Use
    ``MsgpackCodec`` (MessagePack keeps NaN and infinities), send a finite value
    or ``None`` (in an ``Optional`` field), or pass ``allow_non_finite=True`` to
    write ``null`` anyway (the consumer must then read the field as optional; a
    pydantic model writes them as its ``ser_json_inf_nan`` setting says, ``null``
    by default).

    The check is compiled once per event type from its annotations
    (:meth:`finite_check`): a type with no float in it costs nothing; one with
    floats costs an ``isfinite`` per float value (fields typed ``Any`` are walked
    generically). Field values are not type-checked on publish: a field whose
    annotation cannot hold a float (``int``, ``str``, ``int | None``,
    ``list[int]`` ...) is never looked at, so a NaN that got into one (from pandas
    or numpy, where a missing int is NaN) is written as ``null``. Consumers then
    read ``None`` in an ``Optional`` field, and fail to decode any other.

    JSON object keys are text: the keys of a dict that differ in Python but have
    the same text (``1`` and ``"1"``, a ``UUID`` and its string) are written twice
    under one name, and a reader keeps only the last. ``MsgpackCodec`` keeps them
    apart.

    Args:
        allow_non_finite: write NaN and infinities as ``null`` instead of refusing them.
    """

    content_type = "application/json"

    def __init__(self, *, allow_non_finite: bool = False) -> None:
        self._encoder = msgspec.json.Encoder()
        self._decoders = {}
        self._model_encoders = {}
        self.allow_non_finite = allow_non_finite
        self._checks: dict[type, Callable[[Any], None] | None] = {}

    def encode(self, event: Any) -> bytes:
        try:
            data = self._encoder.encode(event)
        except ENCODE_ERRORS:
            data = super().encode(event)  # a pydantic model, or the SerializationError
        if not self.allow_non_finite:
            check = self._checks.get(type(event), _UNCHECKED)
            if check is _UNCHECKED:
                check = self.finite_check(type(event))
            if check is not None:
                check(event)
        return data

    def finite_check(self, cls: type) -> Callable[[Any], None] | None:
        """The check that an event of ``cls`` holds no NaN or infinity, or None if none is needed.

        For the publish hot path, which calls the bare encoder (:meth:`encoder_for`)
        and then this check once the value is encoded. None with
        ``allow_non_finite``, or for a type that cannot hold a float.

        The check raises SerializationError naming the first such value by its JSON
        path (e.g. ``$.line_items[1].price``; a pydantic field by its alias).
        """
        if self.allow_non_finite:
            return None
        if cls not in self._checks:
            self._checks[cls] = _compile_finite_check(cls, self.content_type)
        return self._checks[cls]

    def _make_decoder(self, type: type[Any]) -> Any:
        if is_pydantic_model(type):
            model: Any = type
            return _ModelDecoder(model.model_validate_json)
        return msgspec.json.Decoder(type)

    def _model_encoder(self, cls: type) -> Callable[[Any], bytes]:
        serializer: Any = cls.__pydantic_serializer__  # type: ignore[attr-defined]
        return functools.partial(serializer.to_json, by_alias=True)


class MsgpackCodec(_MsgspecCodec):
    """msgspec MessagePack, ``content-type: application/msgpack``: smaller, faster.

    What MessagePack keeps and JSON does not: NaN and infinities, ``bytes`` (as
    binary, not base64), dict keys of different types that have the same text (``1``
    and ``"1"``). What it does not keep: the UTC offset of an aware ``datetime``.
    msgspec writes it as MessagePack's timestamp extension, which holds the instant
    only, so ``09:00-05:00`` is read back as ``14:00+00:00`` (equal as an instant,
    the offset lost; JSON writes the RFC 3339 text with its offset). A naive
    ``datetime`` is written as RFC 3339 text. Send the offset in a field of its own
    if consumers need it, or use JSON.

    A pydantic model is dumped by pydantic (``model_dump(by_alias=True)``, Python
    mode: datetimes, bytes, NaN, UUIDs, enums, decimals and tuples stay Python
    objects) and that is written by msgspec, as above: a UUID, enum or decimal as
    its string or value, a tuple as an array. It is read back with
    ``model_validate(obj, strict=False)`` (its validators run). Lax mode, even for a
    model or field declared ``strict=True``: strict validation of Python objects
    wants a ``UUID``, ``Enum``, ``Decimal`` or ``tuple`` instance where the record
    holds a string or an array, so a strict model could not read the records
    eventwire writes for it. (JSON's ``model_validate_json`` accepts those forms in
    strict mode, so the JSON codec keeps strict validation.) The price: a msgpack
    consumer of a strict model also accepts what lax mode converts, such as
    ``"3"`` for an ``int``.
    """

    content_type = "application/msgpack"

    def __init__(self) -> None:
        self._encoder = msgspec.msgpack.Encoder()
        self._decoders = {}
        self._model_encoders = {}

    def _make_decoder(self, type: type[Any]) -> Any:
        if is_pydantic_model(type):
            model: Any = type
            validate, read = model.model_validate, msgspec.msgpack.Decoder().decode
            # strict=False: what the encoder writes, a strict model reads (see above)
            return _ModelDecoder(lambda data: validate(read(data), strict=False))
        return msgspec.msgpack.Decoder(type)

    def _model_encoder(self, cls: type) -> Callable[[Any], bytes]:
        import pydantic_core  # noqa: PLC0415  (installed with pydantic, which made cls)

        dump = functools.partial(
            cls.__pydantic_serializer__.to_python,  # type: ignore[attr-defined]
            by_alias=True,
        )
        # What pydantic leaves as an object msgspec does not know (a Url, a
        # SecretStr ...) becomes what pydantic would write in JSON.
        write = msgspec.msgpack.Encoder(enc_hook=pydantic_core.to_jsonable_python).encode
        return lambda event: write(dump(event))


_NAMED: dict[str, Callable[[], Codec]] = {"json": JsonCodec, "msgpack": MsgpackCodec}


def _can_hold_float(info: object) -> bool:
    """Whether a value described by ``info`` (msgspec.inspect) may contain a float anywhere.

    ``Any``, custom types and anything unknown count as yes.
    """
    seen: set[int] = set()
    todo: list[object] = [info]
    while todo:
        node = todo.pop()
        if isinstance(node, _MAY_HOLD_FLOAT):
            return True
        if isinstance(node, list | tuple):
            todo.extend(node)
        elif (
            isinstance(node, msgspec.inspect.Type | msgspec.inspect.Field) and id(node) not in seen
        ):
            seen.add(id(node))
            todo.extend(getattr(node, name) for name in node.__struct_fields__)
    return False


_MAY_HOLD_FLOAT = (
    msgspec.inspect.FloatType,
    msgspec.inspect.AnyType,
    msgspec.inspect.CustomType,
    msgspec.inspect.ExtType,
)
#: The class a sequence annotation's value is tested against (any other: the generic walk).
_SEQUENCE_NAMES = {
    msgspec.inspect.ListType: "list",
    msgspec.inspect.VarTupleType: "tuple",
    msgspec.inspect.SetType: "set",
    msgspec.inspect.FrozenSetType: "frozenset",
}


#: What the compiled check follows field by field (an attrs class is a DataclassType).
_CLASS_TYPES = (msgspec.inspect.StructType, msgspec.inspect.DataclassType)


def _type_info(cls: type) -> msgspec.inspect.Type:
    """The description of ``cls`` by msgspec.inspect; a pydantic model's is built here.

    A model's fields are described by attribute name (what the check reads),
    excluded fields left out and computed fields added; a model that allows extra
    fields, or a type msgspec cannot describe, is ``Any`` (walked generically).
    """
    inspect = msgspec.inspect
    if not is_pydantic_model(cls):
        try:
            return inspect.type_info(cls)
        except Exception:  # a type msgspec cannot describe: walk every event generically
            return inspect.AnyType()
    model: Any = cls
    if model.model_config.get("extra") == "allow":
        return inspect.AnyType()
    annotations = [
        (name, field.annotation) for name, field in model.model_fields.items() if not field.exclude
    ]
    annotations += [(name, f.return_type) for name, f in model.model_computed_fields.items()]
    fields = []
    for name, annotation in annotations:
        try:
            info = inspect.type_info(annotation)
        except Exception:
            info = inspect.AnyType()
        fields.append(inspect.Field(name=name, encode_name=name, type=info))
    return inspect.DataclassType(cls=cls, fields=tuple(fields))


class _NonFinite(Exception):
    """Raised inside a compiled check: a value is not finite, or not of its annotated type."""


def _compile_finite_check(cls: type, content_type: str) -> Callable[[Any], None] | None:
    """Generate a function checking every float an event of ``cls`` holds, from its annotations.

    The generated code reads each float-holding field (through lists, tuples,
    sets, dicts' values, optional values and nested Structs, dataclasses, attrs
    classes and pydantic models of the exact annotated class) and tests it with
    ``math.isfinite``. A value it cannot follow (``Any``, a union, a subclass, a
    recursive type) is walked generically instead. Any surprise -- a value not of
    its annotated type, a non-finite float -- falls back to the generic walk of the
    whole event, which finds and names the culprit (or finds that there is none).
    """
    info = _type_info(cls)
    if not _can_hold_float(info):
        return None

    def explain(event: Any) -> None:
        found = _non_finite_path(_walk_form(event), "$")
        if found is not None:
            where, number = found
            raise SerializationError(
                f"cannot encode {cls.__qualname__} as {content_type}: {where} is "
                f"{number!r}, and JSON has no NaN or infinity (it would be written as null, "
                "which does not decode back as a float). Send a finite number, or None in "
                "an Optional field; or use codec='msgpack', which keeps them; or "
                "JsonCodec(allow_non_finite=True) to write null anyway."
            )

    names: dict[str, Any] = {
        "isfinite": math.isfinite,
        "float": float,
        "isinstance": isinstance,
        "type": type,
        "dict": dict,
        "NonFinite": _NonFinite,
        "list": list,
        "tuple": tuple,
        "set": set,
        "frozenset": frozenset,
        "generic_ok": _generic_ok,
        "explain": explain,
    }
    body: list[str] = []
    if isinstance(info, _CLASS_TYPES):  # the event: of exactly this class
        _emit_fields(info, "event", body, depth=2, names=names, open_={cls})
    else:
        _emit(info, "event", body, depth=2, names=names, open_=set())
    source = "\n".join(
        [
            "def check(event):",
            "    try:",
            *(body or ["        pass"]),
            "        return",
            "    except Exception:",
            "        pass",
            "    explain(event)",
        ]
    )
    exec(compile(source, f"<eventwire finite check of {cls.__qualname__}>", "exec"), names)
    check: Callable[[Any], None] = names["check"]
    return check


def _emit(
    info: object,
    expr: str,
    out: list[str],
    *,
    depth: int,
    names: dict[str, Any],
    open_: set[type],
) -> None:
    """Append the statements checking the value ``expr`` described by ``info`` to ``out``.

    A value the code follows is tested against its annotated class first; one of
    another class is walked generically (``generic_ok``).
    """
    inspect = msgspec.inspect
    pad = "    " * depth
    info = _followed(info)
    if not _can_hold_float(info):
        return
    if isinstance(info, inspect.FloatType):
        out.append(f"{pad}if not isfinite({expr}): raise NonFinite")
        return
    # A plain name (a loop variable) is used as it is; an attribute is read once.
    var = expr if expr.isidentifier() else _fresh("v", None, names)
    inner: list[str] = []
    if isinstance(info, _CLASS_TYPES) and info.cls not in open_:
        test = f"{var}.__class__ is {_fresh('C', info.cls, names)}"  # cheaper than type()
        open_.add(info.cls)
        _emit_fields(info, var, inner, depth=depth + 1, names=names, open_=open_)
        open_.discard(info.cls)
    elif isinstance(
        info, inspect.ListType | inspect.VarTupleType | inspect.SetType | inspect.FrozenSetType
    ):
        test = f"{var}.__class__ is {_SEQUENCE_NAMES[type(info)]}"
        _emit_loop(info.item_type, var, "", inner, depth=depth + 1, names=names, open_=open_)
    elif isinstance(info, inspect.DictType):
        test = f"{var}.__class__ is dict"
        _emit_loop(
            info.value_type, var, ".values()", inner, depth=depth + 1, names=names, open_=open_
        )
    elif isinstance(info, inspect.UnionType) and all(
        isinstance(t, inspect.FloatType) or not _can_hold_float(t) for t in info.types
    ):  # e.g. float | None, int | float: test a float, skip the rest
        if var != expr:
            out.append(f"{pad}{var} = {expr}")
        out.append(f"{pad}if isinstance({var}, float) and not isfinite({var}): raise NonFinite")
        return
    elif (
        isinstance(info, inspect.UnionType)
        and len(info.types) == 2
        and any(isinstance(t, inspect.NoneType) for t in info.types)
    ):
        [other] = [t for t in info.types if not isinstance(t, inspect.NoneType)]
        if var != expr:
            out.append(f"{pad}{var} = {expr}")
        out.append(f"{pad}if {var} is not None:")
        _emit(other, var, inner, depth=depth + 1, names=names, open_=open_)
        out.extend(inner or [f"{pad}    pass"])
        return
    else:  # Any, other unions, recursive Structs ...: walk the value
        out.append(f"{pad}if not generic_ok({expr}): raise NonFinite")
        return
    if var != expr:
        out.append(f"{pad}{var} = {expr}")
    out.append(f"{pad}if {test}:")
    out.extend(inner or [f"{pad}    pass"])
    out.append(f"{pad}elif not generic_ok({var}): raise NonFinite")


def _emit_loop(
    item_type: object,
    var: str,
    method: str,
    out: list[str],
    *,
    depth: int,
    names: dict[str, Any],
    open_: set[type],
) -> None:
    """Append a loop over ``var`` checking each item, unless no item can hold a float.

    An item type may look like it holds floats and not (a pydantic model is a
    ``CustomType`` until it is described): a loop with nothing to check is left out.
    """
    item = _fresh("i", None, names)
    body: list[str] = []
    _emit(item_type, item, body, depth=depth + 1, names=names, open_=open_)
    if body:
        out.append(f"{'    ' * depth}for {item} in {var}{method}:")
        out.extend(body)


def _followed(info: object) -> object:
    """``info`` without its constraints; a pydantic model's own description for one."""
    if isinstance(info, msgspec.inspect.Metadata):
        info = info.type
    if isinstance(info, msgspec.inspect.CustomType) and is_pydantic_model(info.cls):
        return _type_info(info.cls)
    return info


def _emit_fields(
    info: msgspec.inspect.StructType | msgspec.inspect.DataclassType,
    var: str,
    out: list[str],
    *,
    depth: int,
    names: dict[str, Any],
    open_: set[type],
) -> None:
    """Append the checks of the fields of the event ``var`` (of exactly ``info.cls``)."""
    for field in info.fields:
        name = field.name
        if name.isidentifier() and not keyword.iskeyword(name):
            _emit(field.type, f"{var}.{name}", out, depth=depth, names=names, open_=open_)
        elif _can_hold_float(field.type):
            out.append(
                f"{'    ' * depth}if not generic_ok(getattr({var}, {name!r})): raise NonFinite"
            )


def _fresh(prefix: str, value: object, names: dict[str, Any]) -> str:
    """A new name in the generated code's namespace, bound to ``value``."""
    name = f"{prefix}{len(names)}"
    names[name] = value
    return name


def _generic_ok(value: object) -> bool:
    """True unless ``value`` holds a NaN or an infinity anywhere (the slow, general walk)."""
    return _non_finite_path(_walk_form(value), "$") is None


def _walk_form(value: object) -> Any:
    """``value`` as builtins with every float kept as it is, for the generic walk."""
    if is_pydantic_model(type(value)):
        return value.model_dump(mode="python", by_alias=True)  # type: ignore[attr-defined]
    return msgspec.to_builtins(value)


def _non_finite_path(value: object, path: str) -> tuple[str, float] | None:
    """The JSON path and value of the first NaN or infinity in ``value`` (builtins)."""
    if isinstance(value, float):
        return None if math.isfinite(value) else (path, value)
    if isinstance(value, dict):  # (a float key is written as text: "nan", "inf")
        for key, item in value.items():
            found = _non_finite_path(item, f"{path}.{key}")
            if found is not None:
                return found
    elif isinstance(value, list | tuple | set | frozenset):
        for n, item in enumerate(value):
            found = _non_finite_path(item, f"{path}[{n}]")
            if found is not None:
                return found
    return None


def decode_value(codec: Codec | TopicCodec, data: bytes, type: type[T], topic: str) -> T:
    """Decode ``data`` read from ``topic`` as ``type`` with either kind of codec."""
    if isinstance(codec, TopicCodec):
        return codec.decode_from(data, type, SerializationContext(topic))
    return codec.decode(data, type)


def resolve_codec(codec: Codec | TopicCodec | str) -> Codec | TopicCodec:
    """Return a codec instance for ``"json"``, ``"msgpack"`` or a Codec object.

    ``"json"`` is ``JsonCodec()``: it refuses NaN and infinities (see :class:`JsonCodec`).
    """
    if isinstance(codec, str):
        factory = _NAMED.get(codec)
        if factory is None:
            raise ConfigurationError(
                f"codec {codec!r} is unknown: use 'json', 'msgpack' or a Codec instance"
            )
        return factory()
    if not isinstance(codec, Codec | TopicCodec):
        raise ConfigurationError(
            f"codec must be 'json', 'msgpack', a Codec (content_type, encode, decode) or "
            f"a TopicCodec (content_type, encode_for, decode_from), got {type(codec).__name__}"
        )
    return codec
