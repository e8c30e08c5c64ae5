"""Run one Python contender once, in this process, and print its result as JSON.

Usage (the runner does this; one fresh process per run)::

    python -m bench.worker eventwire --bootstrap 127.0.0.1:9092 --topic t \\
        --mode throughput --events 200000

The last stdout line starting with ``BENCH_RESULT`` carries the JSON result.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
import time
from typing import Any

from bench.contenders import by_name
from bench.contenders._context import RunContext
from bench.events import SIZES, make_pool

__all__ = ["RESULT_PREFIX", "main", "run"]

RESULT_PREFIX = "BENCH_RESULT "


def run(name: str, ctx: RunContext) -> dict[str, Any]:
    """Run contender ``name`` in ``ctx.mode`` and return its result fields."""
    contender = by_name(name)
    if contender.is_java:
        raise ValueError("java-perf-test is run by the runner, not by the worker")
    module = importlib.import_module(f"bench.contenders.{contender.module}")
    ctx.variant = contender.variant
    sample = module.throughput(ctx) if ctx.mode == "throughput" else module.latency(ctx)
    result: dict[str, Any] = sample.as_dict()
    result.update(name=name, mode=ctx.mode, topic=ctx.topic, size=ctx.size)
    return result


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.worker", description=__doc__)
    parser.add_argument("contender")
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--topic", required=True)
    parser.add_argument("--mode", choices=("throughput", "latency"), default="throughput")
    parser.add_argument("--size", choices=SIZES, default="300")
    parser.add_argument("--events", type=int, default=30_000)
    parser.add_argument("--warmup", type=int, default=1_000)
    parser.add_argument("--rate", type=float, default=2_000)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--profile", default=None, help="write a pyinstrument profile here")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    """Entry point: parse arguments, run, print ``BENCH_RESULT {json}``."""
    args = _parse(argv)
    ctx = RunContext(
        bootstrap=args.bootstrap,
        topic=args.topic,
        size=args.size,
        events=args.events,
        warmup=args.warmup,
        mode=args.mode,
        rate=args.rate,
        duration_s=args.duration,
        pool=make_pool(args.size),
        profile_path=args.profile,
    )
    began = time.monotonic()
    result = run(args.contender, ctx)
    result["process_s"] = time.monotonic() - began
    sys.stdout.write(RESULT_PREFIX + json.dumps(result) + "\n")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
