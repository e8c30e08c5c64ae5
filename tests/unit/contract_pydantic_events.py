"""pydantic v2 event types for the contract tests: every kind of field the export describes.

Routed next to the msgspec ones of :mod:`tests.unit.contract_events` (one document holds
both); ``Line`` shares its name with the msgspec ``Line`` there, to show the rename.
"""

from __future__ import annotations

import datetime
import enum
import uuid
from decimal import Decimal
from typing import Annotated, Literal

import pydantic

from eventwire import event


class Size(enum.StrEnum):
    S = "s"
    M = "m"


class Line(pydantic.BaseModel):
    sku: str
    quantity: Annotated[int, pydantic.Field(ge=1)]
    size: Size = Size.M


class Card(pydantic.BaseModel):
    kind: Literal["card"] = "card"
    last4: Annotated[str, pydantic.Field(min_length=4, max_length=4)]


class Cash(pydantic.BaseModel):
    kind: Literal["cash"] = "cash"
    currency: str


@event(topic="invoices", key="invoice_id", type_name="billing.invoice.issued")
class InvoiceIssued(pydantic.BaseModel):
    """An invoice was issued (pydantic)."""

    model_config = pydantic.ConfigDict(populate_by_name=True)

    invoice_id: uuid.UUID = pydantic.Field(alias="invoiceId")
    issued_at: pydantic.AwareDatetime = pydantic.Field(alias="issuedAt")
    due: datetime.date
    local_time: datetime.datetime
    amount: Decimal
    lines: list[Line]
    payment: Card | Cash = pydantic.Field(discriminator="kind")
    counts: dict[int, str] = {}
    by_sku: dict[str, float] = {}
    pair: tuple[int, str] | None = None
    note: str | None
    channel: Literal["web", "shop"] = "web"
    raw: bytes = b""

    @pydantic.computed_field  # type: ignore[prop-decorator]
    @property
    def line_count(self) -> int:
        """How many lines (written, not read)."""
        return len(self.lines)


@event(topic="invoices", key=None, type_name="billing.invoice.voided")
class InvoiceVoided(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid")

    invoice_id: uuid.UUID = pydantic.Field(
        validation_alias=pydantic.AliasChoices("invoiceId", "invoice_id"),
        serialization_alias="invoiceId",
    )
    reason: str = ""
