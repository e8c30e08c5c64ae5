"""The demo's no-Java fallback (the real-broker path runs in tests/integration via make demo's code)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


class TestDemoWithoutJava:
    def test_falls_back_to_memory_and_says_so(self, tmp_path: Path) -> None:
        """With no java on PATH and no JAVA_HOME, `eventwire demo` runs on the in-memory
        transport, says so plainly, and still verifies every event."""
        bin_dir = tmp_path / "bin"
        bin_dir.mkdir()
        (bin_dir / "python").symlink_to(sys.executable)
        env = {k: v for k, v in os.environ.items() if k not in {"JAVA_HOME", "EVENTWIRE_BOOTSTRAP"}}
        env["PATH"] = str(bin_dir)
        env["COLUMNS"] = "200"
        proc = subprocess.run(
            [sys.executable, "-m", "eventwire.cli", "demo", "--events", "500"],
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
            check=False,
        )
        assert proc.returncode == 0, proc.stderr[-2000:]
        assert "No Java found" in proc.stderr
        assert "IN-MEMORY transport" in proc.stderr
        assert "VERIFIED: 500 of 500" in proc.stdout
