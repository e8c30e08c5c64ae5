"""The compatibility checker: each kind of change, the side it breaks, and the modes."""

from __future__ import annotations

import datetime
import enum
import uuid
from pathlib import Path
from typing import Annotated, Any, Literal

import msgspec
import pytest

from eventwire import event
from eventwire.contracts import (
    Break,
    ContractError,
    IncompatibleSchemaError,
    Mode,
    assert_compatible,
    build_asyncapi,
    check_compatible,
    dump_document,
    load_versions,
)


def ev(fields: list[Any], *, topic: str = "t", key: Any = None, **options: Any) -> type:
    """An event type `T` with these fields (kw_only: defaults anywhere)."""
    cls = msgspec.defstruct("E", fields, kw_only=True, **options)
    return event(topic=topic, key=key, type_name="T")(cls)


def sides(old: type, new: type) -> set[str]:
    """Which sides a change from ``old`` to ``new`` breaks (FULL: both directions)."""
    return {b.side for b in check_compatible(build_asyncapi([old]), [new], Mode.FULL)}


class Color(enum.Enum):
    RED = "red"
    GREEN = "green"


class Color2(enum.Enum):
    RED = "red"
    GREEN = "green"
    BLUE = "blue"


class Inner(msgspec.Struct):
    x: int


class InnerMore(msgspec.Struct):
    x: int
    y: int


class InnerOptional(msgspec.Struct):
    x: int
    y: int = 0


class Node(msgspec.Struct):
    name: str
    children: list[Node] = []


class A(msgspec.Struct, tag=True):
    a: int


class B(msgspec.Struct, tag=True):
    b: int


class C(msgspec.Struct, tag=True):
    c: int


UInt = Annotated[int, msgspec.Meta(ge=0)]
Short = Annotated[str, msgspec.Meta(max_length=3)]
Aware = Annotated[datetime.datetime, msgspec.Meta(tz=True)]

CASES = [
    # (description, old fields, new fields, broken sides)
    ("nothing changed", [("a", int)], [("a", int)], set()),
    ("field added without default", [("a", int)], [("a", int), ("b", str)], {"backward"}),
    ("field added with default", [("a", int)], [("a", int), ("b", str, "")], set()),
    ("field without default removed", [("a", int), ("b", str)], [("a", int)], {"forward"}),
    ("field with default removed", [("a", int), ("b", str, "")], [("a", int)], set()),
    ("default dropped", [("a", int, 0)], [("a", int)], {"backward"}),
    ("default added", [("a", int)], [("a", int, 0)], {"forward"}),
    ("int -> float (widening)", [("a", int)], [("a", float)], {"forward"}),
    ("float -> int", [("a", float)], [("a", int)], {"backward"}),
    ("int -> str", [("a", int)], [("a", str)], {"backward", "forward"}),
    ("T -> Optional[T]", [("a", int)], [("a", int | None)], {"forward"}),
    ("Optional[T] -> T", [("a", int | None)], [("a", int)], {"backward"}),
    ("Literal value added", [("a", Literal["x"])], [("a", Literal["x", "y"])], {"forward"}),
    ("Literal value removed", [("a", Literal["x", "y"])], [("a", Literal["x"])], {"backward"}),
    ("Enum value added", [("a", Color)], [("a", Color2)], {"forward"}),
    ("str -> Literal", [("a", str)], [("a", Literal["x"])], {"backward"}),
    ("Literal -> str", [("a", Literal["x"])], [("a", str)], {"forward"}),
    ("str -> UUID", [("a", str)], [("a", uuid.UUID)], {"backward"}),
    ("UUID -> str", [("a", uuid.UUID)], [("a", str)], {"forward"}),
    ("datetime -> aware datetime", [("a", datetime.datetime)], [("a", Aware)], {"backward"}),
    ("int -> int >= 0", [("a", int)], [("a", UInt)], {"backward"}),
    ("str -> str of <= 3", [("a", str)], [("a", Short)], {"backward"}),
    ("list[int] -> list[float]", [("a", list[int])], [("a", list[float])], {"forward"}),
    ("list -> tuple", [("a", list[int])], [("a", tuple[int, int])], {"backward"}),
    ("dict[str] -> dict[int]", [("a", dict[str, int])], [("a", dict[int, int])], {"backward"}),
    ("nested field added", [("a", Inner)], [("a", InnerMore)], {"backward"}),
    ("nested field added w/ default", [("a", Inner)], [("a", InnerOptional)], set()),
    ("union member added", [("a", A | B)], [("a", A | B | C)], {"forward"}),
    ("union member removed", [("a", A | B)], [("a", A)], {"backward"}),
    ("bytes -> str", [("a", bytes)], [("a", str)], {"forward"}),
]


@pytest.mark.parametrize(
    ("old", "new", "broken"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_a_change_breaks_the_side_whose_decoder_fails(
    old: list[Any], new: list[Any], broken: set[str]
) -> None:
    """Each change breaks exactly the sides msgspec's JSON decoder fails on (FULL mode)."""
    assert sides(ev(old), ev(new)) == broken


def test_a_rename_on_the_wire_is_a_removal_and_an_addition() -> None:
    """rename= changes the wire name: new consumers lack the old name, old ones the new."""
    old = ev([("order_id", str)])
    new = ev([("order_id", str)], rename="camel")
    breaks = check_compatible(build_asyncapi([old]), [new], "FULL")
    assert {(b.path, b.side) for b in breaks} == {
        ("$.orderId", "backward"),
        ("$.order_id", "forward"),
    }


def test_unknown_fields_are_ignored_unless_the_reader_forbids_them() -> None:
    """A field the reader does not know is ignored; with forbid_unknown_fields it breaks."""
    old = ev([("a", int), ("b", int, 0)])
    assert sides(old, ev([("a", int)])) == set()
    assert sides(old, ev([("a", int)], forbid_unknown_fields=True)) == {"backward"}


def test_recursive_types_are_compared_without_looping() -> None:
    """A self-referencing Struct is compared once per pair of types."""
    assert sides(ev([("root", Node)]), ev([("root", Node)])) == set()


def test_a_break_names_message_path_change_and_side() -> None:
    """A Break says where, what changed, why, and which consumers fail."""
    [found] = check_compatible(
        build_asyncapi([ev([("lines", list[Inner])])]),
        [ev([("lines", list[InnerMore])])],
        "BACKWARD",
    )
    assert isinstance(found, Break)
    assert (found.message, found.path, found.side) == ("T", "$.lines[].y", "backward")
    assert "required in the new schema" in found.change
    text = str(found)
    assert "consumers using the new schema cannot read events written with the old one" in text


class TestModes:
    def test_backward_and_forward_check_one_direction_full_both(self) -> None:
        """BACKWARD reports only backward breaks, FORWARD only forward ones, NONE nothing."""
        old_doc = build_asyncapi([ev([("a", int), ("b", int)])])
        new = [ev([("a", int), ("c", int)])]
        assert {b.side for b in check_compatible(old_doc, new, "BACKWARD")} == {"backward"}
        assert {b.side for b in check_compatible(old_doc, new, "FORWARD")} == {"forward"}
        assert {b.side for b in check_compatible(old_doc, new, "full")} == {"backward", "forward"}
        assert check_compatible(old_doc, new, Mode.NONE) == []

    def test_transitive_modes_check_every_earlier_version(self, tmp_path: Path) -> None:
        """v1 -> v2 -> v3 where v3 only breaks v1: BACKWARD (latest) passes,
        BACKWARD_TRANSITIVE names v1."""
        v1 = build_asyncapi([ev([("a", int)])], version="1")
        v2 = build_asyncapi([ev([("a", int), ("b", int, 0)])], version="2")
        v3 = [ev([("a", int), ("b", int)])]
        for name, doc in (("v1.yaml", v1), ("v2.yaml", v2)):
            dump_document(doc, tmp_path / name)
        assert check_compatible(tmp_path, v3, "BACKWARD") != []  # v2: b had a default
        latest_only = check_compatible(v1, [ev([("a", int), ("b", int, 0)])], "BACKWARD")
        assert latest_only == []
        breaks = check_compatible(tmp_path, v3, "BACKWARD_TRANSITIVE")
        assert {b.against for b in breaks} == {
            "1 (" + str(tmp_path / "v1.yaml") + ")",
            "2 (" + str(tmp_path / "v2.yaml") + ")",
        }

    def test_a_directory_is_read_in_natural_order(self, tmp_path: Path) -> None:
        """v2 comes before v10; non-transitive modes compare with the last one."""
        for n in (10, 2, 1):
            dump_document(
                build_asyncapi([ev([("a", int)])], version=str(n)), tmp_path / f"v{n}.yaml"
            )
        assert [label.split()[0] for label, _ in load_versions(tmp_path)] == ["1", "2", "10"]

    def test_an_unknown_mode_is_refused(self) -> None:
        """A mode that is not a Schema Registry mode is a ContractError listing them."""
        with pytest.raises(ContractError, match="BACKWARD_TRANSITIVE"):
            check_compatible(build_asyncapi([ev([("a", int)])]), [ev([("a", int)])], "SIDEWAYS")


class TestContract:
    def test_a_removed_message_breaks_backward(self) -> None:
        """Events of a type already written have no type once it is gone."""

        @event(topic="t", key=None, type_name="Other")
        class Other(msgspec.Struct):
            x: int

        old_doc = build_asyncapi([ev([("a", int)]), Other])
        [found] = check_compatible(old_doc, [ev([("a", int)])], "FULL")
        assert (found.message, found.side) == ("Other", "backward")
        assert check_compatible(old_doc, [ev([("a", int)])], "FORWARD") == []

    def test_a_topic_or_key_change_is_a_routing_break(self) -> None:
        """Moving an event type to another topic or key breaks consumers in every mode."""
        old_doc = build_asyncapi([ev([("a", str)], key="a")])
        moved = check_compatible(old_doc, [ev([("a", str)], topic="t2", key="a")], "FORWARD")
        assert [(b.side, b.change) for b in moved] == [("routing", "topic changed from t to t2")]
        rekeyed = check_compatible(old_doc, [ev([("a", str)], key=None)], "BACKWARD")
        assert [b.side for b in rekeyed] == ["routing"]
        assert "partition key changed from field 'a' to no key" in rekeyed[0].change


class TestAssertCompatible:
    def test_it_raises_an_assertion_error_listing_the_breaks(self) -> None:
        """assert_compatible raises IncompatibleSchemaError (an AssertionError) with each break."""
        old_doc = build_asyncapi([ev([("a", int)])])
        with pytest.raises(IncompatibleSchemaError) as info:
            assert_compatible(old_doc, [ev([("a", str)])], "BACKWARD")
        assert isinstance(info.value, AssertionError)
        assert len(info.value.breaks) == 1
        assert "1 BACKWARD incompatibilities" in str(info.value)
        assert "$.a: type changed: old integer, new string" in str(info.value)

    def test_it_passes_for_a_compatible_change_from_a_file(self, tmp_path: Path) -> None:
        """A file path works as the old contract, a document as the new one."""
        path = tmp_path / "asyncapi.yaml"
        dump_document(build_asyncapi([ev([("a", int)])]), path)
        assert_compatible(path, build_asyncapi([ev([("a", int), ("b", int, 1)])]), "FULL")
