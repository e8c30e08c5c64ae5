"""Compatibility of event contracts, with the meaning Confluent's Schema Registry gives the modes.

* ``BACKWARD``: consumers using the new schema can read events written with the old one.
* ``FORWARD``: consumers still using the old schema can read events written with the new one.
* ``FULL``: both. ``NONE``: no check.
* ``*_TRANSITIVE``: the same against every earlier version, not just the latest.

"Can read" means what eventwire's codecs do: ``msgspec.json.decode(data, type=Event)``
(strict mode, the default). The checker compares the JSON Schemas of an AsyncAPI
document written by :func:`eventwire.contracts.build_asyncapi` (the old contract) with
those of the current event types, asking for each message whether every value the
*writer's* schema allows is decoded by the *reader's* type:

* a field the reader requires (no default) must be required by the writer too: a field
  added without a default breaks BACKWARD, a field removed (or given a default) breaks
  FORWARD when the old consumers required it;
* a field the reader does not know is ignored -- unless the reader forbids unknown
  fields (``forbid_unknown_fields=True``, ``additionalProperties: false``);
* a renamed field (``rename=``) is a field removed and another added: names are compared
  as they are on the wire;
* types: an integer is read into a float (or a Decimal), never the reverse; a string of
  a format (uuid, date, datetime with offset, base64 bytes, decimal ...) is read into a
  plain ``str`` but not into another format; ``null`` needs an ``Optional`` reader; a
  ``Literal``/``Enum`` reader must list every value the writer may send; numeric bounds
  and lengths (``msgspec.Meta``) must not tighten; lists, tuples, dicts, nested Structs
  and tagged unions are compared item by item, key by key, tag by tag.

For a pydantic model (a message marked ``x-eventwire-shape: pydantic``), "can read"
means ``Model.model_validate_json`` (what eventwire's codecs call): its schema is
pydantic's serialization JSON Schema by alias, annotated by the export
(:mod:`eventwire.contracts._pydantic`). As a writer, a model writes every field, defaults
and computed fields included; as a reader, it does not read computed fields
(``readOnly``: an ``extra="forbid"`` model refuses them), reads a field from the names
``x-eventwire-read-as`` lists (``AliasChoices``, ``validation_alias``,
``populate_by_name``), ignores unknown fields unless ``extra="forbid"``
(``additionalProperties: false``), and requires every field without a default, even an
``Optional`` one. pydantic's lax conversions (``"1"`` into an ``int`` ...) are not
counted on: where only they would make a change readable, it is reported. Validators
(``field_validator``...) are code, which no schema shows.

The writer of a Struct is taken to write only its own fields (msgspec never writes
others), and a field that has a default may be absent (``omit_defaults=True``). Where a
schema cannot say (a hand-written document, an unknown keyword) the checker errs on the
side of reporting a break. A message that disappeared breaks BACKWARD (events of it
already in the topic have no type any more); a topic or key change is reported in every
mode but ``NONE`` (consumers would miss the events, or lose their per-key order).
"""

from __future__ import annotations

import enum
import math
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

from eventwire._event import Route
from eventwire.contracts._collect import ContractError, RoutedType
from eventwire.contracts._pydantic import READ_AS
from eventwire.contracts.asyncapi import SHAPE, build_asyncapi, check_document, load_document

__all__ = [
    "Break",
    "IncompatibleSchemaError",
    "Mode",
    "assert_compatible",
    "check_compatible",
    "load_versions",
]


class Mode(enum.StrEnum):
    """A compatibility mode, as Confluent's Schema Registry defines them."""

    NONE = "NONE"
    BACKWARD = "BACKWARD"
    BACKWARD_TRANSITIVE = "BACKWARD_TRANSITIVE"
    FORWARD = "FORWARD"
    FORWARD_TRANSITIVE = "FORWARD_TRANSITIVE"
    FULL = "FULL"
    FULL_TRANSITIVE = "FULL_TRANSITIVE"

    @property
    def transitive(self) -> bool:
        """Whether the mode checks against every earlier version."""
        return self.value.endswith("_TRANSITIVE")

    @property
    def backward(self) -> bool:
        """Whether new consumers must read old events."""
        return self.value.startswith(("BACKWARD", "FULL"))

    @property
    def forward(self) -> bool:
        """Whether old consumers must read new events."""
        return self.value.startswith(("FORWARD", "FULL"))


_SIDES = {
    "backward": "consumers using the new schema cannot read events written with the old one "
    "(BACKWARD)",
    "forward": "consumers still using the old schema cannot read events written with the "
    "new one (FORWARD)",
    "routing": "consumers of the old contract miss these events or their order",
}


@dataclass(frozen=True, slots=True)
class Break:
    """One incompatibility: where, what changed, and why it breaks which side.

    Attributes:
        message: the message's ``ce_type``.
        path: where in the event (``$.lines[].qty``; ``$`` for the whole message).
        change: what changed between the versions.
        reason: why the decoder fails on it.
        side: ``"backward"`` (new consumers, old events), ``"forward"`` (old consumers,
            new events) or ``"routing"`` (the topic or the key changed).
        against: the earlier version compared with (its ``info.version`` and file), for
            the transitive modes.
    """

    message: str
    path: str
    change: str
    reason: str
    side: str
    against: str = ""

    def __str__(self) -> str:
        against = f" [against {self.against}]" if self.against else ""
        return (
            f"{self.message} {self.path}: {self.change}; {self.reason}: "
            f"{_SIDES.get(self.side, self.side)}{against}"
        )


class IncompatibleSchemaError(AssertionError):
    """Raised by :func:`assert_compatible`; ``breaks`` lists what is incompatible."""

    def __init__(self, breaks: Sequence[Break], mode: Mode) -> None:
        self.breaks = list(breaks)
        self.mode = mode
        lines = "\n".join(f"  - {b}" for b in self.breaks)
        super().__init__(f"{len(self.breaks)} {mode.value} incompatibilities:\n{lines}")


Document = Mapping[str, Any]
OldContract = Document | str | Path | Sequence[Document | str | Path]
NewContract = Document | str | Path | Mapping[type, Route] | Iterable[type] | Sequence[RoutedType]


def load_versions(old: OldContract) -> list[tuple[str, Document]]:
    """The earlier versions, oldest first, each with a label.

    ``old`` is a document, a file, a directory (every ``*.yaml``, ``*.yml`` and
    ``*.json`` in it, in natural order of their names: ``v2`` before ``v10``), or a
    sequence of those, oldest first.
    """
    if isinstance(old, Mapping):
        return [(_label(old, ""), check_document(old))]
    if isinstance(old, str | Path | os.PathLike):
        path = Path(old)
        if path.is_dir():
            files = sorted(
                (p for p in path.iterdir() if p.suffix in {".yaml", ".yml", ".json"}),
                key=lambda p: _natural(p.name),
            )
            if not files:
                raise ContractError(f"{path} holds no .yaml, .yml or .json document")
            return [item for f in files for item in load_versions(f)]
        document = load_document(path)
        return [(_label(document, str(path)), document)]
    versions = [item for entry in old for item in load_versions(entry)]
    if not versions:
        raise ContractError("no earlier version to compare with")
    return versions


def _natural(name: str) -> list[Any]:
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


def _label(document: Document, where: str) -> str:
    version = str((document.get("info") or {}).get("version", "?"))
    return f"{version} ({where})" if where else version


def _new_document(new: NewContract) -> Document:
    if isinstance(new, Mapping) and "asyncapi" in new:
        return check_document(new)
    if isinstance(new, str | Path | os.PathLike):
        return load_document(new)
    return build_asyncapi(new)  # type: ignore[arg-type]


def check_compatible(
    old: OldContract, new: NewContract, mode: Mode | str = Mode.BACKWARD
) -> list[Break]:
    """The breaks between an earlier contract and the new one under ``mode`` (none: compatible).

    Args:
        old: the earlier AsyncAPI document(s), see :func:`load_versions`. The non-transitive
            modes compare with the last (latest) one only.
        new: a document or file, or the current event types (``@event`` classes, a
            ``{cls: Route}`` mapping, or :func:`~eventwire.contracts.collect_routes`'s list).
        mode: a :class:`Mode` or its name.

    Raises:
        ContractError: a file cannot be read or is not an AsyncAPI 3 document, or the
            event types cannot be described.
    """
    mode = _mode(mode)
    if mode is Mode.NONE:
        return []
    versions = load_versions(old)
    if not mode.transitive:
        versions = versions[-1:]
    new_doc = _Doc(_new_document(new))
    breaks: list[Break] = []
    for label, document in versions:
        against = label if mode.transitive and len(versions) > 1 else ""
        breaks.extend(_check_pair(_Doc(document), new_doc, mode, against))
    return breaks


def assert_compatible(old: OldContract, new: NewContract, mode: Mode | str = Mode.BACKWARD) -> None:
    """Raise :class:`IncompatibleSchemaError` (an AssertionError) listing every break, if any.

    For tests::

        def test_events_stay_backward_compatible():
            assert_compatible("contracts/asyncapi.yaml", [OrderPlaced, OrderCancelled])
    """
    mode = _mode(mode)
    breaks = check_compatible(old, new, mode)
    if breaks:
        raise IncompatibleSchemaError(breaks, mode)


def _mode(mode: Mode | str) -> Mode:
    try:
        return Mode(str(mode).upper())
    except ValueError:
        names = ", ".join(m.value for m in Mode)
        raise ContractError(f"unknown compatibility mode {mode!r}: one of {names}") from None


# -- documents -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Message:
    name: str
    topics: tuple[str, ...]
    key: Any
    payload: Any
    pydantic: bool = False


class _Doc:
    """An AsyncAPI document: its messages by name, and ``$ref`` resolution."""

    def __init__(self, document: Document) -> None:
        self.document = document
        self.messages: dict[str, _Message] = {}
        found: dict[str, tuple[dict[str, Any], set[str]]] = {}
        components = (document.get("components") or {}).get("messages") or {}
        for message_id, message in components.items():
            resolved = self.resolve(message)
            found.setdefault(str(resolved.get("name", message_id)), (resolved, set()))
        for channel_id, raw_channel in (document.get("channels") or {}).items():
            channel = self.resolve(raw_channel)
            address = str(channel.get("address") or channel_id)
            for message_id, message in (channel.get("messages") or {}).items():
                resolved = self.resolve(message)
                name = str(resolved.get("name", message_id))
                found.setdefault(name, (resolved, set()))[1].add(address)
        for name, (message, topics) in found.items():
            payload = message.get("payload", True)
            if isinstance(payload, Mapping) and "schemaFormat" in payload:
                payload = payload.get("schema", True)
            self.messages[name] = _Message(
                name,
                tuple(sorted(topics)),
                message.get("x-eventwire-key"),
                payload,
                message.get(SHAPE) == "pydantic",
            )

    def resolve(self, node: Any) -> Any:
        """``node`` with local ``$ref``s followed (a few levels)."""
        for _ in range(32):
            if not (isinstance(node, Mapping) and isinstance(node.get("$ref"), str)):
                return node
            node = self.pointer(node["$ref"])
        raise ContractError("a $ref cycle in the document")

    def pointer(self, ref: str) -> Any:
        if not ref.startswith("#/"):
            raise ContractError(f"only local references are supported, got {ref!r}")
        node: Any = self.document
        for raw in ref[2:].split("/"):
            part = raw.replace("~1", "/").replace("~0", "~")
            if isinstance(node, Mapping) and part in node:
                node = node[part]
            else:
                raise ContractError(f"dangling reference {ref!r}")
        return node


def _check_pair(old: _Doc, new: _Doc, mode: Mode, against: str) -> list[Break]:
    breaks: list[Break] = []
    for name, old_message in sorted(old.messages.items()):
        new_message = new.messages.get(name)
        if new_message is None:
            if mode.backward:
                breaks.append(
                    Break(
                        name,
                        "$",
                        "the message was removed",
                        "events of this type already written have no type in the new contract",
                        "backward",
                        against,
                    )
                )
            continue
        if old_message.topics and new_message.topics and old_message.topics != new_message.topics:
            breaks.append(
                Break(
                    name,
                    "$",
                    f"topic changed from {', '.join(old_message.topics)} to "
                    f"{', '.join(new_message.topics)}",
                    "consumers subscribed to the old topic no longer receive it",
                    "routing",
                    against,
                )
            )
        if None not in (old_message.key, new_message.key) and old_message.key != new_message.key:
            breaks.append(
                Break(
                    name,
                    "$",
                    f"partition key changed from {_key_text(old_message.key)} to "
                    f"{_key_text(new_message.key)}",
                    "events of one aggregate move to other partitions, so their "
                    "order across the change is lost",
                    "routing",
                    against,
                )
            )
        directions = []
        if mode.backward:
            directions.append(("backward", old, new, "old", "new"))
        if mode.forward:
            directions.append(("forward", new, old, "new", "old"))
        for side, writer, reader, wl, rl in directions:
            writer_message = writer.messages[name]
            reader_message = reader.messages[name]
            comparison = _Compare(
                writer,
                reader,
                wl,
                rl,
                writes_all=writer_message.pydantic,
                pydantic_reader=reader_message.pydantic,
            )
            comparison.compare(writer_message.payload, reader_message.payload, "$")
            for path, change, reason in comparison.problems:
                breaks.append(Break(name, path, change, reason, side, against))
    return breaks


def _key_text(key: Any) -> str:
    if isinstance(key, Mapping):
        kind = key.get("kind")
        if kind == "field":
            return f"field {key.get('field')!r}"
        if kind == "function":
            return f"function {key.get('function')}"
        if kind == "none":
            return "no key"
    return repr(key)


# -- schemas -------------------------------------------------------------------------------

_KINDS = ("null", "boolean", "integer", "number", "string", "array", "object")
_ANY, _NEVER = "any", "never"
_FORMATS_READ_BY = {  # reader format -> writer formats its decoder also accepts
    "datetime": {"date-time", "naive-datetime"},
    "time": {"time", "partial-time"},
}


@dataclass(slots=True)
class _Alt:
    """One JSON kind a schema allows, with that part of the schema (and its values, if listed)."""

    kind: str
    schema: Mapping[str, Any]
    values: list[Any] | None = None
    ref: str | None = None


_KIND_OF_TYPE = {
    type(None): "null",
    bool: "boolean",
    int: "integer",
    float: "number",
    str: "string",
    list: "array",
}


def _kind_of(value: Any) -> str:
    """The JSON kind of a listed (enum) value."""
    return _KIND_OF_TYPE.get(type(value), "object")


class _Compare:
    """Whether every value the writer's schema allows is decoded by the reader's type."""

    def __init__(
        self,
        writer: _Doc,
        reader: _Doc,
        writer_label: str,
        reader_label: str,
        *,
        writes_all: bool = False,
        pydantic_reader: bool = False,
    ) -> None:
        self.writer, self.reader = writer, reader
        self.w, self.r = writer_label, reader_label
        #: pydantic writes every field of a model (defaults, computed fields) each time.
        self.writes_all = writes_all
        #: pydantic's validator reads: computed fields (readOnly) are not read, and a
        #: field may be read under other names (x-eventwire-read-as).
        self.pydantic_reader = pydantic_reader
        self.problems: list[tuple[str, str, str]] = []
        self._active: set[tuple[str, str]] = set()

    def trial(self) -> _Compare:
        """A comparison of the same sides whose problems are kept apart (to try alternatives)."""
        trial = _Compare(
            self.writer,
            self.reader,
            self.w,
            self.r,
            writes_all=self.writes_all,
            pydantic_reader=self.pydantic_reader,
        )
        trial._active = set(self._active)
        return trial

    def versions(self, w_text: str, r_text: str) -> str:
        """``old X, new Y`` whichever side writes."""
        old, new = (w_text, r_text) if self.w == "old" else (r_text, w_text)
        return f"old {old}, new {new}"

    def report(self, path: str, change: str, reason: str) -> None:
        self.problems.append((path, change, reason))

    # alternatives

    def alts(  # noqa: PLR0911, PLR0912 - one case per JSON Schema construct
        self, schema: Any, doc: _Doc, ref: str | None = None
    ) -> list[_Alt]:
        """The JSON kinds ``schema`` allows (``$ref``, ``anyOf``, ``enum``, ``type`` unfolded)."""
        if schema is True or schema is None:
            return [_Alt(_ANY, {}, ref=ref)]
        if schema is False:
            return [_Alt(_NEVER, {}, ref=ref)]
        if not isinstance(schema, Mapping):
            raise ContractError(f"not a JSON Schema: {schema!r}")
        if isinstance(schema.get("$ref"), str):
            target = schema["$ref"]
            return self.alts(doc.pointer(target), doc, target)
        members = schema.get("anyOf") or schema.get("oneOf")
        if members:
            return [alt for member in members for alt in self.alts(member, doc, ref)]
        all_of = schema.get("allOf")
        if all_of and len(all_of) == 1:
            return self.alts(all_of[0], doc, ref)
        if all_of:  # not produced by msgspec: cannot be read precisely
            return [_Alt("unknown", schema, ref=ref)]
        values = None
        if "const" in schema:
            values = [schema["const"]]
        elif isinstance(schema.get("enum"), list):
            values = list(schema["enum"])
        types = schema.get("type")
        if values is not None:
            kinds: dict[str, list[Any]] = {}
            for value in values:
                kinds.setdefault(_kind_of(value), []).append(value)
            allowed = set(types if isinstance(types, list) else [types] if types else _KINDS)
            return [_Alt(k, schema, v, ref) for k, v in kinds.items() if k in allowed]
        if types is None:
            if "properties" in schema or "additionalProperties" in schema:
                types = "object"
            elif "items" in schema:
                types = "array"
            else:
                return [_Alt(_ANY, schema, ref=ref)]
        return [
            _Alt(str(t), schema, None, ref) for t in (types if isinstance(types, list) else [types])
        ]

    # comparison

    def compare(self, w_schema: Any, r_schema: Any, path: str) -> None:
        w_ref = w_schema.get("$ref") if isinstance(w_schema, Mapping) else None
        r_ref = r_schema.get("$ref") if isinstance(r_schema, Mapping) else None
        key = (str(w_ref), str(r_ref))
        if w_ref and r_ref:
            if key in self._active:
                return  # a recursive type: the pair is being compared further up
            self._active.add(key)
        try:
            self._compare(w_schema, r_schema, path)
        finally:
            self._active.discard(key)

    def _compare(self, w_schema: Any, r_schema: Any, path: str) -> None:
        readers = self.alts(r_schema, self.reader)
        if any(r.kind == _ANY for r in readers):
            return
        for w in self.alts(w_schema, self.writer):
            if w.kind == _NEVER:
                continue
            if w.kind in {_ANY, "unknown"}:
                self.report(
                    path,
                    f"the {self.w} schema allows any value, the {self.r} one only "
                    f"{self.describe(r_schema, self.reader)}",
                    f"a value of another type is refused by the {self.r} decoder",
                )
                continue
            candidates = self.candidates(w, readers)
            if not candidates:
                self.report_kind(w, w_schema, r_schema, path)
                continue
            if len(candidates) == 1:
                self.compare_alt(w, candidates[0], path)
                continue
            if w.kind == "object":
                self._compare_tagged(w, candidates, path)
                continue
            # several readers of one JSON kind (a hand-written union): one must take it all
            trials: list[list[tuple[str, str, str]]] = []
            for candidate in candidates:
                trial = self.trial()
                trial.compare_alt(w, candidate, path)
                if not trial.problems:
                    break
                trials.append(trial.problems)
            else:
                fewest = min(trials, key=len)
                self.problems.extend(fewest)

    def candidates(self, w: _Alt, readers: list[_Alt]) -> list[_Alt]:
        """The reader alternatives msgspec would decode a value of ``w``'s JSON kind into."""
        by_kind = [r for r in readers if r.kind == w.kind]
        if w.kind == "object" and len(by_kind) > 1:
            return by_kind  # a tagged union: compare_alt picks by tag
        if by_kind:
            return by_kind
        if w.kind == "integer":
            numbers = [r for r in readers if r.kind == "number"]
            if numbers:
                return numbers
        if w.kind in {"integer", "number"}:
            return [r for r in readers if r.kind == "string" and _subtype(r.schema) == "decimal"]
        return []

    def report_kind(self, w: _Alt, w_schema: Any, r_schema: Any, path: str) -> None:
        w_desc = self.describe(w_schema, self.writer)
        r_desc = self.describe(r_schema, self.reader)
        if w.kind == "null":
            self.report(
                path,
                f"the {self.w} schema allows null ({w_desc}), the {self.r} one does not ({r_desc})",
                f"null is refused by the {self.r} decoder",
            )
        elif w.kind == "number" and any(
            r.kind == "integer" for r in self.alts(r_schema, self.reader)
        ):
            self.report(
                path,
                f"type changed: {self.versions(w_desc, r_desc)}",
                "a JSON number with a fraction (or 1.0) is refused for an int",
            )
        else:
            self.report(
                path,
                f"type changed: {self.versions(w_desc, r_desc)}",
                f"a JSON {w.kind} is refused by the {self.r} decoder",
            )

    def compare_alt(self, w: _Alt, r: _Alt, path: str) -> None:
        if r.kind == "unknown":
            self.report(
                path,
                f"the {self.r} schema uses keywords eventwire cannot compare (allOf)",
                "compatibility cannot be shown",
            )
        elif w.kind == "object":
            self.compare_object(w, r, path)
        elif w.kind == "array":
            self.compare_array(w, r, path)
        elif w.kind == "string" and r.kind == "string":
            self.compare_string(w, r, path)
        elif w.kind in {"integer", "number"} and r.kind in {"integer", "number"}:
            self.compare_number(w, r, path)
        elif w.kind == "boolean":
            self.compare_values(w, r, path)
        # null -> null, and numbers -> decimal strings: always read

    def compare_values(self, w: _Alt, r: _Alt, path: str) -> bool:
        """Listed values (Literal, Enum): True when handled (the writer lists its values)."""
        if w.values is not None:
            refused = [v for v in w.values if not _value_ok(v, r)]
            if refused:
                self.report(
                    path,
                    f"value{'s' if len(refused) > 1 else ''} "
                    f"{', '.join(map(repr, refused))} of the {self.w} schema "
                    f"{'are' if len(refused) > 1 else 'is'} not accepted by the {self.r} one "
                    f"({self.describe_alt(r)})",
                    f"the {self.r} decoder refuses a value it does not list",
                )
            return True
        if r.values is not None:
            self.report(
                path,
                f"the {self.r} schema only accepts {self.describe_alt(r)}, the {self.w} one "
                f"any {self.describe_alt(w)}",
                f"the {self.r} decoder refuses a value it does not list",
            )
            return True
        return False

    def compare_string(self, w: _Alt, r: _Alt, path: str) -> None:
        if self.compare_values(w, r, path):
            return
        ws, rs = w.schema, r.schema
        w_sub, r_sub = _subtype(ws), _subtype(rs)
        if r_sub is not None and r_sub != w_sub and w_sub not in _FORMATS_READ_BY.get(r_sub, ()):
            self.report(
                path,
                f"string format changed: {self.versions(_sub_text(w_sub), _sub_text(r_sub))}",
                f"the {self.r} decoder parses the text as {_sub_text(r_sub)} and refuses "
                "other text",
            )
            return
        self.compare_bounds(ws, rs, "minLength", "maxLength", "length", path)
        if rs.get("pattern") is not None and rs.get("pattern") != ws.get("pattern"):
            self.report(
                path,
                f"the {self.r} schema requires the pattern {rs['pattern']!r} "
                f"(the {self.w} one {_or_none(ws.get('pattern'))})",
                f"the {self.r} decoder refuses text that does not match",
            )

    def compare_number(self, w: _Alt, r: _Alt, path: str) -> None:
        if w.kind == "number" and r.kind == "integer":
            self.report(
                path,
                f"type changed: {self.versions('number', 'integer')}",
                "a JSON number with a fraction (or 1.0) is refused for an int",
            )
            return
        if self.compare_values(w, r, path):
            return
        ws, rs = w.schema, r.schema
        for bound, lower in (("minimum", True), ("maximum", False)):
            exclusive = "exclusiveMinimum" if lower else "exclusiveMaximum"
            r_bound = _bound(rs, bound, exclusive)
            if r_bound is None:
                continue
            w_bound = _bound(ws, bound, exclusive)
            if not _within(w_bound, r_bound, lower):
                self.report(
                    path,
                    f"the {self.r} schema has {_bound_text(r_bound, lower)}, the {self.w} "
                    f"one {_bound_text(w_bound, lower) if w_bound else 'no such bound'}",
                    f"the {self.r} decoder refuses numbers out of its range",
                )
        r_step = rs.get("multipleOf")
        if r_step is not None:
            w_step = ws.get("multipleOf")
            ok = (
                w_step is not None
                and (Fraction(str(w_step)) / Fraction(str(r_step))).denominator == 1
            )
            if not ok:
                self.report(
                    path,
                    f"the {self.r} schema requires multiples of {r_step} (the {self.w} one "
                    f"{_or_none(w_step)})",
                    f"the {self.r} decoder refuses other numbers",
                )

    def compare_bounds(  # noqa: PLR0917 - (writer, reader, low keyword, high keyword, ...)
        self,
        ws: Mapping[str, Any],
        rs: Mapping[str, Any],
        low: str,
        high: str,
        what: str,
        path: str,
    ) -> None:
        r_min, w_min = rs.get(low, 0), ws.get(low, 0)
        if r_min > w_min:
            self.report(
                path,
                f"the {self.r} schema needs a {what} of at least {r_min}, the {self.w} one "
                f"allows {w_min}",
                f"the {self.r} decoder refuses shorter values",
            )
        r_max, w_max = rs.get(high, math.inf), ws.get(high, math.inf)
        if r_max < w_max:
            self.report(
                path,
                f"the {self.r} schema allows a {what} of at most {r_max}, the {self.w} one "
                f"{'any' if w_max == math.inf else w_max}",
                f"the {self.r} decoder refuses longer values",
            )

    def compare_array(self, w: _Alt, r: _Alt, path: str) -> None:
        ws, rs = w.schema, r.schema
        w_prefix, w_rest = _array_parts(ws)
        r_prefix, r_rest = _array_parts(rs)
        w_max = ws.get("maxItems", len(w_prefix) if w_rest is False else math.inf)
        r_max = rs.get("maxItems", len(r_prefix) if r_rest is False else math.inf)
        self.compare_bounds(
            {"minItems": ws.get("minItems", 0), "maxItems": w_max},
            {"minItems": rs.get("minItems", 0), "maxItems": r_max},
            "minItems",
            "maxItems",
            "number of items",
            path,
        )
        for n in range(max(len(w_prefix), len(r_prefix))):
            w_item = w_prefix[n] if n < len(w_prefix) else w_rest
            r_item = r_prefix[n] if n < len(r_prefix) else r_rest
            if w_item is False or r_item is False or n >= w_max:
                continue  # never written, or the length check above reported it
            self.compare(w_item, r_item, f"{path}[{n}]")
        if (
            w_rest is not False
            and r_rest is not False
            and w_max > max(len(w_prefix), len(r_prefix))
        ):
            self.compare(w_rest, r_rest, f"{path}[]")

    def compare_object(self, w: _Alt, r: _Alt, path: str) -> None:
        if r.schema.get("properties") is not None:
            self.compare_struct_reader(w.schema, r.schema, path)
        else:
            self.compare_dict_reader(w.schema, r.schema, path)

    def compare_struct_reader(  # noqa: PLR0912 - writer struct or dict, each reader field
        self, ws: Mapping[str, Any], rs: Mapping[str, Any], path: str
    ) -> None:
        """The reader is a Struct or model (named fields): its required fields, unknown fields."""
        w_props: Mapping[str, Any] | None = ws.get("properties")
        r_props: Mapping[str, Any] = rs["properties"]
        if self.pydantic_reader:  # computed fields are written, never read
            r_props = {
                n: p
                for n, p in r_props.items()
                if not (isinstance(p, Mapping) and p.get("readOnly") is True)
            }
        w_required = set(w_props or ()) if self.writes_all else set(ws.get("required", ()))
        r_required = set(rs.get("required", ()))
        w_values = ws.get("additionalProperties", True)
        r_values = rs.get("additionalProperties")
        read: set[str] = set()
        for name, r_prop in r_props.items():
            where = f"{path}.{name}"
            keys = self.read_names(name, r_prop)
            if keys is None:
                self.report(
                    where,
                    f"field {name!r} of the {self.r} schema is read from a nested path (AliasPath)",
                    "compatibility cannot be shown",
                )
                continue
            read.update(keys)
            if w_props is not None:
                sources = [k for k in keys if k in w_props]
                if not sources:
                    if name in r_required:
                        self.report(
                            where,
                            f"field {name!r} is required in the {self.r} schema (no default) "
                            f"and absent from the {self.w} one"
                            + (
                                f" (read as {', '.join(map(repr, keys))})" if keys != [name] else ""
                            ),
                            f"{self.w} events lack it",
                        )
                    continue
                if name in r_required and not w_required.intersection(sources):
                    self.report(
                        where,
                        f"field {name!r} is required in the {self.r} schema but has a "
                        f"default (may be absent) in the {self.w} one",
                        f"{self.w} events may lack it, and the {self.r} decoder has no "
                        "default for it",
                    )
                for source in sources:
                    self.compare(w_props[source], r_prop, where)
            else:  # the writer is a dict: any key, or none
                if name in r_required:
                    self.report(
                        where,
                        f"field {name!r} is required in the {self.r} schema; the {self.w} "
                        "one is a mapping that may lack it",
                        f"{self.w} events may lack it",
                    )
                if w_values is not False:
                    self.compare(w_values, r_prop, where)
        extra = [n for n in (w_props or {}) if n not in read]
        if r_values is False:
            for name in extra:
                self.report(
                    f"{path}.{name}",
                    f"field {name!r} of the {self.w} schema is unknown to the {self.r} "
                    "one, which forbids unknown fields",
                    f"the {self.r} decoder refuses the event (forbid_unknown_fields, "
                    'extra="forbid")',
                )
            if w_props is None and w_values is not False:
                self.report(
                    path,
                    f"the {self.w} schema is a mapping with any keys; the {self.r} one "
                    "forbids unknown fields",
                    f"the {self.r} decoder refuses other keys",
                )
        elif isinstance(r_values, Mapping) and r_values:
            for name in extra:
                self.compare((w_props or {})[name], r_values, f"{path}.{name}")

    def read_names(self, name: str, r_prop: Any) -> list[str] | None:
        """The keys the reader reads its field ``name`` from (None: cannot be told)."""
        if self.pydantic_reader and isinstance(r_prop, Mapping) and READ_AS in r_prop:
            names = r_prop[READ_AS]
            if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
                return None
            return list(names)
        return [name]

    def compare_dict_reader(self, ws: Mapping[str, Any], rs: Mapping[str, Any], path: str) -> None:
        """The reader is a dict: every key and value the writer may send."""
        w_props: Mapping[str, Any] | None = ws.get("properties")
        w_values = ws.get("additionalProperties", True)
        r_values = rs.get("additionalProperties", True)
        r_keys = rs.get("propertyNames")
        if w_props is not None:
            for name, w_prop in w_props.items():
                if r_keys is not None and not _key_ok(name, r_keys):
                    self.report(
                        f"{path}.{name}",
                        f"key {name!r} does not fit the {self.r} schema's keys "
                        f"({_schema_text(r_keys)})",
                        f"the {self.r} decoder refuses the key",
                    )
                if r_values is not False:
                    self.compare(w_prop, r_values, f"{path}.{name}")
            return
        w_keys = ws.get("propertyNames")
        if r_keys is not None and r_keys != w_keys:
            self.report(
                path,
                "dict keys changed: " + self.versions(_schema_text(w_keys), _schema_text(r_keys)),
                f"the {self.r} decoder refuses other keys",
            )
        if w_values is not False and r_values is not False:
            self.compare(w_values, r_values, f"{path}.*")
        self.compare_bounds(ws, rs, "minProperties", "maxProperties", "number of keys", path)

    # tagged unions: pick the reader alternative by the writer's tag

    def _compare_tagged(self, w: _Alt, readers: list[_Alt], path: str) -> None:
        tag = _tag_field(readers)
        if tag is None:
            trial_problems: list[list[tuple[str, str, str]]] = []
            for r in readers:
                trial = self.trial()
                trial.compare_object(w, r, path)
                if not trial.problems:
                    return
                trial_problems.append(trial.problems)
            fewest = min(trial_problems, key=len)
            self.problems.extend(fewest)
            return
        w_tag = _single_value((w.schema.get("properties") or {}).get(tag), self.writer)
        for r in readers:
            if _single_value((r.schema.get("properties") or {}).get(tag), self.reader) == w_tag:
                self.compare_object(w, r, path)
                return
        tags = ", ".join(
            repr(_single_value(r.schema["properties"][tag], self.reader)) for r in readers
        )
        self.report(
            f"{path}.{tag}",
            f"the {self.w} schema's {_or_none(w_tag)} is not a tag of the {self.r} union ({tags})",
            f"the {self.r} decoder refuses an unknown tag",
        )

    # descriptions

    def describe(self, schema: Any, doc: _Doc) -> str:
        return " | ".join(dict.fromkeys(self.describe_alt(a) for a in self.alts(schema, doc)))

    def describe_alt(self, alt: _Alt) -> str:
        title = alt.schema.get("title") if isinstance(alt.schema, Mapping) else None
        if alt.values is not None:
            listed = ", ".join(map(repr, alt.values))
            return f"{title} ({listed})" if title else f"one of {listed}"
        if alt.kind == "string":
            sub = _subtype(alt.schema)
            return f"string ({_sub_text(sub)})" if sub else "string"
        if alt.kind == "object":
            if "properties" in alt.schema:
                return f"object {title}" if title else "object"
            return "dict"
        if alt.kind == "array":
            prefix, _ = _array_parts(alt.schema)
            return f"array {title}" if title else "tuple" if prefix else "array"
        return alt.kind


def _subtype(schema: Mapping[str, Any]) -> str | None:
    sub = schema.get("x-eventwire-type") or schema.get("format")
    if sub is None and schema.get("contentEncoding") == "base64":
        return "base64"
    return str(sub) if sub is not None else None


def _sub_text(sub: str | None) -> str:
    return {
        None: "any text",
        "base64": "base64 bytes",
        "date-time": "RFC 3339 datetime with an offset",
        "naive-datetime": "datetime without an offset",
        "datetime": "datetime",
        "partial-time": "time without an offset",
        "time": "time",
    }.get(sub, str(sub))


def _or_none(value: Any) -> str:
    return "none" if value is None else repr(value)


def _schema_text(schema: Any) -> str:
    if schema is None:
        return "any text"
    if isinstance(schema, Mapping):
        if "pattern" in schema:
            return f"pattern {schema['pattern']!r}"
        sub = _subtype(schema)
        if sub:
            return _sub_text(sub)
    return repr(schema)


def _value_ok(value: Any, r: _Alt) -> bool:  # noqa: PLR0911 - one answer per kind
    """Whether the reader alternative ``r`` accepts the literal ``value``."""
    if r.values is not None:
        return any(type(value) is type(v) and value == v for v in r.values) or (
            r.kind == "number" and isinstance(value, int) and value in r.values
        )
    rs = r.schema
    if isinstance(value, str):
        if _subtype(rs) is not None:
            return False  # a format the literal would have to parse as: not shown
        if len(value) < rs.get("minLength", 0) or len(value) > rs.get("maxLength", math.inf):
            return False
        pattern = rs.get("pattern")
        return pattern is None or re.search(pattern, value) is not None
    if isinstance(value, bool):
        return r.kind == "boolean"
    if isinstance(value, int | float):
        if r.kind == "integer" and not isinstance(value, int):
            return False
        lo = _bound(rs, "minimum", "exclusiveMinimum")
        hi = _bound(rs, "maximum", "exclusiveMaximum")
        if lo is not None and not (value > lo[0] or (value == lo[0] and lo[1])):
            return False
        if hi is not None and not (value < hi[0] or (value == hi[0] and hi[1])):
            return False
        step = rs.get("multipleOf")
        return step is None or (Fraction(str(value)) / Fraction(str(step))).denominator == 1
    return True


def _bound(schema: Mapping[str, Any], inclusive: str, exclusive: str) -> tuple[float, bool] | None:
    """A bound as (value, inclusive); the tighter one if both are given."""
    found = []
    if schema.get(inclusive) is not None:
        found.append((schema[inclusive], True))
    if isinstance(schema.get(exclusive), int | float) and not isinstance(schema[exclusive], bool):
        found.append((schema[exclusive], False))
    if not found:
        return None
    if inclusive == "minimum":
        return max(found, key=lambda b: (b[0], not b[1]))
    return min(found, key=lambda b: (b[0], b[1]))


def _within(w: tuple[float, bool] | None, r: tuple[float, bool], lower: bool) -> bool:
    """Whether the writer's bound ``w`` is at least as tight as the reader's ``r``."""
    if w is None:
        return False
    if w[0] == r[0]:
        return r[1] or not w[1]
    return w[0] > r[0] if lower else w[0] < r[0]


def _bound_text(bound: tuple[float, bool] | None, lower: bool) -> str:
    if bound is None:
        return "no bound"
    op = (">=" if bound[1] else ">") if lower else ("<=" if bound[1] else "<")
    return f"{op} {bound[0]}"


def _array_parts(schema: Mapping[str, Any]) -> tuple[list[Any], Any]:
    """(positional item schemas, the schema of the items after them: False for none)."""
    items = schema.get("items", True)
    if isinstance(items, list):
        return items, schema.get("additionalItems", True)
    prefix = schema.get("prefixItems")
    if isinstance(prefix, list):
        return prefix, items
    return [], items


def _key_ok(name: str, keys: Any) -> bool:
    if not isinstance(keys, Mapping):
        return keys is not False
    if set(keys) - {"pattern", "minLength", "maxLength", "description", "title"}:
        return False
    if len(name) < keys.get("minLength", 0) or len(name) > keys.get("maxLength", math.inf):
        return False
    pattern = keys.get("pattern")
    return pattern is None or re.search(pattern, name) is not None


def _tag_field(readers: list[_Alt]) -> str | None:
    """The property every reader alternative pins to one value (a tagged union's tag)."""
    common: set[str] | None = None
    for r in readers:
        props = r.schema.get("properties") or {}
        pinned = {
            name
            for name, prop in props.items()
            if isinstance(prop, Mapping) and (len(prop.get("enum") or ()) == 1 or "const" in prop)
        }
        common = pinned if common is None else common & pinned
    return sorted(common)[0] if common else None


def _single_value(schema: Any, doc: _Doc) -> Any:
    schema = doc.resolve(schema)
    if isinstance(schema, Mapping):
        if "const" in schema:
            return schema["const"]
        values = schema.get("enum")
        if isinstance(values, list) and len(values) == 1:
            return values[0]
    return None
