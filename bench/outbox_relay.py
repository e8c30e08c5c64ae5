"""Outbox relay throughput: events/s drained from SQLite and PostgreSQL to one local broker.

    python -m bench.outbox_relay [--events 50000]

For each store: commit N encoded order events (in batches of 1,000, as
``publish_many`` does), then time ``OutboxRelay.drain()`` to a fresh topic on a
local 1-node cluster, and also time the commits (durable publish rate). Then the
same N events through ``AsyncPublisher(outbox=store)`` into the same store:
``publish_nowait()`` each (1,000 at a time, yielding to the loop in between)
and one ``await flush()``, which returns once every event is committed (no
relay runs: ``relay=False``); its writer task commits them in grouped
transactions. Those rows are drained too (checked, not timed). Prints a
markdown table and writes ``bench/results/outbox-relay.md``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import time
import uuid
from pathlib import Path
from tempfile import TemporaryDirectory

from eventwire import AsyncPublisher, KafkaConfig, Publisher, Route
from eventwire.outbox import OutboxRelay, OutboxStore, SQLiteOutbox
from eventwire.outbox.postgres import PostgresOutbox
from eventwire.transports.kafka import KafkaTransport
from eventwire_devkit.demo.domain import make_orders
from eventwire_devkit.demo.messages import OrderEventMessage
from eventwire_devkit.demo.translator import OrderEventTranslator
from eventwire_devkit.kafka import LocalKafkaCluster
from eventwire_devkit.postgres import LocalPostgres

RESULTS = Path(__file__).parent / "results" / "outbox-relay.md"


def run_one(
    name: str, store: OutboxStore, cluster: LocalKafkaCluster, events: int
) -> dict[str, float]:
    topic = f"relay-{name}-{uuid.uuid4().hex[:6]}"
    cluster.create_topic(topic, partitions=3)
    translator = OrderEventTranslator()
    messages = [translator.to_event_message(o) for o in make_orders(1000)]
    routes = {OrderEventMessage: Route(topic=topic, key="order_id")}
    pub = Publisher(cluster.bootstrap_servers, routes=routes, outbox=store, relay=False)
    start = time.perf_counter()
    for _ in range(events // 1000):
        pub.publish_many(messages)
    commit_s = time.perf_counter() - start
    pub.close(0.1)  # the handles settle as _IN_OUTBOX: the relay below ships them
    config = KafkaConfig(cluster.bootstrap_servers)
    relay = OutboxRelay(store, lambda: KafkaTransport(config), batch_size=2000)
    start = time.perf_counter()
    drained = relay.drain(timeout=600)
    relay_s = time.perf_counter() - start
    relay_sent = relay.stats.sent
    relay.stop()
    assert drained, f"{name}: the outbox did not drain"
    async_s = asyncio.run(
        _async_commits(cluster.bootstrap_servers, routes, store, messages, events)
    )
    relay = OutboxRelay(store, lambda: KafkaTransport(config), batch_size=2000)
    drained = relay.drain(timeout=600)
    relay.stop()
    assert drained, f"{name}: the async writes did not drain"
    assert relay.stats.sent == events, f"{name}: {relay.stats.sent} of {events} async writes sent"
    return {
        "commit_eps": events / commit_s,
        "relay_eps": relay_sent / relay_s,
        "async_eps": events / async_s,
    }


async def _async_commits(
    bootstrap: str,
    routes: dict[type, Route],
    store: OutboxStore,
    messages: list[OrderEventMessage],
    events: int,
) -> float:
    """Seconds for AsyncPublisher(outbox=store) to commit ``events`` events."""
    pub = AsyncPublisher(bootstrap, routes=routes, outbox=store, relay=False)
    await pub.start()
    futures = []
    start = time.perf_counter()
    for _ in range(events // 1000):
        futures += [pub.publish_nowait(m) for m in messages]
        await asyncio.sleep(0)  # the writer task commits while the next batch is published
    await pub.flush(600)  # returns once all are committed (relay=False: none is sent)
    elapsed = time.perf_counter() - start
    with contextlib.suppress(Exception):
        await pub.close(0.1)  # the futures settle as _IN_OUTBOX: the relay ships them
    await asyncio.gather(*futures, return_exceptions=True)
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=50_000)
    args = parser.parse_args()
    rows: list[tuple[str, dict[str, float]]] = []
    with LocalKafkaCluster(nodes=1) as cluster, TemporaryDirectory() as tmp:
        rows.append(
            ("sqlite", run_one("sqlite", SQLiteOutbox(Path(tmp) / "o.db"), cluster, args.events))
        )
        try:
            with LocalPostgres() as pg:
                rows.append(
                    ("postgres", run_one("postgres", PostgresOutbox(pg.dsn), cluster, args.events))
                )
        except Exception as exc:
            print(f"postgres: not measured ({exc})")
    command = " ".join(["python -m bench.outbox_relay", *sys.argv[1:]])
    lines = [
        f"# Outbox relay throughput ({args.events:,} order events, 1-node local Kafka)",
        "",
        f"Command: `{command}`",
        "",
        "| store | Publisher publish_many durable commits (events/s) "
        "| AsyncPublisher publish_nowait + flush durable commits (events/s) "
        "| relay drain (events/s) |",
        "|---|---:|---:|---:|",
    ]
    lines += [
        f"| {name} | {r['commit_eps']:,.0f} | {r['async_eps']:,.0f} | {r['relay_eps']:,.0f} |"
        for name, r in rows
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    RESULTS.write_text(text)


if __name__ == "__main__":
    main()
