"""Run records of local clusters, and the reaper that kills JVMs whose owner died.

Every started cluster writes ``${XDG_CACHE_HOME:-~/.cache}/eventwire/run/clusters/<id>.json``
with its data dir, node pids and its owner (the Python process that started it, or ``None``
for a detached cluster). A JVM is only ever signalled after ``/proc/<pid>/cmdline`` proves it
is a ``kafka.Kafka`` process whose arguments name that cluster's data dir.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import time
from pathlib import Path
from typing import Any

from eventwire_devkit._kafka.jars import cache_root

__all__ = [
    "DATA_MARKER",
    "delete_record",
    "jvm_pids_of",
    "kill_all",
    "process_start_time",
    "read_record",
    "reap_stale",
    "record_path",
    "run_dir",
    "stop_recorded",
    "wait_gone",
    "write_record",
]

DATA_MARKER = ".eventwire-kafka"
Record = dict[str, Any]


def run_dir() -> Path:
    """Return ``${XDG_CACHE_HOME:-~/.cache}/eventwire/run`` (override: ``EVENTWIRE_RUN_DIR``)."""
    override = os.environ.get("EVENTWIRE_RUN_DIR")
    return Path(override).expanduser() if override else cache_root() / "run"


def record_path(cluster_id: str) -> Path:
    """Return the run-record path of one cluster."""
    return run_dir() / "clusters" / f"{cluster_id}.json"


def write_record(record: Record) -> None:
    """Atomically (re)write a cluster's run record."""
    path = record_path(str(record["cluster_id"]))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    tmp.write_text(json.dumps(record, indent=2))
    tmp.replace(path)


def read_record(cluster_id: str) -> Record | None:
    """Return a cluster's run record, or None if there is none (or it is unreadable)."""
    try:
        data: Record = json.loads(record_path(cluster_id).read_text())
    except (OSError, ValueError):
        return None
    return data


def delete_record(cluster_id: str) -> None:
    """Remove a cluster's run record if present."""
    record_path(cluster_id).unlink(missing_ok=True)


def process_start_time(pid: int) -> int | None:
    """Return the kernel start time (clock ticks since boot) of ``pid``, None if gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2 :].split()
    return int(fields[19])  # field 22 of proc(5); fields[0] is field 3


def _owner_alive(pid: int, start_time: int | None) -> bool:
    current = process_start_time(pid)
    return current is not None and (start_time is None or current == start_time)


def _is_our_jvm(pid: int, data_dir: str) -> bool:
    try:
        args = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False  # gone; a zombie has an empty cmdline and is gone too
    needle = data_dir.encode()
    return b"kafka.Kafka" in args and any(needle in arg for arg in args)


def jvm_pids_of(data_dir: str | Path) -> list[int]:
    """Return the pids of live ``kafka.Kafka`` JVMs whose command line names ``data_dir``.

    Scans all of ``/proc``, so it also finds JVMs that no record mentions.
    """
    needle = str(data_dir)
    found: list[int] = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and _is_our_jvm(int(entry.name), needle):
            found.append(int(entry.name))
    return sorted(found)


def _signal_all(pids: list[int], sig: signal.Signals) -> None:
    for pid in pids:
        try:
            os.kill(pid, sig)
            if sig == signal.SIGTERM:
                os.kill(pid, signal.SIGCONT)  # a paused JVM must run to handle SIGTERM
        except ProcessLookupError:
            pass


def wait_gone(data_dir: str, pids: list[int], timeout: float) -> list[int]:
    """Wait until none of ``pids`` is a live JVM of ``data_dir``; return those still alive."""
    deadline = time.monotonic() + timeout
    alive = [p for p in pids if _is_our_jvm(p, data_dir)]
    while alive and time.monotonic() < deadline:
        time.sleep(0.05)
        alive = [p for p in alive if _is_our_jvm(p, data_dir)]
    return alive


def kill_all(data_dir: str, pids: list[int]) -> None:
    """SIGKILL ``pids`` that are JVMs of ``data_dir`` and wait (10 s at most) until gone."""
    _signal_all([p for p in pids if _is_our_jvm(p, data_dir)], signal.SIGKILL)
    wait_gone(data_dir, pids, 10.0)


def _delete_data(record: Record) -> None:
    data_dir = Path(str(record.get("data_dir", "")))
    if record.get("delete_data") and (data_dir / DATA_MARKER).is_file():
        shutil.rmtree(data_dir, ignore_errors=True)


def _terminate(record: Record, graceful_timeout: float) -> list[int]:
    data_dir = str(record["data_dir"])
    pids = [int(n["pid"]) for n in record.get("nodes", []) if n.get("pid")]
    pids = sorted({*(p for p in pids if _is_our_jvm(p, data_dir)), *jvm_pids_of(data_dir)})
    if pids and graceful_timeout > 0:
        _signal_all(pids, signal.SIGTERM)
        left = wait_gone(data_dir, pids, graceful_timeout)
    else:
        left = pids
    kill_all(data_dir, left)
    return pids


def stop_recorded(cluster_id: str, graceful_timeout: float = 15.0) -> list[int]:
    """Stop every JVM of a recorded cluster (SIGTERM, then SIGKILL) and forget it.

    Deletes the data dir when the record says it is disposable. Returns the pids signalled.
    """
    record = read_record(cluster_id)
    if record is None:
        return []
    pids = _terminate(record, graceful_timeout)
    _delete_data(record)
    delete_record(cluster_id)
    return pids


def reap_stale(exclude: str | None = None) -> list[int]:
    """Kill the JVMs of recorded clusters whose owning process has died; return their pids.

    Records of detached clusters (no owner) are removed only once none of their JVMs lives.
    """
    directory = run_dir() / "clusters"
    if not directory.is_dir():
        return []
    reaped: list[int] = []
    for path in directory.glob("*.json"):
        cluster_id = path.stem
        record = read_record(cluster_id)
        if cluster_id == exclude or record is None or "data_dir" not in record:
            continue
        owner = record.get("owner_pid")
        if owner is not None and _owner_alive(int(owner), record.get("owner_start_time")):
            continue
        if owner is None and jvm_pids_of(str(record["data_dir"])):
            continue  # a detached cluster that still runs
        reaped += _terminate(record, graceful_timeout=0)
        _delete_data(record)
        delete_record(cluster_id)
    return reaped
