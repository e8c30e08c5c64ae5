"""SIGTERM while an outbox publisher is flushing to unreachable brokers."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

from eventwire.outbox import SQLiteOutbox

WORKER = Path(__file__).with_name("outbox_sigterm_worker.py")


def test_sigterm_during_flush_exits_bounded_and_keeps_every_event(tmp_path: Path) -> None:
    """Two SIGTERMs during a flush with every broker down: no abort (134), exit 0 within
    a bounded time, and all 1,000 events are still committed in the outbox."""
    db = tmp_path / "outbox.db"
    proc = subprocess.Popen(
        [sys.executable, str(WORKER), str(db)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "FLUSHING"
    started = time.monotonic()
    time.sleep(1.0)
    proc.send_signal(signal.SIGTERM)
    time.sleep(0.3)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=90)
    elapsed = time.monotonic() - started
    print(f"\nexit {proc.returncode} after {elapsed:.1f} s: {out.strip()}")
    assert proc.returncode == 0, (proc.returncode, err[-2000:])
    assert "KEPT 1000 signal=15" in out
    assert elapsed < 45
    assert SQLiteOutbox(db).status().pending == 1000
