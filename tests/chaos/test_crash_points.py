"""SIGKILL of the publishing process at each crash point, then a fresh relay."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from eventwire import KafkaConfig
from eventwire.outbox import OutboxRelay, SQLiteOutbox
from eventwire.transports.kafka import KafkaTransport
from eventwire_devkit.consume import read_topic

WORKER = Path(__file__).with_name("crash_worker.py")
COUNT = 1000


@pytest.mark.parametrize("crash_point", ["after_commit", "after_produce", "after_ack"])
def test_every_committed_event_lands_after_a_crash(
    crash_point: str, tmp_path: Path, kafka_bootstrap: str, kafka_topic: str
) -> None:
    """Killed after the outbox commit, after produce() or after the ack but before
    mark-sent, a restarted relay still delivers every committed event at least once;
    duplicates appear only where mark-sent did not commit, and nothing from a
    rolled-back transaction is ever sent."""
    db = tmp_path / "outbox.db"
    proc = subprocess.run(
        [
            sys.executable,
            str(WORKER),
            str(db),
            kafka_bootstrap,
            kafka_topic,
            crash_point,
            str(COUNT),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == -9, (proc.returncode, proc.stdout, proc.stderr[-2000:])
    assert "COMMITTED" in proc.stdout

    store = SQLiteOutbox(db)
    before = store.status()
    relay = OutboxRelay(store, lambda: KafkaTransport(KafkaConfig(kafka_bootstrap)), lease_s=60)
    time.sleep(2.5)  # the dead worker's 2 s leases expire; its entries become claimable again
    assert relay.drain(timeout=60)
    relay.stop()
    time.sleep(0.5)

    records = read_topic(kafka_bootstrap, kafka_topic, expected=COUNT, idle=1.5)
    ids = [(r.header("ce_id") or b"").decode() for r in records]
    unique = set(ids)
    duplicates = len(ids) - len(unique)
    print(
        f"\n== crash {crash_point} ==\ncommitted {COUNT}  pending after crash {before.pending}"
        f"  consumed {len(ids)}  unique {len(unique)}  duplicates {duplicates}"
        f"  lost {COUNT - len(unique)}"
    )
    assert len(unique) == COUNT
    assert not any(i.startswith("rolled-back-") for i in unique)
    if crash_point == "after_commit":
        assert duplicates == 0  # nothing had been sent before the crash
    if crash_point == "after_ack":
        assert duplicates > 0  # the acked-but-unmarked batch was sent again
        assert duplicates <= 200  # ...and only that batch
