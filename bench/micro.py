"""Per-event CPU cost of eventwire's publish path, split into its parts (no broker).

Each line is µs per event: the median over ``--runs`` runs of a loop of
``--iterations`` calls timed with ``time.perf_counter_ns``, minus the cost of the
same loop with an empty body. The parts:

* **encode**: ``JsonCodec.encode`` (msgspec JSON) of the guide's OrderEventMessage.
* **headers**: ``time.time_ns()`` + ``new_event_id()`` (UUIDv7) + ``HeaderTemplate.build``
  (the six CloudEvents headers).
* **route**: ``Router.resolve(type(event))`` + ``BoundRoute.key_of(event)``.
* **publish() on MemoryTransport**: the whole ``Publisher.publish`` path; the memory
  transport reports synchronously inside ``send``, so settlement is included.
* **transport + bookkeeping** = publish() minus the three parts above; of that,
  **MemoryTransport.send alone** (no-op callback) is the in-memory log's own share and
  the rest is eventwire's (handle, pending set, settle, checks).

Next to it, librdkafka's own enqueue cost: ``Producer.produce()`` + ``poll(0)`` to a
producer whose bootstrap (127.0.0.1:9, discard port) never answers, with a queue big
enough for every run (purged between runs): bare, with a delivery callback, and
with eventwire's six headers. And eventwire's ``publish()`` into that same kind of
producer (``KafkaTransport``; no ack ever arrives, so no settlement).
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

from bench.events import make_pool, route_for

__all__ = ["main", "measure_all"]

TOPIC = "bench.micro"
_QUEUE = 2_000_000


def _loop_ns(body: Callable[[Any], Any], events: list[Any]) -> int:
    gc.collect()
    clock = time.perf_counter_ns
    t0 = clock()
    for e in events:
        body(e)
    return clock() - t0


def _empty(_e: Any) -> None:
    return None


#: A named case: ``setup()`` runs before each timed loop and returns the loop body.
Case = tuple[str, Callable[[], Callable[[Any], Any]]]


def measure_all(cases: list[Case], events: list[Any], runs: int) -> dict[str, float]:
    """Median µs per call of each case's body over ``runs`` loops, loop overhead subtracted.

    Cases are interleaved run by run (A B C ... A B C), which spreads the shared
    machine's noisy moments over every case instead of piling them onto one.
    """
    samples: dict[str, list[float]] = {name: [] for name, _ in cases}
    for _ in range(runs):
        for name, setup in cases:
            body = setup()
            overhead = _loop_ns(_empty, events)
            samples[name].append((_loop_ns(body, events) - overhead) / len(events) / 1000)
    return {name: statistics.median(values) for name, values in samples.items()}


def _quiet_close(publisher: Any) -> None:
    from eventwire import DeliveryError  # noqa: PLC0415

    # The unreachable producer's queued records are purged and reported: expected.
    with contextlib.suppress(DeliveryError):
        publisher.close(0)


def _noop_callback(_err: Any, _msg: Any) -> None:
    return None


_UNREACHABLE: dict[str, Any] = {
    "queue.buffering.max.messages": _QUEUE,
    "queue.buffering.max.kbytes": 2_097_151,
    "message.timeout.ms": 600_000,
    "log_level": 0,
}


def _eventwire_cases(events: list[Any], closers: list[Callable[[], Any]]) -> list[Case]:
    from eventwire import Publisher  # noqa: PLC0415
    from eventwire._cloudevents import new_event_id  # noqa: PLC0415
    from eventwire._codec import JsonCodec  # noqa: PLC0415
    from eventwire._router import Router  # noqa: PLC0415
    from eventwire.transports.memory import MemoryTransport  # noqa: PLC0415
    from eventwire_devkit.demo.messages import OrderEventMessage  # noqa: PLC0415

    routes: dict[type, Any] = {OrderEventMessage: route_for(TOPIC)}
    codec = JsonCodec()
    router = Router(routes, source="eventwire", content_type=codec.content_type)
    template = router.resolve(OrderEventMessage).headers
    time_ns = time.time_ns

    def headers(_e: Any) -> Any:
        return template.build(new_event_id(), time_ns() // 1_000_000, ())

    def route(e: Any) -> Any:
        return router.resolve(type(e)).key_of(e)

    live: list[Any] = []

    def close_all() -> None:
        for pub in live:
            _quiet_close(pub)

    closers.append(close_all)

    def publisher(bootstrap: str | None) -> Callable[[Any], Any]:
        while live:
            _quiet_close(live.pop())
        if bootstrap is None:
            pub = Publisher(transport=MemoryTransport(), routes=routes)
        else:
            pub = Publisher(bootstrap, routes=routes, connect_timeout=None, overrides=_UNREACHABLE)
        live.append(pub)
        return pub.publish

    value, key, hdrs = codec.encode(events[0]), b"key", headers(None)

    def memory_send() -> Callable[[Any], Any]:
        send = MemoryTransport().send
        return lambda _e: send(TOPIC, key, value, hdrs, _noop_callback)

    return [
        ("encode", lambda: codec.encode),
        ("headers", lambda: headers),
        ("route", lambda: route),
        ("publish_memory", lambda: publisher(None)),
        ("memory_send", memory_send),
        ("publish_kafka_noack", lambda: publisher("127.0.0.1:9")),
    ]


def _raw_cases(events: list[Any], closers: list[Callable[[], Any]]) -> list[Case]:
    import msgspec  # noqa: PLC0415
    from confluent_kafka import Producer  # noqa: PLC0415

    from eventwire import PROFILES  # noqa: PLC0415
    from eventwire._cloudevents import HeaderTemplate, new_event_id  # noqa: PLC0415

    props: dict[str, Any] = {
        **PROFILES["reliable"],
        **_UNREACHABLE,
        "bootstrap.servers": "127.0.0.1:9",
    }
    producer = Producer(props)
    produce, poll = producer.produce, producer.poll
    encode = msgspec.json.Encoder().encode
    value, key = encode(events[0]), events[0].order_id.encode()
    template = HeaderTemplate(type_name="t", source="eventwire", content_type="application/json")
    hdrs: Any = template.build(new_event_id(), time.time_ns() // 1_000_000, ())
    cb = _noop_callback

    def purged(body: Callable[[Any], Any]) -> Callable[[], Callable[[Any], Any]]:
        def setup() -> Callable[[Any], Any]:
            producer.purge(in_queue=True, in_flight=True, blocking=True)
            producer.poll(0)
            return body

        return setup

    closers.append(purged(_empty))
    return [
        ("produce_bare", purged(lambda _e: (produce(TOPIC, value, key), poll(0)))),
        (
            "produce_callback",
            purged(lambda _e: (produce(TOPIC, value, key, on_delivery=cb), poll(0))),
        ),
        (
            "produce_headers_callback",
            purged(lambda _e: (produce(TOPIC, value, key, headers=hdrs, on_delivery=cb), poll(0))),
        ),
        (
            "encode_and_produce",
            purged(
                lambda e: (produce(TOPIC, encode(e), e.order_id.encode(), on_delivery=cb), poll(0))
            ),
        ),
    ]


def _table(parts: dict[str, float]) -> str:
    encode, headers, route = parts["encode"], parts["headers"], parts["route"]
    total = parts["publish_memory"]
    rest = total - encode - headers - route
    memory = parts["memory_send"]
    rows = [
        ("encode (msgspec JSON via JsonCodec)", encode),
        ("headers (time_ns + new_event_id + HeaderTemplate.build)", headers),
        ("route (Router.resolve + key_of)", route),
        ("transport + bookkeeping (the rest)", rest),
        ("  of which MemoryTransport.send alone", memory),
        ("  of which eventwire bookkeeping (handle, pending, settle)", rest - memory),
        ("**publish() on MemoryTransport (total)**", total),
        ("", None),
        ("raw Producer.produce() + poll(0), pre-encoded, no callback", parts["produce_bare"]),
        ("raw produce() + poll(0) + delivery callback", parts["produce_callback"]),
        (
            "raw produce() + poll(0) + callback + 6 CloudEvents headers",
            parts["produce_headers_callback"],
        ),
        (
            "raw encode + key + produce() + callback (raw-confluent's loop body)",
            parts["encode_and_produce"],
        ),
        (
            "**eventwire publish() into librdkafka (no broker, no acks)**",
            parts["publish_kafka_noack"],
        ),
    ]
    lines = ["| part | µs / event | share of publish() |", "|---|---:|---:|"]
    for label, value in rows:
        if value is None:
            lines.append("| | | |")
            continue
        share = (
            f"{value / total:.0%}"
            if total > 0 and not label.startswith(("raw", "**eventwire"))
            else ""
        )
        lines.append(f"| {label} | {value:.2f} | {share} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> str:
    """Run the microbenchmark, print the table (markdown) and return it."""
    parser = argparse.ArgumentParser(prog="python -m bench.micro", description=__doc__)
    parser.add_argument("--iterations", type=int, default=20_000)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--size", choices=("300", "1k"), default="300")
    parser.add_argument("--out", default=None, help="also write the table to this file")
    args = parser.parse_args(argv)
    import logging  # noqa: PLC0415

    logging.getLogger("eventwire").setLevel(logging.ERROR)  # stdlib logging; errors only
    pool = make_pool(args.size)
    events = [pool[i % len(pool)] for i in range(max(1_000, min(args.iterations, 200_000)))]
    runs = max(1, min(args.runs, 21))
    closers: list[Callable[[], Any]] = []
    cases = _eventwire_cases(events, closers) + _raw_cases(events, closers)
    parts = measure_all(cases, events, runs)
    for close in closers:
        close()
    text = (
        f"eventwire publish path, µs per event (median of {runs} runs x {len(events):,} "
        f"events, {args.size} size; loop overhead subtracted)\n\n" + _table(parts)
    )
    sys.stdout.write(text)
    if args.out:
        from pathlib import Path  # noqa: PLC0415

        Path(args.out).write_text(text, encoding="utf-8")
    return text


if __name__ == "__main__":
    main()
