"""The compatibility checker held to the codecs: what it calls compatible really decodes.

Hypothesis draws an old event type from a small grammar (int, float, str, bool, UUID,
datetimes, Literals, Enums, bounded ints, Optional, lists, dicts, int-keyed dicts, nested
Structs; fields with and without defaults, renamed on the wire, ``forbid_unknown_fields``,
``omit_defaults``), a new one by mutating it, and instances of the writer's type. For
BACKWARD (the new type reads old events) and FORWARD (the old type reads new events):
whenever the checker -- run on an exported AsyncAPI document, as ``eventwire schema
check`` runs it -- reports no break, every event written as one version
(``msgspec.json.encode``) decodes as the other (``msgspec.json.decode(type=...)``).
Equivalently: a decode failure means the checker reported a break.

The same grammar builds pydantic v2 models (``Field(alias=...)`` for the wire names,
``extra="forbid"``, ``populate_by_name``, strict mode, ``AwareDatetime``,
``Field(ge=0)``), and the
second property holds the checker to pydantic: each version is a Struct or a model
(at least one a model), events are written and read by eventwire's ``JsonCodec``
(pydantic's serializer by alias, ``model_validate_json``), and whenever the checker
reports no break, every event written as one version validates as the other.

``make test`` runs ``EVENTWIRE_CONTRACT_EXAMPLES`` (default 300) examples.
"""

from __future__ import annotations

import datetime
import enum
import itertools
import json
import os
import uuid
from typing import Annotated, Any, Literal

import msgspec
import pydantic
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from eventwire import JsonCodec, SerializationError
from eventwire import event as route_event
from eventwire.contracts import build_asyncapi, check_compatible

EXAMPLES = int(os.environ.get("EVENTWIRE_CONTRACT_EXAMPLES", "300"))

# A type is a small tree: ("int",), ("opt", T), ("list", T), ("dict", T), ("intdict", T),
# ("struct", FIELDS); FIELDS is a tuple of (name, wire_name, T, has_default).
LEAVES = [
    ("int",),
    ("uint",),
    ("float",),
    ("str",),
    ("bool",),
    ("uuid",),
    ("datetime",),
    ("awaredatetime",),
    ("lit_ab",),
    ("lit_abc",),
    ("lit_12",),
    ("enum_ab",),
    ("enum_abc",),
]
NAMES = ["a", "b", "c", "d"]

_counter = itertools.count()


class AB(enum.Enum):
    A = "a"
    B = "b"


class ABC(enum.Enum):
    A = "a"
    B = "b"
    C = "c"


_LEAF_TYPES: dict[str, Any] = {
    "int": int,
    "uint": Annotated[int, msgspec.Meta(ge=0)],
    "float": float,
    "str": str,
    "bool": bool,
    "uuid": uuid.UUID,
    "datetime": datetime.datetime,
    "awaredatetime": Annotated[datetime.datetime, msgspec.Meta(tz=True)],
    "lit_ab": Literal["a", "b"],
    "lit_abc": Literal["a", "b", "c"],
    "lit_12": Literal[1, 2],
    "enum_ab": AB,
    "enum_abc": ABC,
}

_naive = st.datetimes(
    min_value=datetime.datetime(2000, 1, 1), max_value=datetime.datetime(2100, 1, 1)
)
_LEAF_VALUES: dict[str, st.SearchStrategy[Any]] = {
    "int": st.integers(-(2**40), 2**40),
    "uint": st.integers(0, 2**40),
    "float": st.floats(allow_nan=False, allow_infinity=False, width=64),
    "str": st.text(max_size=4),
    "bool": st.booleans(),
    "uuid": st.uuids(),
    "datetime": st.one_of(_naive, _naive.map(lambda d: d.replace(tzinfo=datetime.UTC))),
    "awaredatetime": _naive.map(lambda d: d.replace(tzinfo=datetime.UTC)),
    "lit_ab": st.sampled_from(["a", "b"]),
    "lit_abc": st.sampled_from(["a", "b", "c"]),
    "lit_12": st.sampled_from([1, 2]),
    "enum_ab": st.sampled_from(["a", "b"]),
    "enum_abc": st.sampled_from(["a", "b", "c"]),
}


def types(depth: int = 0) -> st.SearchStrategy[tuple[Any, ...]]:
    leaves = st.sampled_from(LEAVES)
    if depth >= 2:
        return leaves
    inner = st.deferred(lambda: types(depth + 1))
    return st.one_of(
        leaves,
        inner.map(lambda t: ("opt", t)),
        inner.map(lambda t: ("list", t)),
        inner.map(lambda t: ("dict", t)),
        inner.map(lambda t: ("intdict", t)),
        fields(depth + 1).map(lambda f: ("struct", f)),
    )


def fields(depth: int = 0) -> st.SearchStrategy[tuple[tuple[Any, ...], ...]]:
    one = st.tuples(st.sampled_from(NAMES), st.sampled_from([None, "x", "y"]), types(depth))
    return st.lists(one, min_size=0, max_size=4, unique_by=lambda f: f[0]).flatmap(
        lambda items: st.tuples(
            *(st.tuples(st.just(n), st.just(w), st.just(t), st.booleans()) for n, w, t in items)
        )
    )


def mutate_type(t: tuple[Any, ...]) -> st.SearchStrategy[tuple[Any, ...]]:
    options: list[st.SearchStrategy[tuple[Any, ...]]] = [st.just(t), st.just(t), types(1)]
    if t[0] == "opt":
        options.append(st.just(t[1]))
    else:
        options.append(st.just(("opt", t)))
    if t[0] in {"list", "dict", "intdict", "opt"}:
        options.append(mutate_type(t[1]).map(lambda inner: (t[0], inner)))
        options.append(st.just(("dict" if t[0] == "intdict" else "intdict", t[1])))
    if t[0] == "struct":
        options.append(mutate_fields(t[1]).map(lambda f: ("struct", f)))
    swaps = {"int": "float", "float": "int", "uint": "int", "lit_ab": "lit_abc"}
    swaps |= {"lit_abc": "lit_ab", "str": "uuid", "uuid": "str"}
    swaps |= {"datetime": "awaredatetime", "awaredatetime": "datetime", "lit_12": "int"}
    swaps |= {"enum_ab": "enum_abc", "enum_abc": "lit_ab"}
    if t[0] in swaps:
        options.append(st.just((swaps[t[0]],)))
    return st.one_of(options)


def mutate_fields(
    old: tuple[tuple[Any, ...], ...],
) -> st.SearchStrategy[tuple[tuple[Any, ...], ...]]:
    def one(field: tuple[Any, ...]) -> st.SearchStrategy[tuple[Any, ...] | None]:
        name, wire, t, has_default = field
        return st.one_of(
            st.just(field),
            st.just(field),
            st.just(None),  # removed
            st.just((name, wire, t, not has_default)),
            st.just((name, None if wire else "x", t, has_default)),  # renamed on the wire
            mutate_type(t).map(lambda new: (name, wire, new, has_default)),
        )

    kept = st.tuples(*(one(f) for f in old)).map(lambda fs: tuple(f for f in fs if f))
    added = fields(1)
    return st.tuples(kept, added).map(
        lambda pair: pair[0] + tuple(f for f in pair[1] if f[0] not in {g[0] for g in pair[0]})
    )


def build(t: tuple[Any, ...], opts: dict[str, bool]) -> Any:
    kind = t[0]
    if kind in _LEAF_TYPES:
        return _LEAF_TYPES[kind]
    if kind == "opt":
        return build(t[1], opts) | None
    if kind == "list":
        return list[build(t[1], opts)]
    if kind == "dict":
        return dict[str, build(t[1], opts)]
    if kind == "intdict":
        return dict[int, build(t[1], opts)]
    return build_struct(t[1], opts, f"N{next(_counter)}")


def default_for(t: tuple[Any, ...]) -> Any:
    return {
        "int": 0,
        "uint": 1,
        "float": 0.5,
        "str": "",
        "bool": False,
        "uuid": uuid.UUID(int=1),
        "datetime": datetime.datetime(2020, 1, 1),
        "awaredatetime": datetime.datetime(2020, 1, 1, tzinfo=datetime.UTC),
        "lit_ab": "a",
        "lit_abc": "c",
        "lit_12": 2,
        "enum_ab": AB.B,
        "enum_abc": ABC.C,
        "opt": None,
        "list": msgspec.field(default_factory=list),
        "dict": msgspec.field(default_factory=dict),
        "intdict": msgspec.field(default_factory=dict),
    }.get(t[0], msgspec.UNSET)


def build_struct(
    field_specs: tuple[tuple[Any, ...], ...], opts: dict[str, bool], name: str
) -> type[msgspec.Struct]:
    specs: list[Any] = []
    rename: dict[str, str] = {}
    for fname, wire, t, has_default in field_specs:
        typ = build(t, opts)
        default = default_for(t) if has_default else msgspec.UNSET
        specs.append((fname, typ) if default is msgspec.UNSET else (fname, typ, default))
        if wire:
            rename[fname] = f"{fname}_{wire}"
    return msgspec.defstruct(
        name,
        specs,
        kw_only=True,
        rename=rename or None,
        forbid_unknown_fields=opts["forbid"],
        omit_defaults=opts["omit"],
        module=__name__,
    )


def instances(cls: type[msgspec.Struct]) -> st.SearchStrategy[Any]:
    """Instances of a built Struct, from its type annotations (fields with defaults may be left out)."""
    info = msgspec.inspect.type_info(cls)
    assert isinstance(info, msgspec.inspect.StructType)
    parts = {}
    optional = {}
    for field in info.fields:
        strategy = value_of(field.type)
        if field.required:
            parts[field.name] = strategy
        else:
            optional[field.name] = strategy
    return st.fixed_dictionaries(parts, optional=optional).map(lambda kw: cls(**kw))


def value_of(info: Any) -> st.SearchStrategy[Any]:
    mi = msgspec.inspect
    if isinstance(info, mi.Metadata):
        return value_of(info.type)
    if isinstance(info, mi.IntType):
        return _LEAF_VALUES["int" if info.ge is None else "uint"]
    if isinstance(info, mi.FloatType):
        return _LEAF_VALUES["float"]
    if isinstance(info, mi.StrType):
        return _LEAF_VALUES["str"]
    if isinstance(info, mi.BoolType):
        return _LEAF_VALUES["bool"]
    if isinstance(info, mi.UUIDType):
        return _LEAF_VALUES["uuid"]
    if isinstance(info, mi.DateTimeType):
        return _LEAF_VALUES["datetime" if info.tz is None else "awaredatetime"]
    if isinstance(info, mi.LiteralType):
        return st.sampled_from(list(info.values))
    if isinstance(info, mi.EnumType):
        return st.sampled_from(list(info.cls))
    if isinstance(info, mi.UnionType):
        return st.one_of([value_of(t) for t in info.types])
    if isinstance(info, mi.NoneType):
        return st.none()
    if isinstance(info, mi.ListType):
        return st.lists(value_of(info.item_type), max_size=3)
    if isinstance(info, mi.DictType):
        keys = (
            st.integers(-99, 99) if isinstance(info.key_type, mi.IntType) else st.text(max_size=3)
        )
        return st.dictionaries(keys, value_of(info.value_type), max_size=3)
    if isinstance(info, mi.StructType):
        return instances(info.cls)
    raise AssertionError(info)


def make_event(field_specs: tuple[tuple[Any, ...], ...], opts: dict[str, bool]) -> type:
    cls = build_struct(field_specs, opts, f"E{next(_counter)}")
    return route_event(topic="t", key=None, type_name="T")(cls)


OPTIONS = st.fixed_dictionaries({"forbid": st.booleans(), "omit": st.booleans()})
#: pydantic models also vary strict mode (``ConfigDict(strict=True)``); Structs ignore it.
PYDANTIC_OPTIONS = st.fixed_dictionaries(
    {"forbid": st.booleans(), "omit": st.booleans(), "strict": st.booleans()}
)


@pytest.mark.slow
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    print_blob=True,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.filter_too_much,
    ],
)
@given(data=st.data())
def test_what_the_checker_calls_compatible_decodes(data: st.DataObject) -> None:
    """For BACKWARD and FORWARD: no break reported => every event written with one version
    decodes with the other (msgspec JSON); a decode failure => a break was reported."""
    old_fields = data.draw(fields(), label="old fields")
    new_fields = data.draw(mutate_fields(old_fields), label="new fields")
    old_opts = data.draw(OPTIONS, label="old options")
    new_opts = data.draw(OPTIONS, label="new options")
    old_cls = make_event(old_fields, old_opts)
    new_cls = make_event(new_fields, new_opts)
    # the old contract as `schema check` reads it: an exported document, through JSON text
    old_doc = json.loads(json.dumps(build_asyncapi([old_cls])))
    for mode, writer, reader in (("BACKWARD", old_cls, new_cls), ("FORWARD", new_cls, old_cls)):
        breaks = check_compatible(old_doc, [new_cls], mode)
        event(f"{mode} {'break' if breaks else 'compatible'}")
        if breaks:
            continue
        written = data.draw(st.lists(instances(writer), min_size=1, max_size=4), label=mode)
        for item in written:
            encoded = msgspec.json.encode(item)
            try:
                msgspec.json.decode(encoded, type=reader)
            except msgspec.ValidationError as exc:
                pytest.fail(
                    f"{mode}: the checker found no break, but {encoded!r} written as the "
                    f"{'old' if writer is old_cls else 'new'} version does not decode as the "
                    f"other: {exc}"
                )


@settings(
    max_examples=max(EXAMPLES // 3, 20),
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
@given(field_specs=fields(), opts=OPTIONS)
def test_an_unchanged_type_is_fully_compatible(
    field_specs: tuple[tuple[Any, ...], ...], opts: dict[str, bool]
) -> None:
    """The same definition, exported and checked again, has no break in FULL_TRANSITIVE."""
    old_doc = build_asyncapi([make_event(field_specs, opts)])
    assert (
        check_compatible([old_doc, old_doc], [make_event(field_specs, opts)], "FULL_TRANSITIVE")
        == []
    )


# -- pydantic ------------------------------------------------------------------------------

_PYDANTIC_LEAVES: dict[str, Any] = {
    **_LEAF_TYPES,
    "uint": Annotated[int, pydantic.Field(ge=0)],
    "awaredatetime": pydantic.AwareDatetime,
}


def build_for(t: tuple[Any, ...], opts: dict[str, bool], shape: str) -> Any:
    """The annotation of ``t`` in ``shape`` ("struct": msgspec, "pydantic": models)."""
    if shape == "struct":
        return build(t, opts)
    kind = t[0]
    if kind in _PYDANTIC_LEAVES:
        return _PYDANTIC_LEAVES[kind]
    if kind == "opt":
        return build_for(t[1], opts, shape) | None
    if kind == "list":
        return list[build_for(t[1], opts, shape)]  # type: ignore[misc]
    if kind == "dict":
        return dict[str, build_for(t[1], opts, shape)]  # type: ignore[misc]
    if kind == "intdict":
        return dict[int, build_for(t[1], opts, shape)]  # type: ignore[misc]
    return build_model(t[1], opts, f"P{next(_counter)}")


def build_model(
    field_specs: tuple[tuple[Any, ...], ...], opts: dict[str, bool], name: str
) -> type[pydantic.BaseModel]:
    """A pydantic model of the fields: a wire name is the field's alias."""
    definitions: dict[str, Any] = {}
    for fname, wire, t, has_default in field_specs:
        typ = build_for(t, opts, "pydantic")
        kwargs: dict[str, Any] = {}
        if wire:
            kwargs["alias"] = f"{fname}_{wire}"
        if has_default:
            default = default_for(t)
            if isinstance(default, msgspec.structs.FieldInfo) or t[0] in {
                "list",
                "dict",
                "intdict",
            }:
                kwargs["default_factory"] = list if t[0] == "list" else dict
            elif default is not msgspec.UNSET:
                kwargs["default"] = default
        definitions[fname] = (typ, pydantic.Field(**kwargs))
    config = pydantic.ConfigDict(
        extra="forbid" if opts["forbid"] else "ignore",
        populate_by_name=opts["omit"],
        strict=opts.get("strict", False),
    )
    return pydantic.create_model(name, __config__=config, __module__=__name__, **definitions)


def spec_values(t: tuple[Any, ...]) -> st.SearchStrategy[Any]:
    """Values of ``t`` as Python objects, a struct as a dict by wire name (defaulted fields may
    be left out): what both msgspec.convert and model_validate build an instance from."""
    kind = t[0]
    if kind in _LEAF_VALUES:
        return _LEAF_VALUES[kind]
    if kind == "opt":
        return st.one_of(st.none(), spec_values(t[1]))
    if kind == "list":
        return st.lists(spec_values(t[1]), max_size=3)
    if kind == "dict":
        return st.dictionaries(st.text(max_size=3), spec_values(t[1]), max_size=3)
    if kind == "intdict":
        return st.dictionaries(st.integers(-99, 99), spec_values(t[1]), max_size=3)
    required: dict[str, st.SearchStrategy[Any]] = {}
    optional: dict[str, st.SearchStrategy[Any]] = {}
    for fname, wire, ft, has_default in t[1]:
        key = f"{fname}_{wire}" if wire else fname
        may_omit = has_default and default_for(ft) is not msgspec.UNSET  # see build_struct
        (optional if may_omit else required)[key] = spec_values(ft)
    return st.fixed_dictionaries(required, optional=optional)


def make_shaped_event(
    field_specs: tuple[tuple[Any, ...], ...], opts: dict[str, bool], shape: str
) -> type:
    if shape == "struct":
        return make_event(field_specs, opts)
    cls = build_model(field_specs, opts, f"M{next(_counter)}")
    return route_event(topic="t", key=None, type_name="T")(cls)


def instance_of(cls: type, data: dict[str, Any]) -> Any:
    if issubclass(cls, pydantic.BaseModel):  # built leniently; read back as configured
        return cls.model_validate(data, strict=False)
    return msgspec.convert(data, cls)


SHAPE_PAIRS = st.sampled_from(
    [("pydantic", "pydantic"), ("struct", "pydantic"), ("pydantic", "struct")]
)


@pytest.mark.slow
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    print_blob=True,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.filter_too_much,
    ],
)
@given(data=st.data())
def test_what_the_checker_calls_compatible_validates_with_pydantic(data: st.DataObject) -> None:
    """pydantic models (old, new or both): for BACKWARD and FORWARD, no break reported =>
    every event written by one version (JsonCodec.encode: pydantic's serializer by alias)
    is read by the other (JsonCodec.decode: model_validate_json, or msgspec)."""
    old_fields = data.draw(fields(), label="old fields")
    new_fields = data.draw(mutate_fields(old_fields), label="new fields")
    old_opts = data.draw(PYDANTIC_OPTIONS, label="old options")
    new_opts = data.draw(PYDANTIC_OPTIONS, label="new options")
    old_shape, new_shape = data.draw(SHAPE_PAIRS, label="shapes (old, new)")
    old_cls = make_shaped_event(old_fields, old_opts, old_shape)
    new_cls = make_shaped_event(new_fields, new_opts, new_shape)
    codec = JsonCodec()
    old_doc = json.loads(json.dumps(build_asyncapi([old_cls])))
    for mode, writer, reader, spec in (
        ("BACKWARD", old_cls, new_cls, old_fields),
        ("FORWARD", new_cls, old_cls, new_fields),
    ):
        breaks = check_compatible(old_doc, [new_cls], mode)
        event(f"{old_shape}->{new_shape} {mode} {'break' if breaks else 'compatible'}")
        if breaks:
            continue
        written = data.draw(
            st.lists(spec_values(("struct", spec)), min_size=1, max_size=4), label=mode
        )
        for values in written:
            encoded = codec.encode(instance_of(writer, values))
            try:
                codec.decode(encoded, reader)
            except SerializationError as exc:
                pytest.fail(
                    f"{mode}: the checker found no break, but {encoded!r} written as the "
                    f"{'old' if writer is old_cls else 'new'} version ({writer.__name__}) does "
                    f"not decode as the other ({reader.__name__}): {exc}"
                )


@settings(
    max_examples=max(EXAMPLES // 3, 20),
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
@given(field_specs=fields(), opts=PYDANTIC_OPTIONS)
def test_an_unchanged_pydantic_model_is_fully_compatible(
    field_specs: tuple[tuple[Any, ...], ...], opts: dict[str, bool]
) -> None:
    """The same pydantic model, exported and checked again, has no break in FULL_TRANSITIVE."""
    old_doc = build_asyncapi([make_shaped_event(field_specs, opts, "pydantic")])
    new = make_shaped_event(field_specs, opts, "pydantic")
    assert check_compatible([old_doc, old_doc], [new], "FULL_TRANSITIVE") == []
