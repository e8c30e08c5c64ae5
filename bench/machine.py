"""A description of the machine and software a benchmark ran on."""

from __future__ import annotations

import datetime as dt
import os
import platform
import re
import subprocess
from importlib import metadata
from typing import Any

__all__ = ["describe", "load_average", "source_digest"]


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _ram_gib() -> float | None:
    try:
        with open("/proc/meminfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return round(int(line.split()[1]) / 1024 / 1024, 1)
    except OSError:
        pass
    return None


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "not installed"


def _java_version(java: str | None) -> str:
    if not java:
        return "not found"
    try:
        out = subprocess.run(
            [java, "-version"], capture_output=True, text=True, timeout=30, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    first = (out.stderr or out.stdout).strip().splitlines()
    return first[0] if first else "unknown"


def _git_revision() -> str:
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    try:
        rev = subprocess.run(
            ["git", "-C", root, "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", root, "status", "--porcelain", "--untracked-files=no", "src"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return f"{rev}{' + uncommitted changes in src/' if dirty else ''}" if rev else "unknown"


def source_digest(src: str | None = None) -> str:
    """A short hash of eventwire's source files under ``src`` (to notice edits during a run)."""
    import hashlib  # noqa: PLC0415
    from pathlib import Path  # noqa: PLC0415

    base = Path(src) if src else Path(__file__).resolve().parent.parent / "src"
    root = base / "eventwire"
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        digest.update(str(path.relative_to(root)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


def load_average() -> str:
    """The 1/5/15-minute load averages (other work on a shared machine shows here)."""
    try:
        with open("/proc/loadavg", encoding="utf-8") as f:
            return " ".join(f.read().split()[:3])
    except OSError:
        return "unknown"


def describe(java: str | None = None, kafka_version: str = "") -> dict[str, Any]:
    """CPU model, cores, RAM, OS, Python, client library versions, Kafka version, date."""
    import confluent_kafka  # noqa: PLC0415

    return {
        "date_utc": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu_model": _cpu_model(),
        "cpu_cores": os.cpu_count(),
        "ram_gib": _ram_gib(),
        "os": f"{platform.system()} {platform.release()}",
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "confluent_kafka": _version("confluent-kafka"),
        "librdkafka": confluent_kafka.libversion()[0],
        "kafka_broker": kafka_version,
        "java": re.sub(r"\s+", " ", _java_version(java)),
        "eventwire": f"{_version('eventwire')} (git {_git_revision()})",
        "msgspec": _version("msgspec"),
        "opentelemetry_sdk": _version("opentelemetry-sdk"),
        "structlog": _version("structlog"),
        "aiokafka": _version("aiokafka"),
        "kafka_python": _version("kafka-python"),
    }
