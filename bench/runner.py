"""Run the comparison: one local cluster, every contender in its own process, rounds.

Order of work:

1. Start ``LocalKafkaCluster(nodes=N)`` (RF = min(3, N); acks=all everywhere).
2. One unrecorded warm-up run (the broker's JIT and log segments warm up).
3. Throughput rounds: A B C ... A B C, each run on a fresh 3-partition topic.
4. Latency rounds (fixed rate), same alternation, for the latency contenders.
5. Medians per contender; ratios per round, then their median.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bench.child import ChildResult, run_child
from bench.contenders import CONTENDERS, Contender, by_name, java_perf
from bench.events import Size, encoded_size
from bench.worker import RESULT_PREFIX

__all__ = ["REPO_ROOT", "BenchConfig", "RunRecord", "run_benchmark"]

REPO_ROOT = Path(__file__).resolve().parent.parent
RAW = "raw-confluent"


@dataclass
class BenchConfig:
    """What to run. :meth:`quick` and :meth:`full` give the two presets."""

    nodes: int = 1
    size: Size = "300"
    events: int = 200_000
    warmup: int = 2_000
    rounds: int = 3
    latency: bool = True
    latency_rounds: int = 3
    rate: float = 2_000
    duration_s: float = 10.0
    contenders: list[str] = field(default_factory=lambda: [c.name for c in CONTENDERS])
    quick: bool = False
    #: A git revision whose src/ the contender processes import instead of the working
    #: tree (``git archive``), so edits made during the run cannot mix versions.
    snapshot: str | None = None

    @classmethod
    def preset(cls, *, quick: bool) -> BenchConfig:
        """The quick (< 3 min) or the full preset."""
        if quick:
            return cls(events=30_000, warmup=1_000, latency_rounds=1, duration_s=3.0, quick=True)
        return cls()

    def latency_contenders(self) -> list[Contender]:
        """Contenders run in latency mode under this preset."""
        wanted = {"always"} if self.quick else {"always", "full"}
        return [by_name(n) for n in self.contenders if by_name(n).latency in wanted]


@dataclass
class RunRecord:
    """One contender process: its result fields or its error."""

    name: str
    mode: str
    round: int
    result: dict[str, Any]
    error: str | None = None


Progress = Callable[[str], None]


class _Runner:
    def __init__(
        self, cfg: BenchConfig, cluster: Any, jars: Path, java: str, src: str | None
    ) -> None:
        self.cfg = cfg
        self.cluster = cluster
        self.jars = jars
        self.java = java
        self.token = secrets.token_hex(3)
        self.java_base_cpu_s: float | None = None
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (src, str(REPO_ROOT), env.get("PYTHONPATH", "")) if p
        )
        self.env = env

    def _topic(self, mode: str, name: str, round_no: int) -> str:
        topic = f"bench.{self.token}.{mode[0]}.{name}.r{round_no}"
        self.cluster.create_topic(topic, partitions=3)
        return topic

    def run(self, contender: Contender, mode: str, round_no: int) -> RunRecord:
        topic = self._topic(mode, contender.name, round_no)
        if contender.is_java:
            return self._run_java(contender, mode, round_no, topic)
        cfg = self.cfg
        cmd = [
            sys.executable,
            "-m",
            "bench.worker",
            contender.name,
            f"--bootstrap={self.cluster.bootstrap_servers}",
            f"--topic={topic}",
            f"--mode={mode}",
            f"--size={cfg.size}",
            f"--events={cfg.events}",
            f"--warmup={cfg.warmup}",
            f"--rate={cfg.rate:g}",
            f"--duration={cfg.duration_s:g}",
        ]
        timeout = 60 + (cfg.events / 2_000 if mode == "throughput" else cfg.duration_s)
        child = run_child(cmd, timeout=timeout, cwd=REPO_ROOT, env=self.env)
        return self._record(contender.name, mode, round_no, child)

    def _record(self, name: str, mode: str, round_no: int, child: ChildResult) -> RunRecord:
        lines = [ln for ln in child.stdout.splitlines() if ln.startswith(RESULT_PREFIX)]
        if child.returncode != 0 or not lines:
            why = "timed out" if child.timed_out else f"exit {child.returncode}"
            return RunRecord(name, mode, round_no, {}, f"{why}: {child.tail()}")
        result: dict[str, Any] = json.loads(lines[-1][len(RESULT_PREFIX) :])
        result["process_cpu_s"] = child.cpu_s
        result["process_rss_mb"] = child.peak_rss_mb
        return RunRecord(name, mode, round_no, result)

    def java_baseline(self) -> None:
        """CPU of a 1-record ProducerPerformance run: the JVM's fixed start-up cost."""
        topic = self._topic("baseline", "java", 0)
        cmd = java_perf.command(
            self.java,
            self.jars,
            bootstrap=self.cluster.bootstrap_servers,
            topic=topic,
            records=1,
            record_size=encoded_size(self.cfg.size),
        )
        child = run_child(cmd, timeout=60)
        if child.returncode == 0:
            self.java_base_cpu_s = child.cpu_s

    def _run_java(self, contender: Contender, mode: str, round_no: int, topic: str) -> RunRecord:
        cfg = self.cfg
        latency_mode = mode == "latency"
        records = int(cfg.rate * cfg.duration_s) if latency_mode else cfg.events
        cmd = java_perf.command(
            self.java,
            self.jars,
            bootstrap=self.cluster.bootstrap_servers,
            topic=topic,
            records=records,
            record_size=encoded_size(cfg.size),
            throughput=cfg.rate if latency_mode else -1,
            latency_mode=latency_mode,
        )
        timeout = 60 + (cfg.events / 2_000 if not latency_mode else cfg.duration_s)
        child = run_child(cmd, timeout=timeout)
        try:
            summary = java_perf.parse_summary(child.stdout)
        except ValueError:
            why = "timed out" if child.timed_out else f"exit {child.returncode}"
            return RunRecord(contender.name, mode, round_no, {}, f"{why}: {child.tail()}")
        notes = [
            "random payload, no key, no headers; Java client defaults otherwise "
            "(batch.size=16384 vs librdkafka's 1 MB); CPU/RSS: whole JVM (os.wait4)"
        ]
        result: dict[str, Any] = {
            "name": contender.name,
            "mode": mode,
            "topic": topic,
            "size": cfg.size,
            "process_cpu_s": child.cpu_s,
            "process_rss_mb": child.peak_rss_mb,
            "peak_rss_mb": child.peak_rss_mb,
            "notes": notes,
            **summary,
        }
        if latency_mode:
            result["sent"] = records
            result["achieved_rate"] = summary["events_per_s"]
        else:
            base = self.java_base_cpu_s or 0.0
            result["cpu_s"] = max(0.0, child.cpu_s - base)
            result["cpu_s_per_1M_events"] = result["cpu_s"] / summary["acked"] * 1e6
            notes.append(
                f"CPU/1M = (whole-JVM CPU - a 1-record run's {base:.2f} s of start-up) / events"
            )
            if cfg.events < 100_000:
                notes.append("few events: its figure is dominated by JVM warm-up (no warm-up run)")
        return RunRecord(contender.name, mode, round_no, result)


def _rev(revision: str) -> str:
    out = subprocess.run(
        ["git", "-C", str(REPO_ROOT), "rev-parse", "--short", revision],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    return out.stdout.strip() or "unknown"


def _snapshot(revision: str) -> Path:
    """Extract ``src/`` of git ``revision`` into a temp dir (``git archive``); return the dir."""
    target = Path(tempfile.mkdtemp(prefix="eventwire-bench-src-"))
    archive = subprocess.run(
        ["git", "-C", str(REPO_ROOT), "archive", "--format=tar", revision, "src"],
        capture_output=True,
        timeout=60,
        check=False,
    )
    if archive.returncode != 0:
        shutil.rmtree(target, ignore_errors=True)
        raise ValueError(f"git archive {revision} failed: {archive.stderr.decode()[-300:]}")
    subprocess.run(["tar", "-x", "-C", str(target)], input=archive.stdout, check=True, timeout=60)
    return target


@contextmanager
def _cluster(nodes: int, progress: Progress) -> Iterator[Any]:
    from eventwire_devkit.kafka import LocalKafkaCluster  # noqa: PLC0415

    cluster = LocalKafkaCluster(nodes=nodes, progress=progress)
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.close()


@dataclass
class BenchRun:
    """Everything one benchmark invocation produced."""

    config: BenchConfig
    machine: dict[str, Any]
    records: list[RunRecord]
    cluster_start_s: float | None
    #: Contenders not run because a module they need is missing (name -> modules).
    skipped: dict[str, list[str]] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """Raw records, for debugging."""
        return {
            "config": asdict(self.config),
            "machine": self.machine,
            "records": [asdict(r) for r in self.records],
            "skipped": self.skipped,
        }


def run_benchmark(
    cfg: BenchConfig,
    *,
    on_start: Callable[[int], None] = lambda total: None,
    on_step: Callable[[str], None] = lambda label: None,
    on_done: Callable[[RunRecord], None] = lambda record: None,
    progress: Progress = lambda message: None,
) -> BenchRun:
    """Start the cluster, run every round, and return the raw records.

    ``on_start(total_steps)``, ``on_step(label)`` before each process and
    ``on_done(record)`` after it drive a progress display.
    """
    from bench.machine import describe, load_average, source_digest  # noqa: PLC0415
    from eventwire_devkit._kafka.jars import find_java  # noqa: PLC0415
    from eventwire_devkit.kafka import KAFKA_VERSION, ensure_kafka_jars  # noqa: PLC0415

    java = find_java()
    jars = ensure_kafka_jars(progress)
    skipped = {n: by_name(n).missing() for n in cfg.contenders if by_name(n).missing()}
    throughput = [by_name(n) for n in cfg.contenders if n not in skipped]
    latency = [c for c in cfg.latency_contenders() if c.name not in skipped] if cfg.latency else []
    snapshot_dir = _snapshot(cfg.snapshot) if cfg.snapshot else None
    src = str(snapshot_dir / "src") if snapshot_dir else None
    load_before, source_before = load_average(), source_digest(src)
    total = 2 + cfg.rounds * len(throughput) + cfg.latency_rounds * len(latency)
    on_start(total)
    records: list[RunRecord] = []
    with _cluster(cfg.nodes, progress) as cluster:
        runner = _Runner(cfg, cluster, jars, java, src)
        on_step("warm-up (not recorded)")
        runner.run(by_name(RAW), "throughput", 0)
        on_step("java start-up baseline")
        if any(c.is_java for c in throughput):
            runner.java_baseline()
        for round_no in range(1, cfg.rounds + 1):
            for contender in throughput:
                on_step(f"throughput r{round_no}/{cfg.rounds}: {contender.name}")
                record = runner.run(contender, "throughput", round_no)
                records.append(record)
                on_done(record)
        for round_no in range(1, cfg.latency_rounds + 1 if latency else 1):
            for contender in latency:
                on_step(f"latency r{round_no}/{cfg.latency_rounds}: {contender.name}")
                record = runner.run(contender, "latency", round_no)
                records.append(record)
                on_done(record)
        start_s = cluster.startup_seconds
    machine = describe(java, KAFKA_VERSION)
    machine["load_average_before_after"] = f"{load_before} -> {load_average()}"
    source_after = source_digest(src)
    if snapshot_dir is not None and cfg.snapshot is not None:
        machine["eventwire"] += f"; contenders ran snapshot {cfg.snapshot} = {_rev(cfg.snapshot)}"
        shutil.rmtree(snapshot_dir, ignore_errors=True)
    machine["eventwire_source_digest"] = (
        source_after
        if source_after == source_before
        else f"CHANGED DURING THE RUN: {source_before} -> {source_after} (results mix versions)"
    )
    return BenchRun(cfg, machine, records, start_s, skipped)


def median(values: list[float]) -> float | None:
    """Median, or None for no values."""
    return statistics.median(values) if values else None
