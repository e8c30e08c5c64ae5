"""Per-event budget of eventwire's sync publish path, in ns, stage by stage (no broker).

    python -m bench.budget [--iterations 20000] [--runs 9] [--out bench/results/budget.md]

Every stage is timed in-process over ``--iterations`` events, the stages
interleaved run by run (:func:`bench.micro.measure_all`), medians reported, the
empty loop's cost subtracted. Producers point at an unreachable broker (the
discard port), so ``produce`` is librdkafka's enqueue and no ack ever arrives;
*report* and *settle* are then timed by calling each handle's delivery callback
as the poll thread would. The stages:

* **encode**: the route's bound encoder (msgspec JSON) of the bench's order event.
* **headers**: ``time_ns`` + ``str(uuid7())`` + ``HeaderTemplate.build`` (six CE headers).
* **prepare (rest)**: ``PublisherCore.prepare`` minus encode and headers: route
  lookup, key, the handle, the no-SDK trace-context check, the re-send record, the Record.
* **ledger**: ``prepare`` + ``Producer.try_send`` minus ``prepare`` and the transport's
  send: the close gate and the pending-set insert, and what keeping every event in
  flight costs (its handle, record and callback stay alive until the report: the
  garbage collector and allocator work on a growing heap; the ``prepare`` and
  ``produce`` cases free or reuse theirs).
* **produce**: ``KafkaTransport.send``: ``Producer.produce()`` with headers and the
  handle as callback, then ``poll(0)``. Next to it, raw-ce's own
  ``produce()`` + ``poll(0)`` with the same headers and a plain callback.
* **report + settle**: the handle called as librdkafka's delivery callback with a
  success: ledger settle, the handle's state, the pending-set removal.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.events import make_pool, route_for
from bench.micro import _UNREACHABLE, Case, measure_all

__all__ = ["main"]

TOPIC = "bench.budget"


class _Ack:
    """What a delivery report's message answers (partition, offset)."""

    def partition(self) -> int:
        return 0

    def offset(self) -> int:
        return 0


def _cases(events: list[Any], closers: list[Callable[[], Any]]) -> list[Case]:
    from confluent_kafka import Producer as RawProducer  # noqa: PLC0415

    from eventwire import PROFILES, DeliveryError, Publisher  # noqa: PLC0415
    from eventwire._cloudevents import uuid7  # noqa: PLC0415

    routes: dict[type, Any] = {type(events[0]): route_for(TOPIC)}
    pub = Publisher("127.0.0.1:9", routes=routes, connect_timeout=None, overrides=_UNREACHABLE)

    def close() -> None:
        with contextlib.suppress(DeliveryError):
            pub.close(0)

    closers.append(close)
    core = pub._core
    producer = core.producer
    assert producer is not None
    transport = producer.transport
    route = core._routes.get(type(events[0])) or core._router.resolve(type(events[0]))
    template, encode, time_ns = route.headers, route.encode, time.time_ns
    prepare, try_send, send = core.prepare, producer.try_send, transport.send
    sample = prepare(events[0], None, None)

    def purge() -> None:
        transport.flush(0)
        core.ledger.pending.clear()
        transport._producer.purge(in_queue=True, in_flight=True, blocking=True)  # type: ignore[attr-defined]
        transport._producer.poll(0)  # type: ignore[attr-defined]

    def purged(body: Callable[[Any], Any]) -> Callable[[], Callable[[Any], Any]]:
        def setup() -> Callable[[Any], Any]:
            purge()
            return body

        return setup

    def settle_setup() -> Callable[[Any], Any]:
        purge()
        handles = iter([prepare(e, None, None).handle for e in events])
        pending = core.ledger.pending
        ack = _Ack()

        def body(_e: Any) -> None:
            handle = next(handles)
            pending[handle] = None
            handle(None, ack)

        return body

    def pending_insert_setup() -> Callable[[Any], Any]:
        handles = iter([prepare(e, None, None).handle for e in events])
        pending = core.ledger.pending

        def body(_e: Any) -> None:
            pending[next(handles)] = None

        return body

    raw = RawProducer({**PROFILES["reliable"], **_UNREACHABLE, "bootstrap.servers": "127.0.0.1:9"})
    raw_produce, raw_poll = raw.produce, raw.poll

    def raw_cb(_err: Any, _msg: Any) -> None:
        return None

    def raw_setup() -> Callable[[Any], Any]:
        raw.purge(in_queue=True, in_flight=True, blocking=True)
        raw.poll(0)
        return lambda _e: (
            raw_produce(
                TOPIC, sample.value, sample.key, headers=sample.headers, on_delivery=raw_cb
            ),
            raw_poll(0),
        )

    closers.append(lambda: raw.purge(in_queue=True, in_flight=True, blocking=True))
    return [
        ("encode", lambda: encode),
        ("headers", lambda: lambda _e: template.build(str(uuid7()), time_ns() // 1_000_000)),
        ("prepare", lambda: lambda e: prepare(e, None, None)),
        ("prepare_try_send", purged(lambda e: try_send(prepare(e, None, None)))),
        (
            "transport_send",
            purged(lambda _e: send(TOPIC, sample.key, sample.value, sample.headers, sample.handle)),
        ),
        ("raw_produce", raw_setup),
        ("report_settle", settle_setup),
        ("pending_insert", pending_insert_setup),
        ("publish", purged(pub.publish)),
    ]


def _table(p: dict[str, float], runs: int, iterations: int) -> str:
    ns = {k: v * 1000 for k, v in p.items()}
    prepare_rest = ns["prepare"] - ns["encode"] - ns["headers"]
    ledger = ns["prepare_try_send"] - ns["prepare"] - ns["transport_send"]
    settle = ns["report_settle"] - ns["pending_insert"]
    total = ns["publish"] + settle
    rows = [
        ("prepare (route, key, handle, trace check, re-send record, Record)", prepare_rest),
        ("encode (msgspec JSON)", ns["encode"]),
        ("headers (time, UUIDv7, six CE headers)", ns["headers"]),
        ("ledger (close gate, pending insert) + keeping events in flight (GC, allocator)", ledger),
        ("produce (KafkaTransport.send: produce() + poll(0))", ns["transport_send"]),
        ("report + settle (delivery callback, ledger settle, handle state)", settle),
    ]
    lines = [
        f"eventwire sync publish path, ns per event (median of {runs} interleaved runs x "
        f"{iterations:,} events, no broker; `python -m bench.budget`)",
        "",
        "| stage | ns / event | share |",
        "|---|---:|---:|",
    ]
    lines += [f"| {label} | {value:,.0f} | {value / total:.0%} |" for label, value in rows]
    lines += [
        f"| **publish() + its report, total** | **{total:,.0f}** | 100% |",
        "| | | |",
        f"| raw-ce's produce() + poll(0), same headers, plain callback "
        f"| {ns['raw_produce']:,.0f} | |",
        f"| publish() alone (no report) | {ns['publish']:,.0f} | |",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> str:
    """Measure, print and (with ``--out``) write the budget table."""
    parser = argparse.ArgumentParser(prog="python -m bench.budget", description=__doc__)
    parser.add_argument("--iterations", type=int, default=20_000)
    parser.add_argument("--runs", type=int, default=9)
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    # The unreachable broker and the purges between runs are expected: keep stderr quiet.
    logging.getLogger("eventwire").setLevel(logging.CRITICAL)
    pool = make_pool()
    events = [pool[i % len(pool)] for i in range(args.iterations)]
    closers: list[Callable[[], Any]] = []
    try:
        parts = measure_all(_cases(events, closers), events, args.runs)
    finally:
        for close in closers:
            close()
    text = _table(parts, args.runs, args.iterations)
    print(text)
    if args.out:
        Path(args.out).write_text(text)
    return text


if __name__ == "__main__":
    main()
