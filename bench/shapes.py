"""Per-event cost of each event shape: the same order as a Struct, dataclass, attrs class
and pydantic model (no broker).

    python -m bench.shapes [--iterations 20000] [--runs 7] [--out FILE]

Each number is µs per event: the median over ``--runs`` runs of a loop of
``--iterations`` calls, minus the cost of the same loop with an empty body (the
machinery of :mod:`bench.micro`; cases are interleaved run by run). The event is
the guide's order (~300 bytes of JSON: two line items, floats) in each shape, its
line items of the same shape. The columns:

* **encode json / msgpack**: ``JsonCodec().encode`` / ``MsgpackCodec().encode``
  (JSON includes the NaN/infinity check).
* **prepare**: what ``publish()`` does before the transport: route, key, encode,
  NaN check, CloudEvents headers, handle (``PublisherCore.prepare``).
* **publish**: the whole ``Publisher.publish`` on a ``MemoryTransport``.

A shape whose library is not installed (attrs, pydantic) is left out.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
from collections.abc import Callable
from typing import Any

import msgspec

from bench.micro import Case, measure_all

__all__ = ["main", "make_shapes"]

TOPIC = "bench.shapes"


class StructItem(msgspec.Struct, frozen=True):
    line_item_id: str
    product_id: str
    product_title: str
    quantity: int
    price: float


class StructOrder(msgspec.Struct, frozen=True):
    order_id: str
    created_at: str
    customer_name: str
    line_items: list[StructItem]
    total_price: float


@dataclasses.dataclass(frozen=True, slots=True)
class DataclassItem:
    line_item_id: str
    product_id: str
    product_title: str
    quantity: int
    price: float


@dataclasses.dataclass(frozen=True, slots=True)
class DataclassOrder:
    order_id: str
    created_at: str
    customer_name: str
    line_items: list[DataclassItem]
    total_price: float


# attrs and pydantic are optional here: their shapes are left out without them. The
# classes are at module level so that their (string) annotations resolve.
try:
    import attrs
except ImportError:  # pragma: no cover
    attrs = None  # type: ignore[assignment]
try:
    import pydantic
except ImportError:  # pragma: no cover
    pydantic = None  # type: ignore[assignment]

if attrs is not None:

    @attrs.frozen
    class AttrsItem:
        line_item_id: str
        product_id: str
        product_title: str
        quantity: int
        price: float

    @attrs.frozen
    class AttrsOrder:
        order_id: str
        created_at: str
        customer_name: str
        line_items: list[AttrsItem]
        total_price: float


if pydantic is not None:

    class PydanticItem(pydantic.BaseModel):
        model_config = pydantic.ConfigDict(frozen=True)
        line_item_id: str
        product_id: str
        product_title: str
        quantity: int
        price: float

    class PydanticOrder(pydantic.BaseModel):
        model_config = pydantic.ConfigDict(frozen=True)
        order_id: str
        created_at: str
        customer_name: str
        line_items: list[PydanticItem]
        total_price: float


def _order(order_cls: type, item_cls: type, i: int) -> Any:
    items = [
        item_cls(
            line_item_id=f"li-{i:06d}-1",
            product_id="p-1",
            product_title="Keyboard",
            quantity=1,
            price=89.99,
        ),
        item_cls(
            line_item_id=f"li-{i:06d}-2",
            product_id="p-2",
            product_title="USB-C cable 2m",
            quantity=3,
            price=9.99,
        ),
    ]
    return order_cls(
        order_id=f"ord-{i:06d}",
        created_at="2026-11-27T05:42:35+00:00",
        customer_name="Ada Lovelace",
        line_items=items,
        total_price=119.96,
    )


def make_shapes(count: int) -> dict[str, list[Any]]:
    """``count`` events per installed shape, the same content in each."""
    classes: dict[str, tuple[type, type] | None] = {
        "msgspec.Struct": (StructOrder, StructItem),
        "dataclass (frozen, slots)": (DataclassOrder, DataclassItem),
        "attrs (@attrs.frozen)": (AttrsOrder, AttrsItem) if attrs is not None else None,
        "pydantic BaseModel": (PydanticOrder, PydanticItem) if pydantic is not None else None,
    }
    return {
        name: [_order(*pair, i % 1024) for i in range(count)]
        for name, pair in classes.items()
        if pair is not None
    }


def _cases(name: str, events: list[Any], closers: list[Callable[[], Any]]) -> list[Case]:
    from eventwire import JsonCodec, MsgpackCodec, Publisher, Route  # noqa: PLC0415
    from eventwire.transports.memory import MemoryTransport  # noqa: PLC0415

    routes = {type(events[0]): Route(topic=TOPIC, key="order_id")}
    json_codec, msgpack_codec = JsonCodec(), MsgpackCodec()
    live: list[Any] = []

    def publisher() -> Any:
        while live:
            live.pop().close(5)
        pub = Publisher(transport=MemoryTransport(), routes=routes)
        live.append(pub)
        return pub

    def prepare() -> Callable[[Any], Any]:
        core = publisher()._core
        return lambda e: core.prepare(e, None, None)

    closers.append(lambda: [pub.close(5) for pub in live])
    return [
        (f"{name}|encode json", lambda: json_codec.encode),
        (f"{name}|encode msgpack", lambda: msgpack_codec.encode),
        (f"{name}|prepare", prepare),
        (f"{name}|publish", lambda: publisher().publish),
    ]


_COLUMNS = ("encode json", "encode msgpack", "prepare", "publish")


def main(argv: list[str] | None = None) -> str:
    """Run the benchmark, print the table (markdown) and return it."""
    parser = argparse.ArgumentParser(prog="python -m bench.shapes", description=__doc__)
    parser.add_argument("--iterations", type=int, default=20_000)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--out", default=None, help="also write the table to this file")
    parser.add_argument("--only", default="", help="only the shapes whose name contains this")
    args = parser.parse_args(argv)
    logging.getLogger("eventwire").setLevel(logging.ERROR)
    count = max(1_000, min(args.iterations, 200_000))
    runs = max(1, min(args.runs, 21))
    shapes = {n: e for n, e in make_shapes(count).items() if args.only.lower() in n.lower()}
    results: dict[str, float] = {}
    closers: list[Callable[[], Any]] = []
    # One measure_all per shape (each loop needs its own events), cases interleaved within.
    for name, events in shapes.items():
        results.update(measure_all(_cases(name, events, closers), events, runs))
    for close in closers:
        close()
    first = next(iter(shapes))
    base = {col: results[f"{first}|{col}"] for col in _COLUMNS}
    lines = [
        f"µs per event by event shape (median of {runs} runs x {count:,} events; the "
        "guide's ~300-byte order; loop overhead subtracted; x = vs the first row)",
        "",
        "| shape | " + " | ".join(_COLUMNS) + " |",
        "|---|" + "---:|" * len(_COLUMNS),
    ]
    for name in shapes:
        cells = []
        for col in _COLUMNS:
            value = results[f"{name}|{col}"]
            ratio = value / base[col] if base[col] > 0 else float("nan")
            cells.append(f"{value:.2f} ({ratio:.1f}x)")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    text = "\n".join(lines) + "\n"
    sys.stdout.write(text)
    if args.out:
        from pathlib import Path  # noqa: PLC0415

        Path(args.out).write_text(text, encoding="utf-8")
    return text


if __name__ == "__main__":
    main()
