"""Memory during a long broker outage: outbox (backlog on disk) vs direct mode (backlog in RAM).

    python -m bench.outage_memory [--events 200000]

Starts a local 1-node cluster, creates a topic, then stops the broker (a real
outage: nothing listens on the port). Two publishers, one after the other, each
in its own child process so their RSS figures do not mix:

* ``outbox``: ``Publisher(outbox=SQLiteOutbox(...))`` with its in-process relay;
* ``direct``: a plain ``Publisher`` with a queue large enough to hold everything.

Each publishes N events during the outage, sampling its process's RSS, the
producer queue length and the outbox depth every N/10 events. Then the broker
restarts and each must deliver everything (checked by counting the topic).
Prints a markdown table and writes ``bench/results/outage-memory.md``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
import uuid
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any

RESULTS = Path(__file__).parent / "results" / "outage-memory.md"


def _rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def child(mode: str, bootstrap: str, topic: str, events: int, db: str) -> None:
    """Publish ``events`` while the broker is down; print samples as JSON lines."""
    from eventwire import DeliveryError, Publisher, Route  # noqa: PLC0415
    from eventwire.outbox import SQLiteOutbox  # noqa: PLC0415
    from eventwire_devkit.demo.domain import make_orders  # noqa: PLC0415
    from eventwire_devkit.demo.messages import OrderEventMessage  # noqa: PLC0415
    from eventwire_devkit.demo.translator import OrderEventTranslator  # noqa: PLC0415

    translator = OrderEventTranslator()
    messages = [translator.to_event_message(o) for o in make_orders(1000)]
    routes = {OrderEventMessage: Route(topic=topic, key="order_id")}
    overrides = {"message.timeout.ms": 900_000, "queue.buffering.max.messages": 2_000_000}
    store = SQLiteOutbox(db) if mode == "outbox" else None
    pub = Publisher(
        bootstrap,
        routes=routes,
        outbox=store,
        overrides=overrides,
        connect_timeout=None,
        relay_options={"batch_size": 1000} if store else None,
    )
    step = max(1, events // 10)
    sample = {"at": 0, "rss_mib": _rss_mib(), "queue": 0, "outbox": 0}
    print("SAMPLE", json.dumps(sample), flush=True)
    for n in range(1, events + 1):
        if store is not None and n % 1000 == 0:
            pub.publish_many(messages)  # one transaction per 1,000 (as a service batches)
        elif store is None:
            pub.publish(messages[n % 1000])
        if n % step == 0:
            queue = pub.in_flight if store is None else 0  # events held in RAM, unacknowledged
            depth = store.status().pending if store is not None else 0
            sample = {"at": n, "rss_mib": _rss_mib(), "queue": queue, "outbox": depth}
            print("SAMPLE", json.dumps(sample))
    print("OUTAGE_DONE", flush=True)
    sys.stdin.readline()  # the parent restarts the broker, then says go
    try:
        pub.close(300)
    except DeliveryError as exc:
        print("SAMPLE", json.dumps({"failed": len(exc.failures)}))
    print("SAMPLE", json.dumps({"final_rss_mib": _rss_mib()}), flush=True)


def run_mode(mode: str, cluster: Any, events: int, tmp: str) -> dict[str, Any]:
    from eventwire_devkit.consume import read_topic  # noqa: PLC0415

    topic = f"outage-{mode}-{uuid.uuid4().hex[:6]}"
    cluster.create_topic(topic, partitions=3)
    node = cluster.node_ids[0]
    cluster.stop_node(node)
    args = [mode, cluster.bootstrap_servers, topic, str(events), f"{tmp}/{mode}.db"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "bench.outage_memory", "--child", *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdin is not None
    assert proc.stdout is not None
    samples: list[dict[str, Any]] = []
    for line in proc.stdout:
        if line.startswith("OUTAGE_DONE"):
            break
        if line.startswith("SAMPLE "):
            samples.append(json.loads(line[7:]))
    cluster.restart_node(node)
    start = time.monotonic()
    proc.stdin.write("go\n")
    proc.stdin.flush()
    tail = [json.loads(line[7:]) for line in proc.stdout if line.startswith("SAMPLE ")]
    proc.wait(600)
    recover_s = time.monotonic() - start
    records = read_topic(cluster.bootstrap_servers, topic, expected=events, timeout=120)
    return {"samples": samples, "tail": tail, "consumed": len(records), "recover_s": recover_s}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--child", nargs=5, default=None)
    args = parser.parse_args()
    if args.child:
        mode, bootstrap, topic, events, db = args.child
        child(mode, bootstrap, topic, int(events), db)
        return
    from eventwire_devkit.kafka import LocalKafkaCluster  # noqa: PLC0415

    results: dict[str, dict[str, Any]] = {}
    with TemporaryDirectory() as tmp, LocalKafkaCluster(1) as cluster:
        for mode in ("outbox", "direct"):
            results[mode] = run_mode(mode, cluster, args.events, tmp)
    lines = [
        f"RSS while publishing {args.events:,} events (~340 B each) to a stopped 1-node "
        "broker, then after restarting it",
        "",
        "| events published during the outage | outbox: RSS MiB | outbox: producer queue "
        "| outbox: rows on disk | direct: RSS MiB | direct: producer queue |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for o, d in zip(results["outbox"]["samples"], results["direct"]["samples"], strict=True):
        lines.append(
            f"| {o['at']:,} | {o['rss_mib']:.0f} | {o['queue']:,} | {o['outbox']:,} "
            f"| {d['rss_mib']:.0f} | {d['queue']:,} |"
        )
    lines.append("")
    for mode, r in results.items():
        lines.append(
            f"* {mode}: after the restart, consumed {r['consumed']:,} of {args.events:,} "
            f"from the topic; close() returned after {r['recover_s']:.1f} s; {r['tail']}"
        )
    text = "\n".join(lines) + "\n"
    sys.stdout.write(text)
    RESULTS.write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()
