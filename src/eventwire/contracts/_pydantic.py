"""The contract of pydantic v2 models: pydantic's own JSON Schema, annotated for the checker.

A pydantic event's payload schema is ``models_json_schema(..., by_alias=True)`` in
``"serialization"`` mode -- the JSON pydantic writes, field names as aliases -- which is
what :mod:`eventwire._shapes` gives the Schema Registry codecs too. Where that schema
cannot tell apart what pydantic's *validator* tells apart, the same annotations as for
msgspec types are added (see :mod:`eventwire.contracts.asyncapi`), so that
:mod:`eventwire.contracts.compat` sees what the decoder sees:

* a datetime or time whose offset is optional (``datetime``) or absent (``NaiveDatetime``)
  gets ``x-eventwire-type`` (``datetime``/``naive-datetime``/``time``/``partial-time``);
  ``format: date-time`` alone means an offset is required (``AwareDatetime``);
* a ``Decimal`` (written as text) gets ``format: decimal``;
* a dict whose keys are ints gets ``propertyNames: {pattern: ^-?[0-9]+$}``;
* a field read under other names than it is written as (``validation_alias``,
  ``AliasChoices``, ``validate_by_name``) gets ``x-eventwire-read-as``: the names the
  validator reads, in its order, or ``null`` when it reads an ``AliasPath``.

Computed fields are in the schema (``readOnly: true``): pydantic writes them, and its
validator does not read them (a model with ``extra="forbid"`` refuses them).

pydantic is imported only when a pydantic model is described.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

from eventwire.contracts._collect import ContractError

__all__ = ["READ_AS", "pydantic_components"]

#: The property annotation naming what a pydantic validator reads a field from.
READ_AS = "x-eventwire-read-as"
_INT_KEY = {"pattern": "^-?[0-9]+$"}
_TZ_TYPES = {
    ("datetime", None): "datetime",
    ("datetime", "naive"): "naive-datetime",
    ("time", None): "time",
    ("time", "naive"): "partial-time",
}


def pydantic_components(
    models: Sequence[type], ref_prefix: str
) -> tuple[dict[str, Any], dict[type, str]]:
    """(schemas by component name, the component name of each model) for pydantic ``models``.

    References between them are ``<ref_prefix><name>``.

    Raises:
        ContractError: pydantic cannot describe a model as JSON Schema.
    """
    from pydantic.errors import PydanticUserError  # noqa: PLC0415
    from pydantic.json_schema import models_json_schema  # noqa: PLC0415

    try:
        refs, top = models_json_schema(
            [(model, "serialization") for model in models],
            by_alias=True,
            ref_template=ref_prefix + "{model}",
            schema_generator=_generator(),
        )
    except (PydanticUserError, TypeError, ValueError) as exc:
        raise ContractError(f"pydantic cannot write a JSON Schema of the events: {exc}") from exc
    names = {
        model: str(refs[(model, "serialization")]["$ref"]).removeprefix(ref_prefix)
        for model in models
    }
    return dict(top.get("$defs", {})), names


@functools.cache
def _generator() -> type:
    """The ``GenerateJsonSchema`` of pydantic with the annotations of the module docstring."""
    from pydantic.json_schema import GenerateJsonSchema  # noqa: PLC0415

    class _Annotated(GenerateJsonSchema):
        def datetime_schema(self, schema: Any) -> Any:
            return _tz(super().datetime_schema(schema), "datetime", schema)

        def time_schema(self, schema: Any) -> Any:
            return _tz(super().time_schema(schema), "time", schema)

        def decimal_schema(self, schema: Any) -> Any:
            out = super().decimal_schema(schema)
            if out.get("type") == "string" and "format" not in out:
                out["format"] = "decimal"
            return out

        def dict_schema(self, schema: Any) -> Any:
            out = super().dict_schema(schema)
            keys = schema.get("keys_schema") or {}
            if keys.get("type") == "int" and "propertyNames" not in out:
                out["propertyNames"] = dict(_INT_KEY)
            return out

        def model_schema(self, schema: Any) -> Any:
            out = super().model_schema(schema)
            _annotate_read_names(schema["cls"], out)
            return out

    return _Annotated


def _tz(out: Any, kind: str, schema: Any) -> Any:
    sub = _TZ_TYPES.get((kind, schema.get("tz_constraint")))
    if sub is not None and isinstance(out, dict):
        out["x-eventwire-type"] = sub
    return out


def _annotate_read_names(cls: Any, out: Any) -> None:
    properties = out.get("properties") if isinstance(out, dict) else None
    if not isinstance(properties, dict):
        return
    config = getattr(cls, "model_config", {}) or {}
    by_name = bool(config.get("validate_by_name") or config.get("populate_by_name"))
    by_alias = config.get("validate_by_alias", True) is not False
    for name, field in getattr(cls, "model_fields", {}).items():
        written = field.serialization_alias or field.alias or name
        prop = properties.get(written)
        if not isinstance(prop, dict):
            continue
        read = _read_names(name, field, by_name=by_name, by_alias=by_alias)
        if read != [written]:
            prop[READ_AS] = read


def _read_names(name: str, field: Any, *, by_name: bool, by_alias: bool) -> list[str] | None:
    """The keys pydantic's validator reads field ``name`` from, in order; None: an AliasPath."""
    from pydantic import AliasChoices, AliasPath  # noqa: PLC0415

    names: list[str] = []
    alias = field.validation_alias if field.validation_alias is not None else field.alias
    if by_alias and alias is not None:
        choices = alias.choices if isinstance(alias, AliasChoices) else [alias]
        for choice in choices:
            if isinstance(choice, str):
                names.append(choice)
            elif isinstance(choice, AliasPath) and [type(p) for p in choice.path] == [str]:
                names.append(str(choice.path[0]))
            else:
                return None
    if by_name or alias is None or not by_alias:
        names.append(name)
    return list(dict.fromkeys(names))
