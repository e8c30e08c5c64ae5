"""``eventwire broker up --security sasl_ssl``: a script connects with the files it prints."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from eventwire import KafkaConfig
from eventwire.transports.kafka import KafkaTransport


def broker(*args: str, state: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "eventwire.cli", "broker", *args, "--state-file", str(state)],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
        env={**os.environ, "COLUMNS": "250"},
    )


@pytest.fixture
def detached(
    tmp_path: Path, kafka_jars: Path
) -> Iterator[tuple[Path, subprocess.CompletedProcess[str]]]:
    """A detached secured 1-node cluster, stopped after the test."""
    state = tmp_path / "broker.json"
    up = broker("up", "--security", "sasl_ssl", "--detach", state=state)
    try:
        yield state, up
    finally:
        broker("down", state=state)


def test_up_prints_a_client_config_per_principal_that_connects(
    detached: tuple[Path, subprocess.CompletedProcess[str]],
) -> None:
    """`broker up --security sasl_ssl` prints client config paths and the bootstrap last; the producer's file connects."""
    state, up = detached
    assert up.returncode == 0, up.stderr
    lines = up.stdout.strip().splitlines()
    assert re.fullmatch(r"localhost:\d+", lines[-1])
    configs = dict(
        m.groups() for line in lines if (m := re.fullmatch(r"client config (\S+): (\S+)", line))
    )
    assert {"admin", "producer", "nobody", "producer-plain", "producer-oauthbearer"} <= set(configs)
    text = Path(configs["producer"]).read_text()
    assert "security.protocol=SASL_SSL" in text
    assert f"bootstrap.servers={lines[-1]}" in text
    assert oct(Path(configs["producer"]).stat().st_mode & 0o777) == "0o600"
    transport = KafkaTransport(KafkaConfig.from_file(configs["producer"]))
    try:
        transport.check_connection(10)
    finally:
        transport.close(5)
    status = broker("status", state=state)
    assert status.returncode == 0, status.stderr
    assert f"client config producer: {configs['producer']}" in status.stdout
