"""Check what reached the log against what was published: count, keys, order, headers."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

import msgspec

from eventwire_devkit.demo.messages import OrderEventMessage

__all__ = ["Verification", "verify_records"]

_REQUIRED_HEADERS = ("ce_specversion", "ce_id", "ce_type", "ce_source", "ce_time", "content-type")


class _Record(Protocol):
    @property
    def partition(self) -> int: ...
    @property
    def offset(self) -> int: ...
    @property
    def key(self) -> bytes | None: ...
    @property
    def value(self) -> bytes: ...

    def header(self, name: str) -> bytes | None: ...


@dataclass
class Verification:
    """The accounting of one run: every number must be zero except the counts."""

    published: int = 0
    consumed: int = 0
    duplicates: int = 0
    lost: int = 0
    key_mismatches: int = 0
    order_violations: int = 0
    header_problems: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when every published event was consumed once, in order, well-formed."""
        return not (
            self.lost
            or self.duplicates
            or self.key_mismatches
            or self.order_violations
            or self.header_problems
            or self.consumed != self.published
        )


def verify_records(
    published: Mapping[str, OrderEventMessage],
    records: Iterable[_Record],
    *,
    ce_type: str,
    ce_source: str,
) -> Verification:
    """Compare ``records`` (from an independent consumer) with ``published`` (ce_id -> event).

    Per-key order holds when, within each key, events appear in the order of
    their ``created_at`` (the demo's orders are created one second apart).
    """
    result = Verification(published=len(published))
    decoder = msgspec.json.Decoder(OrderEventMessage)
    seen: set[str] = set()
    last_created: dict[bytes, str] = {}
    for record in sorted(records, key=lambda r: (r.partition, r.offset)):
        result.consumed += 1
        ce_id = (record.header("ce_id") or b"").decode()
        if ce_id in seen:
            result.duplicates += 1
            continue
        seen.add(ce_id)
        sent = published.get(ce_id)
        event = decoder.decode(record.value)
        if sent is None or event != sent:
            result.problems.append(f"record {ce_id!r} was never published (or changed)")
            result.header_problems += 1
            continue
        if record.key != sent.order_id.encode():
            result.key_mismatches += 1
        previous = last_created.get(record.key or b"")
        if previous is not None and previous > sent.created_at:
            result.order_violations += 1
        last_created[record.key or b""] = sent.created_at
        result.header_problems += _header_problems(record, ce_type, ce_source, result.problems)
    result.lost = len(set(published) - seen)
    return result


def _header_problems(record: _Record, ce_type: str, ce_source: str, problems: list[str]) -> int:
    missing = [h for h in _REQUIRED_HEADERS if record.header(h) is None]
    if missing:
        problems.append(f"offset {record.offset}: missing headers {missing}")
        return 1
    bad = []
    if record.header("ce_specversion") != b"1.0":
        bad.append("ce_specversion")
    if record.header("ce_type") != ce_type.encode():
        bad.append("ce_type")
    if record.header("ce_source") != ce_source.encode():
        bad.append("ce_source")
    if record.header("content-type") != b"application/json":
        bad.append("content-type")
    try:
        dt.datetime.fromisoformat((record.header("ce_time") or b"").decode().replace("Z", "+00:00"))
    except ValueError:
        bad.append("ce_time")
    if bad:
        problems.append(f"offset {record.offset}: bad headers {bad}")
    return 1 if bad else 0
