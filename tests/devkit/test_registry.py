"""The devkit's local Schema Registry: build cache, start/stop, and `eventwire registry`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from eventwire_devkit.registry import (
    REGISTRY_VERSION,
    LocalSchemaRegistry,
    is_registry_process,
    registry_cache_dir,
)

pytest_plugins = ["pytester"]


def registry_cli(*args: str, state: Path) -> subprocess.CompletedProcess[str]:
    # The typer app itself: `eventwire registry` is the same app, reached through the
    # devkit's `eventwire.commands` entry point.
    return subprocess.run(
        [
            sys.executable,
            "-c",
            "from eventwire_devkit.cli.registry import app; app()",
            *args,
            "--state-file",
            str(state),
        ],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
        env={**os.environ, "COLUMNS": "250"},
    )


def test_cache_dir_honours_the_override(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """EVENTWIRE_REGISTRY_CACHE moves the build cache; the version is the last path part."""
    monkeypatch.setenv("EVENTWIRE_REGISTRY_CACHE", str(tmp_path))
    assert registry_cache_dir() == tmp_path / REGISTRY_VERSION


def test_build_is_cached_with_a_completion_marker(schema_registry_build: Path) -> None:
    """The build leaves the runnable jar, its lib/ and a completion marker in the cache."""
    assert (schema_registry_build / ".complete").is_file()
    assert any(schema_registry_build.glob("*-runner.jar"))
    assert (schema_registry_build / "lib").is_dir()


def test_local_registry_serves_the_confluent_api_and_stops(
    local_schema_registry: LocalSchemaRegistry,
) -> None:
    """A started registry answers the Confluent API on loopback; stop() ends its JVM."""
    registry = local_schema_registry
    assert registry.url.startswith("http://127.0.0.1:")
    assert registry.url.endswith("/apis/ccompat/v7")
    with urllib.request.urlopen(registry.url + "/subjects", timeout=10) as response:
        assert json.loads(response.read()) == []
    pid = registry.pid
    assert pid is not None and is_registry_process(pid)
    registry.stop()
    assert not registry.running
    assert not is_registry_process(pid)
    assert not registry.ready()


def test_cli_up_detach_status_down(tmp_path: Path, schema_registry_build: Path) -> None:
    """`registry up --detach` prints the URL last; `status` finds it ready; `down` stops it."""
    state = tmp_path / "registry.json"
    up = registry_cli("up", "--detach", state=state)
    try:
        assert up.returncode == 0, up.stderr
        url = up.stdout.strip().splitlines()[-1]
        assert url.startswith("http://127.0.0.1:") and url.endswith("/apis/ccompat/v7")
        status = registry_cli("status", state=state)
        assert status.returncode == 0, status.stderr
        assert status.stdout.strip().splitlines()[-1] == url
        pid = int(json.loads(state.read_text())["pid"])
        assert is_registry_process(pid)
    finally:
        down = registry_cli("down", state=state)
    assert down.returncode == 0, down.stderr
    assert not is_registry_process(pid)
    assert registry_cli("status", state=state).returncode == 1


NEEDS_REGISTRY = """
def test_needs_a_registry(schema_registry):
    pass
"""


@pytest.mark.parametrize("strict", [False, True])
def test_unbuildable_registry_skips_or_fails_in_strict_mode(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, strict: bool
) -> None:
    """Not built and no Maven: `schema_registry` skips with the reason, or fails when strict."""
    monkeypatch.setenv("EVENTWIRE_REGISTRY_CACHE", str(tmp_path / "empty-cache"))
    monkeypatch.setenv("PATH", str(tmp_path / "no-tools"))
    for name in ("CI", "EVENTWIRE_DEVKIT_STRICT", "EVENTWIRE_TEST_SCHEMA_REGISTRY_URL"):
        monkeypatch.delenv(name, raising=False)
    if strict:
        monkeypatch.setenv("EVENTWIRE_DEVKIT_STRICT", "1")
    pytester.makepyfile(NEEDS_REGISTRY)
    result = pytester.runpytest_subprocess("-p", "eventwire_devkit.pytest_plugin", "-rs")
    if strict:
        result.assert_outcomes(errors=1)
        result.stdout.fnmatch_lines(["*Maven (`mvn`) is not on PATH*"])
    else:
        result.assert_outcomes(skipped=1)
        result.stdout.fnmatch_lines(["*cannot run a local Schema Registry*"])
