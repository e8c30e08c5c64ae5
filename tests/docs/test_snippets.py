"""Every code block of the documentation runs, and type-checks with ``mypy --strict``.

The convention is in :mod:`tests.docs.snippets`. Blocks that talk to Kafka get the test
session's real broker (``kafka_bootstrap``, from the devkit's plugin) in place of
``localhost:9092``; in strict mode a broker that cannot start fails them, never skips.
Each program runs in its own Python process, in a fresh directory, so signal handlers,
logging configuration and OpenTelemetry providers set by one block never leak.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.docs import snippets

PROGRAMS = snippets.all_programs()


def _marks(program: snippets.Program) -> list[pytest.MarkDecorator]:
    marks = [pytest.mark.kafka] if program.needs_kafka else []
    return marks + ([pytest.mark.schema_registry] if program.needs_registry else [])


RUNS = [pytest.param(p, id=p.id, marks=_marks(p)) for p in PROGRAMS]
_PYTHONPATH = os.pathsep.join([str(snippets.ROOT / "src"), str(snippets.ROOT / "devkit" / "src")])


def test_pages_have_runnable_blocks() -> None:
    """The docs are found and have blocks to run (a broken parser would find none)."""
    assert len(PROGRAMS) >= 20, [p.id for p in PROGRAMS]


@pytest.mark.parametrize("page", snippets.pages(), ids=lambda p: p.name)
def test_python_fences_start_their_line(page: Path) -> None:
    """An indented ```python fence would be skipped by the runner: none is allowed."""
    assert snippets.check_fences(page) == []


def test_notest_blocks_are_rare_and_say_why(capsys: pytest.CaptureFixture[str]) -> None:
    """Blocks that are not run each give a reason, and stay few."""
    notest = snippets.all_notest()
    with capsys.disabled():
        print(f"\n{len(PROGRAMS)} doc programs run; {len(notest)} blocks not run:")
        for block in notest:
            print(f"  {block.page}:{block.line}: {block.reason}")
    assert all(block.reason.strip() for block in notest)
    assert len(notest) <= 6, [f"{b.page}:{b.line}" for b in notest]


@pytest.mark.parametrize("block", snippets.all_excerpts(), ids=lambda b: f"{b.page}:{b.line}")
def test_excerpt_blocks_are_lines_of_their_tested_file(block: snippets.Block) -> None:
    """An excerpt of an example app shows that app's real lines (the app is tested)."""
    assert (snippets.ROOT / block.reason).is_file(), block.reason
    assert snippets.excerpt_strays(block) == []


def _run(program: snippets.Program, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    source = program.source
    if program.needs_kafka:
        bootstrap: str = request.getfixturevalue("kafka_bootstrap")
        source = source.replace(snippets.BROKER, bootstrap)
    if program.needs_registry:
        registry: str = request.getfixturevalue("schema_registry")
        source = source.replace(snippets.REGISTRY, registry)
    script = tmp_path / "snippet.py"
    script.write_text(source, encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": _PYTHONPATH}
    for name in list(env):
        if name.startswith(("EVENTWIRE_KAFKA_", "EVENTWIRE_RELAY_", "EVENTWIRE_SCHEMA_REGISTRY_")):
            del env[name]
    done = subprocess.run(
        [sys.executable, str(script)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert done.returncode == 0, (
        f"{program.id} exited {done.returncode}\n--- stdout\n{done.stdout}\n"
        f"--- stderr\n{done.stderr}\n--- program\n{source}"
    )
    return done.stdout


@pytest.mark.parametrize("program", RUNS)
def test_program_runs(
    program: snippets.Program, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """The block (with its continuations) runs to completion and exits 0."""
    _run(program, tmp_path, request)


@pytest.fixture(scope="module")
def mypy_errors(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[str]]:
    """``mypy --strict`` over every program at once: the errors of each, by program id."""
    folder = tmp_path_factory.mktemp("doc_programs")
    files: dict[str, str] = {}
    errors: dict[str, list[str]] = {}
    for n, program in enumerate(PROGRAMS):
        try:  # a syntax error would stop mypy for every program: report it on its own
            compile(program.source, program.id, "exec")
        except SyntaxError as exc:
            errors[program.id] = [f"syntax error: {exc}"]
            continue
        name = f"doc_program_{n:03d}.py"
        (folder / name).write_text(program.source, encoding="utf-8")
        files[name] = program.id
    env = {**os.environ, "MYPYPATH": _PYTHONPATH}
    done = subprocess.run(
        [
            sys.executable, "-m", "mypy", "--strict",
            "--config-file", str(snippets.ROOT / "pyproject.toml"),
            "--cache-dir", str(folder / ".mypy_cache"),
            "--no-error-summary", "--show-error-codes", "--no-pretty",
            *sorted(files),
        ],
        cwd=folder, env=env, capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    errors.update({pid: [] for pid in files.values()})
    for line in done.stdout.splitlines():
        match = re.match(r"(doc_program_\d+\.py):\d+: (error|note)", line)
        if match and match.group(2) == "error":
            errors[files[match.group(1)]].append(line)
    assert done.returncode in (0, 1), done.stdout + done.stderr
    if done.returncode == 1:
        assert any(errors.values()), done.stdout + done.stderr
    return errors


@pytest.mark.parametrize("program", PROGRAMS, ids=lambda p: p.id)
def test_program_type_checks(program: snippets.Program, mypy_errors: dict[str, list[str]]) -> None:
    """The block (with its continuations) passes ``mypy --strict``."""
    assert mypy_errors[program.id] == [], "\n".join(
        [*mypy_errors[program.id], "--- program", program.source]
    )
