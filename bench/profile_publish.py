"""Profile eventwire's publish path with pyinstrument and list its hot spots.

Two profiles, each a self-time table (``bench/results/profile-eventwire.md``):

1. **real broker**: the ``eventwire`` and ``eventwire-traced-100`` contenders
   (``--contenders``) publishing to a local 1-node cluster, main thread only.
2. **no broker**: ``Publisher.publish()`` into librdkafka with an unreachable
   bootstrap (nothing is ever acknowledged, so no settlement): the Python
   publish path without any network or broker CPU competing.

Usage: ``python -m bench.profile_publish [--quick]`` or ``eventwire bench --profile``.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench.child import run_child
from bench.events import make_pool, route_for
from bench.profiling import format_hot_spots

__all__ = ["main"]


def _broker_profiles(events: int, names: list[str]) -> str:
    """Profile each named contender on one local 1-node cluster; one section each."""
    import os  # noqa: PLC0415

    from bench.runner import REPO_ROOT, _cluster  # noqa: PLC0415

    # Keep a PYTHONPATH given by the caller first (e.g. a snapshot of src/).
    pythonpath = os.pathsep.join(p for p in (os.environ.get("PYTHONPATH", ""), str(REPO_ROOT)) if p)
    env = dict(os.environ, PYTHONPATH=pythonpath)
    sections = []
    with tempfile.TemporaryDirectory() as tmp, _cluster(1, lambda _m: None) as cluster:
        for name in names:
            topic = cluster.create_topic(f"bench.profile.{name}", partitions=3)
            path = str(Path(tmp) / f"{name}.prof")
            child = run_child(
                [
                    sys.executable,
                    "-m",
                    "bench.worker",
                    name,
                    f"--bootstrap={cluster.bootstrap_servers}",
                    f"--topic={topic}",
                    f"--events={events}",
                    f"--profile={path}",
                ],
                timeout=300,
                cwd=REPO_ROOT,
                env=env,
            )
            if child.returncode != 0:
                sections.append(f"### {name}\n\n(profile run failed: {child.tail()})\n")
                continue
            line = next(
                (ln for ln in child.stdout.splitlines() if ln.startswith("BENCH_RESULT")), ""
            )
            sections.append(
                f"### {name}\n\n{events:,} events; {line[13:200]}…\n\n"
                + Path(path + ".top.md").read_text()
            )
    return "\n".join(sections)


def _no_broker_profile(events: int) -> str:
    from pyinstrument import Profiler  # noqa: PLC0415

    from eventwire import DeliveryError, Publisher  # noqa: PLC0415
    from eventwire_devkit.demo.messages import OrderEventMessage  # noqa: PLC0415

    pool = make_pool()
    routes: dict[type, Any] = {OrderEventMessage: route_for("bench.profile")}
    publisher = Publisher(
        "127.0.0.1:9",
        routes=routes,
        connect_timeout=None,
        overrides={
            "queue.buffering.max.messages": 2_000_000,
            "queue.buffering.max.kbytes": 2_097_151,
            "message.timeout.ms": 600_000,
            "log_level": 0,
        },
    )
    publish = publisher.publish
    profiler = Profiler(interval=0.0002)
    profiler.start()
    for i in range(events):
        publish(pool[i & 1023])
    session = profiler.stop()
    with contextlib.suppress(DeliveryError):
        publisher.close(0)
    root = session.root_frame(trim_stem=False)
    return f"{events:,} publish() calls\n\n" + (format_hot_spots(root) if root else "(empty)\n")


def main(argv: list[str] | None = None) -> str:
    """Run both profiles, print them as markdown and write them to bench/results."""
    parser = argparse.ArgumentParser(prog="python -m bench.profile_publish", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="30k events instead of 200k")
    parser.add_argument("--out", default=None, help="markdown file to write")
    parser.add_argument(
        "--contenders",
        default="eventwire,eventwire-traced-100",
        help="comma-separated contenders to profile on the broker",
    )
    args = parser.parse_args(argv)
    import logging  # noqa: PLC0415

    logging.getLogger("eventwire").setLevel(logging.ERROR)  # eventwire logs via stdlib
    events = 30_000 if args.quick else 200_000
    text = (
        "# eventwire publish path: pyinstrument hot spots\n\n"
        "Self time = time in the function itself, including C functions it calls that have "
        "no frame of their own. Main (publishing) thread only.\n\n"
        "## 1. Real broker (local 1-node Kafka, reliable profile)\n\n"
        + _broker_profiles(events, args.contenders.split(","))
        + "\n## 2. No broker (publish() into librdkafka's queue, nothing acknowledged)\n\n"
        + _no_broker_profile(events)
    )
    from bench.runner import REPO_ROOT  # noqa: PLC0415

    out = Path(args.out) if args.out else REPO_ROOT / "bench" / "results" / "profile-eventwire.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text, encoding="utf-8")
    sys.stdout.write(text)
    return text


if __name__ == "__main__":
    main()
