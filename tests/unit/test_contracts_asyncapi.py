"""The AsyncAPI 3.0 export: its shape, its files, and the official AsyncAPI CLI's verdict on it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import msgspec
import pytest

from eventwire import Route, event
from eventwire.contracts import (
    ContractError,
    build_asyncapi,
    collect_routes,
    dump_document,
    load_document,
)
from eventwire_devkit.pytest_plugin import unavailable
from tests.unit import contract_events

SPECS = ["tests.unit.contract_events", "tests.unit.contract_events:ROUTES"]


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    return build_asyncapi(collect_routes(SPECS), title="shop", version="2.1.0")


@pytest.fixture(scope="session")
def asyncapi_cli() -> Path:
    """The official AsyncAPI CLI (npm), installed once by the devkit; skips (fails when strict)
    without node/npm."""
    from eventwire_devkit.asyncapi import AsyncAPICliUnavailableError, ensure_asyncapi_cli

    try:
        return ensure_asyncapi_cli()
    except AsyncAPICliUnavailableError as exc:
        unavailable(f"AsyncAPI CLI unavailable: {exc}")


class TestDocument:
    def test_channels_are_topics_and_operations_send_to_them(
        self, document: dict[str, Any]
    ) -> None:
        """One channel per topic (id and address = the topic), one send operation per channel
        listing that channel's messages."""
        assert document["asyncapi"] == "3.0.0"
        assert document["info"]["title"] == "shop" and document["info"]["version"] == "2.1.0"
        assert set(document["channels"]) == {"orders", "catalog.trees", "partners"}
        orders = document["channels"]["orders"]
        assert orders["address"] == "orders"
        assert orders["bindings"]["kafka"]["topic"] == "orders"
        send = document["operations"]["send_orders"]
        assert send["action"] == "send"
        assert send["channel"] == {"$ref": "#/channels/orders"}
        assert {m["$ref"].rsplit("/", 1)[1] for m in send["messages"]} == set(orders["messages"])

    def test_messages_are_named_by_ce_type_with_the_payload_schema(
        self, document: dict[str, Any]
    ) -> None:
        """A message's name is the ce_type (type_name, else module.QualName); its payload is
        the msgspec JSON Schema of the event, with wire names (rename=) and required fields."""
        messages = {m["name"]: m for m in document["components"]["messages"].values()}
        assert set(messages) == {
            "shop.order.placed",
            "tests.unit.contract_events.OrderCancelled",
            "tests.unit.contract_events.CatalogChanged",
            "partner.event",
        }
        placed = messages["shop.order.placed"]
        assert placed["payload"] == {"$ref": "#/components/schemas/OrderPlaced"}
        assert placed["summary"] == "An order was placed."
        schema = document["components"]["schemas"]["OrderPlaced"]
        assert "orderId" in schema["properties"]
        assert "orderId" in schema["required"] and "note" not in schema["required"]
        assert schema["properties"]["lines"]["items"] == {"$ref": "#/components/schemas/Line"}

    def test_headers_are_the_cloudevents_kafka_binary_mode_headers(
        self, document: dict[str, Any]
    ) -> None:
        """Every message documents ce_specversion, ce_id, ce_type (its own), ce_source,
        ce_time and content-type, all required."""
        message = document["components"]["messages"]["shop.order.placed"]
        headers = message["headers"]
        names = ["ce_specversion", "ce_id", "ce_type", "ce_source", "ce_time", "content-type"]
        assert headers["required"] == names
        assert headers["properties"]["ce_type"]["const"] == "shop.order.placed"
        assert headers["properties"]["ce_specversion"]["const"] == "1.0"
        assert headers["properties"]["content-type"]["const"] == "application/json"
        assert message["correlationId"]["location"] == "$message.header#/ce_id"

    def test_the_key_is_documented_by_the_kafka_binding(self, document: dict[str, Any]) -> None:
        """bindings.kafka.key is a string schema naming the key field (or the function, or a
        null schema for key=None); x-eventwire-key says which."""
        messages = document["components"]["messages"]
        placed = messages["shop.order.placed"]
        assert placed["bindings"]["kafka"]["key"]["type"] == "string"
        assert "'order_id'" in placed["bindings"]["kafka"]["key"]["description"]
        assert placed["x-eventwire-key"] == {"kind": "field", "field": "order_id"}
        cancelled = messages["tests.unit.contract_events.OrderCancelled"]
        assert cancelled["x-eventwire-key"]["kind"] == "function"
        catalog = messages["tests.unit.contract_events.CatalogChanged"]
        assert catalog["bindings"]["kafka"]["key"]["type"] == "null"
        assert catalog["x-eventwire-key"] == {"kind": "none"}

    def test_schemas_are_draft07_with_what_json_schema_cannot_say_annotated(
        self, document: dict[str, Any]
    ) -> None:
        """Tuples use draft 07's items list, tagged unions keep their tag as x-discriminator,
        a datetime whose offset is optional says so, int dict keys get a pattern."""
        props = document["components"]["schemas"]["OrderPlaced"]["properties"]
        assert props["pickup"]["items"] == [{"type": "number"}, {"type": "number"}]
        assert props["pickup"]["additionalItems"] is False
        assert "prefixItems" not in json.dumps(document)
        assert props["payment"]["x-discriminator"]["propertyName"] == "type"
        assert props["placedAt"]["x-eventwire-type"] == "datetime"
        assert props["counts"]["propertyNames"] == {"pattern": "^-?[0-9]+$"}
        cancelled = document["components"]["schemas"]["OrderCancelled"]
        assert cancelled["properties"]["when"]["format"] == "date-time"
        assert cancelled["additionalProperties"] is False

    def test_msgpack_and_a_fixed_source(self) -> None:
        """content_type and source= go into the headers' consts and the message."""
        doc = build_asyncapi(
            [contract_events.OrderCancelled], content_type="application/msgpack", source="urn:s"
        )
        [message] = doc["components"]["messages"].values()
        assert message["contentType"] == "application/msgpack"
        assert message["headers"]["properties"]["ce_source"]["const"] == "urn:s"


class TestCollect:
    def test_a_module_yields_its_event_classes_and_a_mapping_its_routes(self) -> None:
        """MODULE gives the @event classes in it; MODULE:NAME a routes mapping's classes."""
        names = [r.type_name for r in collect_routes(["tests.unit.contract_events"])]
        assert "partner.event" not in names and "shop.order.placed" in names
        [partner] = collect_routes(["tests.unit.contract_events:ROUTES"])
        assert partner.cls is contract_events.PartnerEvent
        [single] = collect_routes(["tests.unit.contract_events:OrderPlaced"])
        assert single.type_name == "shop.order.placed"

    @pytest.mark.parametrize(
        ("spec", "message"),
        [
            ("tests.unit.no_such_module", "cannot import module"),
            ("tests.unit.contract_events:Nope", "has no attribute 'Nope'"),
            ("tests.unit.contract_events:Line", "name an @event class or a routes mapping"),
            ("tests.unit.conftest:transport", "name an @event class or a routes mapping"),
            ("json", "no routed event type"),
        ],
    )
    def test_what_cannot_be_collected_is_named(self, spec: str, message: str) -> None:
        """A missing module or attribute, or something that routes nothing, is a ContractError."""
        with pytest.raises(ContractError, match=message):
            collect_routes([spec])

    def test_two_classes_with_one_ce_type_are_refused(self) -> None:
        """Two event types published as the same ce_type cannot be told apart by consumers."""

        @event(topic="a", key=None, type_name="same")
        class A(msgspec.Struct):
            x: int

        @event(topic="b", key=None, type_name="same")
        class B(msgspec.Struct):
            y: int

        with pytest.raises(ContractError, match="share the ce_type 'same'"):
            build_asyncapi([A, B])

    def test_a_type_msgspec_cannot_describe_is_named(self) -> None:
        """A field of a type JSON Schema cannot describe fails with msgspec's reason."""

        @event(topic="a", key=None)
        class Odd(msgspec.Struct):
            x: object

        with pytest.raises(ContractError, match="msgspec cannot"):
            build_asyncapi({Odd: Route(topic="a", key=None)})


class TestFiles:
    @pytest.mark.parametrize("suffix", [".yaml", ".json"])
    def test_a_dumped_document_loads_back_equal(
        self, document: dict[str, Any], tmp_path: Path, suffix: str
    ) -> None:
        """YAML (default) and JSON (.json) files round-trip the document."""
        path = tmp_path / f"asyncapi{suffix}"
        dump_document(document, path)
        assert load_document(path) == json.loads(json.dumps(document))
        if suffix == ".json":
            json.loads(path.read_text())

    @pytest.mark.parametrize(
        ("text", "message"),
        [("asyncapi: 2.6.0\n", "not an AsyncAPI 3"), ("{[", "not valid YAML"), ("- 1\n", "not")],
    )
    def test_what_is_not_an_asyncapi_3_document_is_refused(
        self, tmp_path: Path, text: str, message: str
    ) -> None:
        """A 2.x document, broken YAML or another shape is a ContractError naming the file."""
        path = tmp_path / "old.yaml"
        path.write_text(text)
        with pytest.raises(ContractError, match=message):
            load_document(path)


class TestOfficialValidator:
    def test_the_asyncapi_cli_finds_the_export_valid(
        self, document: dict[str, Any], asyncapi_cli: Path, tmp_path: Path
    ) -> None:
        """`asyncapi validate --fail-severity warn` (the official CLI, pinned) accepts the export
        of every kind of field: no error, no warning."""
        from eventwire_devkit.asyncapi import validate

        for suffix in (".yaml", ".json"):
            path = tmp_path / f"asyncapi{suffix}"
            dump_document(document, path)
            result = validate(path, cli=asyncapi_cli)
            assert result.ok, result.output
            assert "0 errors, 0 warnings" in result.output or "is valid" in result.output

    def test_the_validator_does_reject_a_broken_document(
        self, document: dict[str, Any], asyncapi_cli: Path, tmp_path: Path
    ) -> None:
        """The check is not vacuous: an operation with AsyncAPI 2's action "publish" fails."""
        from eventwire_devkit.asyncapi import validate

        broken = json.loads(json.dumps(document))
        broken["operations"]["send_orders"]["action"] = "publish"  # AsyncAPI 2.x wording
        path = tmp_path / "broken.yaml"
        dump_document(broken, path)
        result = validate(path, cli=asyncapi_cli)
        assert not result.ok, result.output


@pytest.mark.parametrize("shape", ["struct", "dataclass", "attrs"])
def test_dataclass_and_attrs_events_are_exported_like_structs(shape: str) -> None:
    """Struct, dataclass and attrs events get their payload schema in components.schemas."""
    from eventwire import Route
    from eventwire.contracts.asyncapi import build_asyncapi

    from ..shapes import SHAPES

    order_cls, item_cls = SHAPES[shape]
    doc = build_asyncapi({order_cls: Route(topic="t", key="order_id", type_name=f"x.{shape}")})
    assert {order_cls.__name__, item_cls.__name__} <= set(doc["components"]["schemas"])


PYDANTIC_SPECS = [*SPECS, "tests.unit.contract_pydantic_events"]


@pytest.fixture(scope="module")
def mixed_document() -> dict[str, Any]:
    """msgspec Structs and pydantic models in one document."""
    return build_asyncapi(collect_routes(PYDANTIC_SPECS), title="shop", version="3.0.0")


class TestPydanticExport:
    def test_a_pydantic_event_gets_pydantics_own_schema_by_alias(
        self, mixed_document: dict[str, Any]
    ) -> None:
        """The payload of a pydantic event is pydantic's serialization JSON Schema by alias
        (written field names, computed fields readOnly), the message says pydantic reads it."""
        messages = {m["name"]: m for m in mixed_document["components"]["messages"].values()}
        issued = messages["billing.invoice.issued"]
        assert issued["x-eventwire-shape"] == "pydantic"
        assert "x-eventwire-shape" not in messages["shop.order.placed"]
        assert issued["payload"] == {"$ref": "#/components/schemas/InvoiceIssued"}
        assert issued["summary"] == "An invoice was issued (pydantic)."
        schema = mixed_document["components"]["schemas"]["InvoiceIssued"]
        props = schema["properties"]
        assert {"invoiceId", "issuedAt", "note", "line_count"} <= set(props)
        assert "invoice_id" not in props
        assert "note" in schema["required"]  # Optional without a default: required, nullable
        assert "channel" not in schema["required"]
        assert props["note"]["anyOf"] == [{"type": "string"}, {"type": "null"}]
        assert props["line_count"]["readOnly"] is True
        assert props["channel"]["enum"] == ["web", "shop"]
        assert messages["billing.invoice.issued"]["bindings"]["kafka"]["key"]["type"] == "string"

    def test_what_pydantics_schema_cannot_tell_is_annotated(
        self, mixed_document: dict[str, Any]
    ) -> None:
        """Offset-optional datetimes, decimals, int dict keys and read aliases are marked as
        for msgspec types; an AwareDatetime keeps plain ``format: date-time``."""
        props = mixed_document["components"]["schemas"]["InvoiceIssued"]["properties"]
        assert props["local_time"]["x-eventwire-type"] == "datetime"
        assert props["issuedAt"] == {
            "format": "date-time",
            "title": "Issuedat",
            "type": "string",
            "x-eventwire-read-as": ["issuedAt", "issued_at"],  # populate_by_name
        }
        assert props["amount"]["format"] == "decimal"
        assert props["counts"]["propertyNames"] == {"pattern": "^-?[0-9]+$"}
        voided = mixed_document["components"]["schemas"]["InvoiceVoided"]
        assert voided["additionalProperties"] is False  # extra="forbid"
        assert voided["properties"]["invoiceId"]["x-eventwire-read-as"] == [
            "invoiceId",
            "invoice_id",
        ]

    def test_a_pydantic_component_named_like_a_struct_is_renamed_with_its_references(
        self, mixed_document: dict[str, Any]
    ) -> None:
        """The pydantic Line/Card/Cash (other schemas than the msgspec ones of the same name)
        become Line_2 ...; every reference, discriminator mappings too, follows."""
        schemas = mixed_document["components"]["schemas"]
        assert (
            "sku" in schemas["Line_2"]["properties"] and "size" in schemas["Line_2"]["properties"]
        )
        assert "price" in schemas["Line"]["properties"]  # the msgspec Line is untouched
        issued = schemas["InvoiceIssued"]["properties"]
        assert issued["lines"]["items"] == {"$ref": "#/components/schemas/Line_2"}
        payment = issued["payment"]
        assert payment["oneOf"] == [
            {"$ref": "#/components/schemas/Card_2"},
            {"$ref": "#/components/schemas/Cash_2"},
        ]
        # AsyncAPI's discriminator is a property name: pydantic's OpenAPI object is kept aside
        assert "discriminator" not in payment
        assert payment["x-discriminator"]["mapping"] == {
            "card": "#/components/schemas/Card_2",
            "cash": "#/components/schemas/Cash_2",
        }
        text = json.dumps(mixed_document)
        assert '"#/$defs/' not in text and "prefixItems" not in text

    def test_the_shapes_pydantic_order_is_exported(self) -> None:
        """tests/shapes.py's pydantic order (aliases, a validator) exports without error."""
        from ..shapes import SHAPES

        order_cls, item_cls = SHAPES["pydantic"]
        doc = build_asyncapi({order_cls: Route(topic="t", key="order_id", type_name="x.p")})
        assert {order_cls.__name__, item_cls.__name__} <= set(doc["components"]["schemas"])

    def test_the_asyncapi_cli_finds_a_document_with_pydantic_events_valid(
        self, mixed_document: dict[str, Any], asyncapi_cli: Path, tmp_path: Path
    ) -> None:
        """`asyncapi validate --fail-severity warn` accepts the mixed export: no error or
        warning, as YAML and as JSON."""
        from eventwire_devkit.asyncapi import validate

        for suffix in (".yaml", ".json"):
            path = tmp_path / f"asyncapi{suffix}"
            dump_document(mixed_document, path)
            result = validate(path, cli=asyncapi_cli)
            assert result.ok, result.output
            assert "0 errors, 0 warnings" in result.output or "is valid" in result.output
