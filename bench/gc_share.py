"""What Python's garbage collector costs eventwire per event, sync and async.

    python -m bench.gc_share [--events 100000] [--rounds 3]

On one local 1-node cluster, in this process, rounds interleaved: ``Publisher.publish``
in a loop (then ``flush``), and ``AsyncPublisher.publish_nowait`` in the batch window
the ``eventwire-async`` contender uses (1,000 a batch, 10 batches in flight), each with
the collector on and off (``gc.disable()`` around the measured window only). Reports the
median CPU µs per event of each, the difference (the collector's share), and the
collections of each generation with their time (``gc.callbacks``) in one "on" round.

Why: the async publisher costs ~4-5 µs per event more than the sync one. Each in-flight
async event keeps two tracked objects (its DeliveryHandle and its asyncio Future, which
the window holds until it awaits the batch), so the young generations fill in bursts
and the first-generation collections walk thousands of futures; a sync publish serves
most reports inline and keeps one. The collections' own time (``gc.callbacks``) is the
steadier figure: the on/off CPU difference is within this machine's noise.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import statistics
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from bench.contenders._window import BATCH, BatchWindow
from bench.events import make_pool, route_for
from bench.runner import _cluster

__all__ = ["main"]


@contextmanager
def _collector(on: bool) -> Iterator[None]:
    if not on:
        gc.disable()
    try:
        yield
    finally:
        gc.enable()


class _Collections:
    """Counts collections per generation and the time they took (``gc.callbacks``)."""

    def __init__(self) -> None:
        self.by_generation: dict[int, list[float]] = {}
        self._started = 0.0

    def __call__(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        else:
            took = time.perf_counter() - self._started
            self.by_generation.setdefault(info["generation"], []).append(took)

    @contextmanager
    def watching(self) -> Iterator[None]:
        gc.callbacks.append(self)
        try:
            yield
        finally:
            gc.callbacks.remove(self)


def _sync(bootstrap: str, topic: str, pool: list[Any], n: int, on: bool, seen: Any) -> float:
    from eventwire import Publisher  # noqa: PLC0415

    mask = len(pool) - 1
    with Publisher(bootstrap, routes={type(pool[0]): route_for(topic)}) as publisher:
        for i in range(2000):
            publisher.publish(pool[i & mask])
        publisher.flush(30)
        publish = publisher.publish
        with _collector(on), seen:
            cpu = time.process_time()
            for i in range(n):
                publish(pool[i & mask])
            publisher.flush(60)
            cpu = time.process_time() - cpu
    return cpu / n * 1e6


async def _async(bootstrap: str, topic: str, pool: list[Any], n: int, on: bool, seen: Any) -> float:
    from eventwire import AsyncPublisher  # noqa: PLC0415

    mask = len(pool) - 1
    async with AsyncPublisher(bootstrap, routes={type(pool[0]): route_for(topic)}) as publisher:
        await asyncio.gather(*[publisher.publish_nowait(pool[i & mask]) for i in range(2000)])
        nowait = publisher.publish_nowait
        window = BatchWindow()
        with _collector(on), seen:
            cpu = time.process_time()
            for start in range(0, n, BATCH):
                await window.add(
                    [nowait(pool[i & mask]) for i in range(start, min(n, start + BATCH))]
                )
            await window.drain()
            cpu = time.process_time() - cpu
    return cpu / n * 1e6


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(prog="python -m bench.gc_share", description=__doc__)
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    logging.getLogger("eventwire").setLevel(logging.ERROR)
    pool = make_pool("300")
    runs: dict[tuple[str, bool], list[float]] = {}
    collections: dict[str, _Collections] = {}
    with _cluster(1, lambda _m: None) as cluster:
        topic = cluster.create_topic("bench.gc-share", partitions=3)
        bootstrap = cluster.bootstrap_servers
        modes: dict[str, Callable[[bool, Any], float]] = {
            "sync": lambda on, seen: _sync(bootstrap, topic, pool, args.events, on, seen),
            "async": lambda on, seen: asyncio.run(
                _async(bootstrap, topic, pool, args.events, on, seen)
            ),
        }
        for round_ in range(args.rounds):
            for name, run in modes.items():
                for on in (True, False):
                    watch = _Collections()
                    seen = watch.watching() if on and round_ == 0 else _no_watch()
                    runs.setdefault((name, on), []).append(run(on, seen))
                    if on and round_ == 0:
                        collections[name] = watch
    lines = [
        f"CPU µs per event, medians of {args.rounds} interleaved rounds of {args.events:,} "
        "events, one local broker (`python -m bench.gc_share`)",
        "",
        "| mode | collector on | collector off | collector's share | collections in one "
        "'on' round: gen0 / gen1 / gen2 (ms) |",
        "|---|---:|---:|---:|---|",
    ]
    for name in ("sync", "async"):
        with_gc = statistics.median(runs[(name, True)])
        without = statistics.median(runs[(name, False)])
        gens = collections[name].by_generation
        shown = " / ".join(
            f"{len(gens.get(g, []))} ({sum(gens.get(g, [])) * 1e3:.0f})" for g in (0, 1, 2)
        )
        lines.append(
            f"| {name} | {with_gc:.2f} | {without:.2f} | {with_gc - without:.2f} "
            f"({(with_gc - without) / with_gc:.0%}) | {shown} |"
        )
    text = "\n".join(lines) + "\n"
    print(text)
    return text


@contextmanager
def _no_watch() -> Iterator[None]:
    yield


if __name__ == "__main__":
    main()
