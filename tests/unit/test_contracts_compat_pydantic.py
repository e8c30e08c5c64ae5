"""The compatibility checker on pydantic v2 models: each change, the side it breaks, and why.

Every expectation is also checked against pydantic itself: an event written by one
version (``JsonCodec``: pydantic's serializer by alias) is read by the other
(``model_validate_json``) exactly when the checker finds no break on that side.
"""

from __future__ import annotations

import datetime
import enum
import uuid
from typing import Any, Literal

import msgspec
import pydantic
import pytest

from eventwire import JsonCodec, SerializationError, event
from eventwire.contracts import Mode, build_asyncapi, check_compatible


def model(fields: dict[str, Any], **config: Any) -> type[pydantic.BaseModel]:
    """An event model ``T`` with these fields ({name: annotation or (annotation, Field)})."""
    definitions = {
        name: spec if isinstance(spec, tuple) else (spec, ...) for name, spec in fields.items()
    }
    cls = pydantic.create_model(
        "T", __config__=pydantic.ConfigDict(**config), __module__=__name__, **definitions
    )
    return event(topic="t", key=None, type_name="T")(cls)


def sides(old: type, new: type) -> set[str]:
    """Which sides a change from ``old`` to ``new`` breaks (FULL: both directions)."""
    return {b.side for b in check_compatible(build_asyncapi([old]), [new], Mode.FULL)}


def reads(writer: type, reader: type, values: dict[str, Any]) -> bool:
    """Whether the event ``writer(**values)``, written as JSON, is read by ``reader``."""
    codec = JsonCodec()
    written = codec.encode(
        writer.model_validate(values)
        if issubclass(writer, pydantic.BaseModel)
        else msgspec.convert(values, writer)
    )
    try:
        codec.decode(written, reader)
    except SerializationError:
        return False
    return True


class Color(enum.Enum):
    RED = "red"
    GREEN = "green"


class Color2(enum.Enum):
    RED = "red"
    GREEN = "green"
    BLUE = "blue"


class Inner(pydantic.BaseModel):
    x: int


class InnerMore(pydantic.BaseModel):
    x: int
    y: int


class InnerDefault(pydantic.BaseModel):
    x: int
    y: int = 0


NOW = datetime.datetime(2026, 12, 6, 9, 0)  # naive
CASES: list[tuple[str, dict[str, Any], dict[str, Any], dict[str, Any], set[str]]] = [
    # (description, old fields, new fields, an event of the old model, broken sides)
    ("nothing changed", {"a": int}, {"a": int}, {"a": 1}, set()),
    ("field added without default", {"a": int}, {"a": int, "b": str}, {"a": 1}, {"backward"}),
    ("field added with default", {"a": int}, {"a": int, "b": (str, "")}, {"a": 1}, set()),
    (
        "Optional field added without default (pydantic requires it)",
        {"a": int},
        {"a": int, "b": int | None},
        {"a": 1},
        {"backward"},
    ),
    (
        "Optional field added with default None",
        {"a": int},
        {"a": int, "b": (int | None, None)},
        {"a": 1},
        set(),
    ),
    ("field removed", {"a": int, "b": str}, {"a": int}, {"a": 1, "b": "x"}, {"forward"}),
    (
        "default dropped (pydantic writes defaults: still read)",
        {"a": (int, 0)},
        {"a": int},
        {},
        set(),
    ),
    ("int -> float", {"a": int}, {"a": float}, {"a": 1}, {"forward"}),
    ("int -> str", {"a": int}, {"a": str}, {"a": 1}, {"backward", "forward"}),
    ("T -> Optional[T]", {"a": int}, {"a": int | None}, {"a": 1}, {"forward"}),
    ("Literal widened", {"a": Literal["x"]}, {"a": Literal["x", "y"]}, {"a": "x"}, {"forward"}),
    ("Literal narrowed", {"a": Literal["x", "y"]}, {"a": Literal["x"]}, {"a": "y"}, {"backward"}),
    ("Enum widened", {"a": Color}, {"a": Color2}, {"a": "red"}, {"forward"}),
    ("str -> UUID", {"a": str}, {"a": uuid.UUID}, {"a": "x"}, {"backward"}),
    (
        "datetime -> AwareDatetime",
        {"a": datetime.datetime},
        {"a": pydantic.AwareDatetime},
        {"a": NOW},
        {"backward"},
    ),
    (
        "datetime -> NaiveDatetime",
        {"a": datetime.datetime},
        {"a": pydantic.NaiveDatetime},
        {"a": NOW.replace(tzinfo=datetime.UTC)},
        {"backward"},
    ),
    (
        "int -> int >= 0",
        {"a": int},
        {"a": (int, pydantic.Field(ge=0))},
        {"a": -1},
        {"backward"},
    ),
    (
        "dict[str] -> dict[int]",
        {"a": dict[str, int]},
        {"a": dict[int, int]},
        {"a": {"x": 1}},
        {"backward"},
    ),
    ("list[int] -> list[float]", {"a": list[int]}, {"a": list[float]}, {"a": [1]}, {"forward"}),
    ("nested field added", {"a": Inner}, {"a": InnerMore}, {"a": {"x": 1}}, {"backward"}),
    ("nested field added w/ default", {"a": Inner}, {"a": InnerDefault}, {"a": {"x": 1}}, set()),
    (
        "alias changed",
        {"a": (int, pydantic.Field(alias="A"))},
        {"a": (int, pydantic.Field(alias="B"))},
        {"A": 1},
        {"backward", "forward"},
    ),
    (
        "alias changed, old name still read (AliasChoices)",
        {"a": (int, pydantic.Field(alias="A"))},
        {
            "a": (
                int,
                pydantic.Field(
                    validation_alias=pydantic.AliasChoices("B", "A"), serialization_alias="B"
                ),
            )
        },
        {"A": 1},
        {"forward"},
    ),
]


@pytest.mark.parametrize(
    ("old", "new", "values", "broken"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_a_change_breaks_the_side_whose_pydantic_validator_fails(
    old: dict[str, Any], new: dict[str, Any], values: dict[str, Any], broken: set[str]
) -> None:
    """Each change to a pydantic model breaks exactly the sides pydantic refuses (FULL mode);
    when BACKWARD breaks, the given old event is refused by the new model indeed."""
    old_cls, new_cls = model(old), model(new)
    assert sides(old_cls, new_cls) == broken
    assert reads(old_cls, new_cls, values) is ("backward" not in broken)


def test_populate_by_name_reads_the_attribute_name_too() -> None:
    """A model that also reads fields by name (populate_by_name) reads old events written
    under the name after the field gets an alias: BACKWARD holds, FORWARD does not."""
    old_cls = model({"order_id": str})
    new_cls = model({"order_id": (str, pydantic.Field(alias="orderId"))}, populate_by_name=True)
    assert sides(old_cls, new_cls) == {"forward"}
    assert reads(old_cls, new_cls, {"order_id": "o-1"})
    assert not reads(new_cls, old_cls, {"orderId": "o-1"})


def test_extra_forbid_refuses_a_field_it_does_not_know() -> None:
    """extra="forbid" on the old model: a field added with a default breaks FORWARD."""
    old_cls = model({"a": int}, extra="forbid")
    new_cls = model({"a": int, "b": (str, "")}, extra="forbid")
    breaks = check_compatible(build_asyncapi([old_cls]), [new_cls], "FULL")
    assert [(b.path, b.side) for b in breaks] == [("$.b", "forward")]
    assert 'extra="forbid"' in str(breaks[0])
    assert not reads(new_cls, old_cls, {"a": 1, "b": "x"})


def test_a_computed_field_is_written_but_not_read() -> None:
    """A computed field is in what pydantic writes (readOnly) and never required of a writer;
    with extra="forbid" the model refuses its own events: reported even when unchanged."""

    @event(topic="t", key=None, type_name="T")
    class Plain(pydantic.BaseModel):
        a: int

        @pydantic.computed_field  # type: ignore[prop-decorator]
        @property
        def double(self) -> int:
            return 2 * self.a

    @event(topic="t", key=None, type_name="T")
    class Strict(pydantic.BaseModel):
        model_config = pydantic.ConfigDict(extra="forbid")
        a: int

        @pydantic.computed_field  # type: ignore[prop-decorator]
        @property
        def double(self) -> int:
            return 2 * self.a

    assert check_compatible(build_asyncapi([Plain]), [Plain], "FULL") == []
    breaks = check_compatible(build_asyncapi([Strict]), [Strict], "FULL")
    assert {(b.path, b.side) for b in breaks} == {("$.double", "backward"), ("$.double", "forward")}
    assert not reads(Strict, Strict, {"a": 1})


def test_a_struct_migrated_to_pydantic_with_the_same_wire_is_fully_compatible() -> None:
    """A msgspec Struct replaced by a pydantic model writing the same JSON: FULL holds."""

    @event(topic="t", key=None, type_name="T")
    class Before(msgspec.Struct, rename="camel"):
        order_id: str
        placed_at: datetime.datetime
        note: str | None = None

    class After(pydantic.BaseModel):
        order_id: str = pydantic.Field(alias="orderId")
        placed_at: datetime.datetime = pydantic.Field(alias="placedAt")
        note: str | None = None

    after = event(topic="t", key=None, type_name="T")(After)
    assert check_compatible(build_asyncapi([Before]), [after], "FULL") == []
    values = {"orderId": "o-1", "placedAt": NOW}
    assert reads(Before, after, values) and reads(after, Before, values)


def test_a_msgspec_writer_that_omits_defaults_breaks_a_pydantic_reader_that_requires_them() -> None:
    """pydantic writes every field; msgspec with omit_defaults=True does not: dropping the
    default in the new model breaks BACKWARD only when the old writer is such a Struct."""

    @event(topic="t", key=None, type_name="T")
    class Omitting(msgspec.Struct, omit_defaults=True):
        a: int = 0

    required = model({"a": int})
    assert sides(Omitting, required) == {"backward"}
    assert not reads(Omitting, required, {})
    assert sides(model({"a": (int, 0)}), required) == set()
