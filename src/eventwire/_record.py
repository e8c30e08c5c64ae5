"""The Record: one event, routed, keyed, encoded and stamped, as every stage passes it."""

from __future__ import annotations

import msgspec

from eventwire._handle import DeliveryHandle

__all__ = ["Record"]


class Record(msgspec.Struct, gc=False):
    """What is sent for one event: ``topic``, ``key``, ``value``, ``headers``, and its handle.

    Built once per event by the publisher (routing, key, codec, CloudEvents and
    trace headers) and passed unchanged to the sink: the producer or the outbox.
    The handle is also the record's delivery callback.

    Not tracked by the garbage collector (``gc=False``): one object less per event
    for it to count and walk. That is safe because a Record is never part of a
    reference cycle: nothing it refers to refers back to it (the handle, the
    header list of ``(str, bytes)`` tuples, text and bytes), and it is internal, so
    no caller can make it so.
    """

    topic: str
    key: bytes | None
    value: bytes
    headers: list[tuple[str, bytes]]
    handle: DeliveryHandle
