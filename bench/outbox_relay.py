"""Outbox relay throughput: events/s drained from SQLite and PostgreSQL to one local broker.

    python -m bench.outbox_relay [--events 50000] [--rounds 3] [--baseline SRC]
                                 [--src SRC] [--profile DIR] [--no-write]

Starts one local 1-node Kafka cluster and one local PostgreSQL server, then for
each round and store runs a worker process that commits N encoded order events
(in batches of 1,000, as ``publish_many`` does, timed: the durable publish
rate), then times ``OutboxRelay.drain()`` (``batch_size=2000``) to a fresh
3-partition topic, in wall time and in CPU time of the relay's process (its
librdkafka threads and, for SQLite, the database work included; PostgreSQL's and
Kafka's own CPU not). Each PostgreSQL run gets a fresh database.

``--baseline SRC`` also runs the eventwire package found in ``SRC`` (a ``src``
directory, e.g. ``git archive <commit> src | tar -x -C /tmp/base``), in the same
rounds against the same broker, alternating which goes first: a before/after
comparison on a shared machine. The table gives the median of the rounds.

``--profile DIR`` profiles each measured drain with cProfile (main thread) and
writes ``DIR/<variant>-<store>.txt``. The table is printed and, unless
``--no-write``, written to ``bench/results/outbox-relay.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any

RESULTS = Path(__file__).parent / "results" / "outbox-relay.md"
ROOT = Path(__file__).resolve().parent.parent
STORES = ("sqlite", "postgres")


def measure(args: argparse.Namespace) -> dict[str, float]:
    """One store, in this process: commit ``args.events`` events, then drain them."""
    from eventwire import KafkaConfig, Publisher, Route  # noqa: PLC0415
    from eventwire.outbox import OutboxRelay, SQLiteOutbox  # noqa: PLC0415
    from eventwire.outbox.postgres import PostgresOutbox  # noqa: PLC0415
    from eventwire.transports.kafka import KafkaTransport  # noqa: PLC0415
    from eventwire_devkit.demo.domain import make_orders  # noqa: PLC0415
    from eventwire_devkit.demo.messages import OrderEventMessage  # noqa: PLC0415
    from eventwire_devkit.demo.translator import OrderEventTranslator  # noqa: PLC0415

    with TemporaryDirectory() as tmp:
        store: Any = (
            SQLiteOutbox(Path(tmp) / "o.db") if args.store == "sqlite" else PostgresOutbox(args.dsn)
        )
        translator = OrderEventTranslator()
        messages = [translator.to_event_message(o) for o in make_orders(1000)]
        routes = {OrderEventMessage: Route(topic=args.topic, key="order_id")}
        pub = Publisher(args.bootstrap, routes=routes, outbox=store, relay=False)
        start = time.perf_counter()
        for _ in range(args.events // 1000):
            pub.publish_many(messages)
        commit_s = time.perf_counter() - start
        pub.close(0.1)  # the handles settle as _IN_OUTBOX: the relay below ships them
        config = KafkaConfig(args.bootstrap)
        relay = OutboxRelay(store, lambda: KafkaTransport(config), batch_size=2000)
        profiler = None
        if args.profile_to:
            import cProfile  # noqa: PLC0415

            profiler = cProfile.Profile()
            profiler.enable()
        start, cpu = time.perf_counter(), time.process_time()
        drained = relay.drain(timeout=600)
        relay_s, relay_cpu = time.perf_counter() - start, time.process_time() - cpu
        if profiler is not None:
            import pstats  # noqa: PLC0415

            profiler.disable()
            with open(args.profile_to, "w") as out:
                stats = pstats.Stats(profiler, stream=out)
                out.write(f"# drain of {args.events} events: {relay_s:.3f} s\n\n")
                stats.sort_stats("tottime").print_stats(25)
                stats.sort_stats("cumulative").print_stats(30)
        relay.stop()
        sent = relay.stats.sent
        assert drained, f"{args.store}: the outbox did not drain"
        async_s = _async_commits(args, routes, store, messages)
        store.close()
    return {
        "commit_eps": args.events / commit_s,
        "relay_eps": sent / relay_s,
        "relay_cpu_us": relay_cpu / sent * 1e6,
        "async_eps": args.events / async_s if async_s else 0.0,
    }


def _async_commits(args: argparse.Namespace, routes: Any, store: Any, messages: Any) -> float:
    """Seconds for ``AsyncPublisher(outbox=store)`` to commit the same events (0: no such
    mode in this eventwire). ``publish_nowait`` each, 1,000 at a time, yielding to the loop
    in between, then one ``await flush()``, which returns once all are committed (no relay
    runs: ``relay=False``); the writer task commits them in grouped transactions."""
    import asyncio  # noqa: PLC0415
    import contextlib  # noqa: PLC0415
    import inspect  # noqa: PLC0415

    from eventwire import AsyncPublisher  # noqa: PLC0415

    if "outbox" not in inspect.signature(AsyncPublisher.__init__).parameters:
        return 0.0  # a baseline from before the async outbox

    async def run() -> float:
        pub = AsyncPublisher(args.bootstrap, routes=routes, outbox=store, relay=False)
        await pub.start()
        futures = []
        start = time.perf_counter()
        for _ in range(args.events // 1000):
            futures += [pub.publish_nowait(m) for m in messages]
            await asyncio.sleep(0)  # the writer task commits while the next batch is made
        await pub.flush(600)
        elapsed = time.perf_counter() - start
        with contextlib.suppress(Exception):
            await pub.close(0.1)  # the futures settle as _IN_OUTBOX (nothing is sent)
        await asyncio.gather(*futures, return_exceptions=True)
        return elapsed

    return asyncio.run(run())


def run_worker(
    variant: str, src: Path, store: str, bootstrap: str, dsn: str, args: argparse.Namespace
) -> dict[str, float]:
    """Measure one store in a fresh process that imports eventwire from ``src``."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(src), str(ROOT / "devkit" / "src"), str(ROOT)])
    cmd = [
        sys.executable,
        "-m",
        "bench.outbox_relay",
        "--worker",
        "--store",
        store,
        "--bootstrap",
        bootstrap,
        "--dsn",
        dsn,
        "--topic",
        f"relay-{variant}-{store}-{uuid.uuid4().hex[:6]}",
        "--events",
        str(args.events),
    ]
    if args.profile:
        Path(args.profile).mkdir(parents=True, exist_ok=True)
        cmd += ["--profile-to", str(Path(args.profile) / f"{variant}-{store}.txt")]
    out = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"{variant}/{store} failed:\n{out.stderr[-3000:]}")
    result: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def fresh_database(admin_dsn: str, name: str) -> str:
    """Create database ``name`` on the server of ``admin_dsn``; its DSN."""
    import psycopg  # noqa: PLC0415

    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    return admin_dsn.rsplit("/", 1)[0] + f"/{name}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--events", type=int, default=50_000)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--baseline", type=Path, help="a src dir with the eventwire to compare")
    parser.add_argument(
        "--src", type=Path, default=ROOT / "src", help="the src dir of 'current' (default: ./src)"
    )
    parser.add_argument("--stores", default=",".join(STORES), help="sqlite,postgres")
    parser.add_argument("--profile", help="write a cProfile of each drain into this directory")
    parser.add_argument("--no-write", action="store_true", help="do not write the results file")
    # worker mode (one measurement; used by the runner above)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--store", help=argparse.SUPPRESS)
    parser.add_argument("--bootstrap", help=argparse.SUPPRESS)
    parser.add_argument("--dsn", help=argparse.SUPPRESS)
    parser.add_argument("--topic", help=argparse.SUPPRESS)
    parser.add_argument("--profile-to", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(measure(args)))
        return

    from eventwire_devkit.kafka import LocalKafkaCluster  # noqa: PLC0415
    from eventwire_devkit.postgres import LocalPostgres  # noqa: PLC0415

    stores = [s for s in args.stores.split(",") if s]
    variants: list[tuple[str, Path]] = [("current", args.src.resolve())]
    if args.baseline is not None:
        variants.append(("baseline", args.baseline.resolve()))
    samples: dict[tuple[str, str], list[dict[str, float]]] = {}
    with LocalKafkaCluster(nodes=1) as cluster:
        pg = LocalPostgres().start() if "postgres" in stores else None
        try:
            for n in range(args.rounds):
                order = variants if n % 2 == 0 else variants[::-1]
                for variant, src in order:
                    for store in stores:
                        dsn = ""
                        if store == "postgres":
                            assert pg is not None
                            dsn = fresh_database(pg.dsn, f"bench_{variant}_{n}")
                        r = run_worker(variant, src, store, cluster.bootstrap_servers, dsn, args)
                        print(f"round {n + 1} {variant:8} {store:8} {r}", flush=True)
                        samples.setdefault((variant, store), []).append(r)
        finally:
            if pg is not None:
                pg.close()
    text = table(samples, variants, stores, args)
    print(text)
    if not args.no_write:
        RESULTS.write_text(text)


def table(
    samples: dict[tuple[str, str], list[dict[str, float]]],
    variants: list[tuple[str, Path]],
    stores: list[str],
    args: argparse.Namespace,
) -> str:
    """The markdown report: the median of the rounds per variant and store."""
    lines = [
        f"# Outbox relay throughput ({args.events:,} order events, 1-node local Kafka)",
        "",
        f"Median of {args.rounds} round(s); each number is one process draining a fresh",
        "topic (`batch_size=2000`). `python -m bench.outbox_relay"
        + (f" --rounds {args.rounds}" if args.rounds != 1 else "")
        + (" --baseline <src of the base commit>" if args.baseline else "")
        + "`",
        "",
        "| eventwire | store | durable publish_many commits (events/s)"
        " | async outbox commits (events/s) | relay drain (events/s)"
        " | relay CPU (µs/event, relay process) |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for variant, _ in variants:
        for store in stores:
            rows = samples.get((variant, store), [])
            if not rows:
                continue
            commit = statistics.median(r["commit_eps"] for r in rows)
            relay = statistics.median(r["relay_eps"] for r in rows)
            cpu = statistics.median(r["relay_cpu_us"] for r in rows)
            aio = statistics.median(r.get("async_eps", 0.0) for r in rows)
            shown = f"{aio:,.0f}" if aio else "-"
            lines.append(
                f"| {variant} | {store} | {commit:,.0f} | {shown} | {relay:,.0f} | {cpu:.1f} |"
            )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
