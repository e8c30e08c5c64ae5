"""What the runtime wheel ships, and how the ``eventwire`` command behaves without its extra.

The wheel is built from this checkout the way ``pip wheel .`` builds it (offline: no
build isolation, hatchling comes with the dev extra). The dev/test workshop lives in the
``eventwire-devkit`` distribution (``devkit/``) and must not leak into it.
"""

from __future__ import annotations

import ast
import configparser
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from email.message import Message
from email.parser import Parser
from pathlib import Path

import pytest
from packaging.requirements import Requirement

REPO_ROOT = Path(__file__).resolve().parents[1]

#: Modules of the workshop, by the names they had in the runtime package or have now.
WORKSHOP_NAMES = ("_kafka", "librdkafka", "pytest_plugin", "consume", "demo", "bench", "broker")
WORKSHOP_FILES = (
    "eventwire/testing/",
    "eventwire/demo/",
    "eventwire/cli/broker.py",
    "eventwire/cli/demo.py",
    "eventwire/cli/bench.py",
    "eventwire_devkit/",
    "bench/",
)
#: The one sys.path change a runtime module may make, and why: ``eventwire schema
#: export myapp.events`` imports the *user's* modules, and a console script does not put
#: the current directory on sys.path (``python -m`` does); uvicorn's ``--app-dir`` does
#: the same by default. It adds the user's directory, never the workshop.
ALLOWED_MENTIONS = frozenset({("eventwire/cli/schema.py", "sys.path.insert")})

#: Imports no runtime module may make (the workshop's tools, the test runner).
FORBIDDEN_IMPORTS = {"ctypes", "pytest", "eventwire_devkit", "bench", "subprocess"}


#: The runtime's extras: what an application may install. Dev and bench tools are PEP 735
#: dependency groups of pyproject.toml, never extras.
RUNTIME_EXTRAS = {
    "cli",
    "contracts",
    "otel",
    "prometheus",
    "registry",
    "postgres",
    "pydantic",
    "asyncpg",
    "aiosqlite",
}
#: The Python versions CI runs the suites on (.ci/run): the classifiers say these, no more.
TESTED_PYTHONS = {"3.11"}
PROJECT_URLS = {"Homepage", "Documentation", "Source", "Issues", "Changelog"}


def _build_wheel(source: Path, out: Path, pattern: str) -> Path:
    """Build ``source``'s wheel as ``pip wheel`` does, offline (hatchling from the dev group)."""
    proc = subprocess.run(
        [
            *(sys.executable, "-m", "pip", "wheel", str(source), "-q", "-w", str(out)),
            *("--no-deps", "--no-build-isolation", "--no-index"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    [path] = out.glob(pattern)
    return path


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[zipfile.ZipFile]:
    path = _build_wheel(REPO_ROOT, tmp_path_factory.mktemp("wheel"), "eventwire-*.whl")
    with zipfile.ZipFile(path) as zf:
        yield zf


@pytest.fixture(scope="module")
def devkit_wheel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[zipfile.ZipFile]:
    out = tmp_path_factory.mktemp("devkit-wheel")
    path = _build_wheel(REPO_ROOT / "devkit", out, "eventwire_devkit-*.whl")
    with zipfile.ZipFile(path) as zf:
        yield zf


def _source_version(path: Path) -> str:
    """The ``__version__ = "..."`` assigned in ``path`` (read, not imported)."""
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Assign) and [
            t.id for t in node.targets if isinstance(t, ast.Name)
        ] == ["__version__"]:
            assert isinstance(node.value, ast.Constant)
            return str(node.value.value)
    raise AssertionError(f"no __version__ in {path}")


def _dist_info(wheel: zipfile.ZipFile, name: str) -> str:
    [member] = [n for n in wheel.namelist() if n.endswith(f".dist-info/{name}")]
    return wheel.read(member).decode()


def _requirements(wheel: zipfile.ZipFile) -> list[Requirement]:
    metadata = Parser().parsestr(_dist_info(wheel, "METADATA"))
    return [Requirement(r) for r in metadata.get_all("Requires-Dist") or []]


def _extras_of(req: Requirement) -> set[str]:
    """The extras whose installation pulls ``req`` in (empty: always installed)."""
    if req.marker is None:
        return set()
    names = {
        "cli",
        "contracts",
        "dev",
        "postgres",
        "pydantic",
        "otel",
        "prometheus",
        "bench",
        "registry",
    }
    return {e for e in names if req.marker.evaluate({"extra": e})}


class TestRuntimeWheel:
    def test_it_holds_no_workshop_module(self, wheel: zipfile.ZipFile) -> None:
        """No file of the cluster runner, librdkafka mock, PostgreSQL runner, plugin, demo
        or bench is in the runtime wheel, and no Maven pom or log4j config either."""
        names = wheel.namelist()
        leaked = [n for n in names if n.startswith(WORKSHOP_FILES)]
        leaked += [n for n in names if Path(n).stem in WORKSHOP_NAMES]
        leaked += [n for n in names if n.endswith(("pom.xml", "log4j2.yaml"))]
        assert not leaked, leaked
        assert "eventwire/testing.py" in names

    def test_no_module_imports_workshop_tools(self, wheel: zipfile.ZipFile) -> None:
        """No runtime module imports ctypes, subprocess, pytest, the devkit or bench, none
        runs initdb or Maven, and none changes sys.path (but the one entry of
        ALLOWED_MENTIONS); only transports/kafka.py imports confluent_kafka (and
        schema_registry/ its schema_registry subpackage)."""
        problems = []
        for name in wheel.namelist():
            if not name.endswith(".py"):
                continue
            source = wheel.read(name).decode()
            for node in ast.walk(ast.parse(source)):
                if isinstance(node, ast.Import):
                    modules = [a.name for a in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    modules = [node.module]
                else:
                    continue
                for module in modules:
                    top = module.split(".")[0]
                    if top in FORBIDDEN_IMPORTS:
                        problems.append(f"{name} imports {module}")
                    if top == "confluent_kafka" and not (
                        name == "eventwire/transports/kafka.py"
                        or (
                            name.startswith("eventwire/schema_registry/")
                            and module.startswith("confluent_kafka.schema_registry")
                        )
                    ):
                        problems.append(f"{name} imports {module}")
            for word in (
                "initdb",
                "mvn",
                "sys.path.insert",
                "sys.path.append",
                "class LocalKafkaCluster",
                "class LocalPostgres",
                "class MockCluster",
            ):
                if word in source and (name, word) not in ALLOWED_MENTIONS:
                    problems.append(f"{name} mentions {word}")
        assert not problems, problems

    def test_it_registers_no_pytest_plugin(self, wheel: zipfile.ZipFile) -> None:
        """The wheel's entry points are the console script only: no pytest11 plugin."""
        entry_points = configparser.ConfigParser()
        entry_points.read_string(_dist_info(wheel, "entry_points.txt"))
        assert entry_points.sections() == ["console_scripts"]
        assert entry_points["console_scripts"]["eventwire"].strip() == "eventwire.cli:main"

    def test_typer_and_rich_come_only_with_the_cli_extra(self, wheel: zipfile.ZipFile) -> None:
        """typer and rich are never installed by default: only through ``cli``."""
        reqs = [r for r in _requirements(wheel) if r.name in {"typer", "rich"}]
        assert {r.name for r in reqs if "cli" in _extras_of(r)} == {"typer", "rich"}
        for req in reqs:
            assert _extras_of(req), f"{req} is a base dependency"
            assert _extras_of(req) == {"cli"}, req

    def test_registry_extra_brings_confluents_registry_serializers(
        self, wheel: zipfile.ZipFile
    ) -> None:
        """``registry`` asks for confluent-kafka with its schemaregistry, json and avro extras;
        the base install does not."""
        confluent = [r for r in _requirements(wheel) if r.name == "confluent-kafka"]
        registry = [r for r in confluent if "registry" in _extras_of(r)]
        assert [r.extras for r in registry] == [{"schemaregistry", "json", "avro"}]
        assert all(not r.extras for r in confluent if not _extras_of(r))

    def test_pyyaml_comes_only_with_the_cli_or_contracts_extra(
        self, wheel: zipfile.ZipFile
    ) -> None:
        """PyYAML (AsyncAPI documents as YAML) is never a base dependency: ``cli`` and
        ``contracts`` bring it."""
        reqs = [r for r in _requirements(wheel) if r.name.lower() == "pyyaml"]
        assert reqs
        extras = set().union(*(_extras_of(r) for r in reqs))
        assert extras == {"cli", "contracts"}
        assert all(_extras_of(r) for r in reqs)

    def test_pydantic_comes_only_with_the_pydantic_extra(self, wheel: zipfile.ZipFile) -> None:
        """pydantic models are optional events: pydantic is installed by the ``pydantic``
        extra, never by default."""
        reqs = [r for r in _requirements(wheel) if r.name == "pydantic"]
        assert any("pydantic" in _extras_of(r) for r in reqs)
        for req in reqs:
            assert _extras_of(req) == {"pydantic"}, req

    def test_postgres_extra_lets_the_application_pick_the_psycopg_build(
        self, wheel: zipfile.ZipFile
    ) -> None:
        """The ``postgres`` extra needs plain ``psycopg`` (no ``[binary]``: only the test
        dependency group has it)."""
        psycopg = [r for r in _requirements(wheel) if r.name == "psycopg"]
        assert [r.extras for r in psycopg] == [set()]
        assert [_extras_of(r) for r in psycopg] == [{"postgres"}]


def _metadata(wheel: zipfile.ZipFile) -> Message:
    return Parser().parsestr(_dist_info(wheel, "METADATA"))


def _urls(metadata: Message) -> dict[str, str]:
    return dict(u.split(", ", 1) for u in metadata.get_all("Project-URL") or [])


def _python_classifiers(metadata: Message) -> set[str]:
    prefix = "Programming Language :: Python :: 3."
    return {
        "3." + c.removeprefix(prefix)
        for c in metadata.get_all("Classifier") or []
        if c.startswith(prefix)
    }


class TestReleaseMetadata:
    def test_extras_are_the_runtime_ones_only(self, wheel: zipfile.ZipFile) -> None:
        """No ``dev`` or ``bench`` extra (and no test tool, matplotlib or ruff) in the
        wheel's metadata: they are dependency groups of the source tree."""
        metadata = _metadata(wheel)
        assert set(metadata.get_all("Provides-Extra") or []) == RUNTIME_EXTRAS
        names = {r.name.lower() for r in _requirements(wheel)}
        leaked = names & {"pytest", "ruff", "mypy", "matplotlib", "hatchling", "hypothesis"}
        assert not leaked, leaked

    def test_version_comes_from_eventwire___version__(self, wheel: zipfile.ZipFile) -> None:
        """The wheel's Version is the ``__version__`` in src/eventwire/__init__.py (one place),
        and the installed distribution's metadata agrees with the imported package."""
        import importlib.metadata

        import eventwire

        source = _source_version(REPO_ROOT / "src" / "eventwire" / "__init__.py")
        assert _metadata(wheel)["Version"] == source
        assert importlib.metadata.version("eventwire") == eventwire.__version__

    def test_urls_classifiers_and_license(self, wheel: zipfile.ZipFile) -> None:
        """Project URLs, the tested Python versions as classifiers (no untested one), the
        Typed classifier, the Apache-2.0 license expression and its LICENSE file."""
        metadata = _metadata(wheel)
        assert set(_urls(metadata)) >= PROJECT_URLS
        assert _python_classifiers(metadata) == TESTED_PYTHONS
        assert "Typing :: Typed" in (metadata.get_all("Classifier") or [])
        assert metadata["License-Expression"] == "Apache-2.0"
        assert metadata["Requires-Python"] == ">=3.11"
        license_text = _dist_info(wheel, "licenses/LICENSE")
        assert "Apache License" in license_text
        assert "Version 2.0, January 2004" in license_text
        assert license_text == (REPO_ROOT / "LICENSE").read_text()

    def test_the_devkit_wheel_has_its_own_metadata_and_readme(
        self, devkit_wheel: zipfile.ZipFile
    ) -> None:
        """eventwire-devkit's wheel: its own name, version (eventwire_devkit.__version__),
        URLs, classifiers and license, and devkit/README.md as its long description."""
        metadata = _metadata(devkit_wheel)
        assert metadata["Name"] == "eventwire-devkit"
        devkit_init = REPO_ROOT / "devkit" / "src" / "eventwire_devkit" / "__init__.py"
        assert metadata["Version"] == _source_version(devkit_init)
        assert metadata["Description-Content-Type"] == "text/markdown"
        readme = (REPO_ROOT / "devkit" / "README.md").read_text()
        assert metadata.get_payload().strip() == readme.strip()
        assert readme.startswith("# eventwire-devkit")
        assert set(_urls(metadata)) >= {"Homepage", "Source", "Issues", "Changelog"}
        assert _python_classifiers(metadata) == TESTED_PYTHONS
        assert "Framework :: Pytest" in (metadata.get_all("Classifier") or [])
        assert metadata["License-Expression"] == "Apache-2.0"
        assert "Apache License" in _dist_info(devkit_wheel, "licenses/LICENSE")
        assert not set(metadata.get_all("Provides-Extra") or [])

    def test_dependency_groups_hold_the_dev_and_bench_tools(self) -> None:
        """pyproject's [dependency-groups]: ``dev`` includes ``test``, ``lint`` and ``docs``;
        ``bench``
        has the benchmark's contenders and chart; the Makefile installs ``--group dev``
        after upgrading pip to one that reads groups (>= 25.1)."""
        import tomllib

        groups = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["dependency-groups"]
        assert groups["dev"] == [
            {"include-group": "test"},
            {"include-group": "lint"},
            {"include-group": "docs"},
        ]
        names = {
            g: {Requirement(r).name for r in groups[g]} for g in ("test", "lint", "docs", "bench")
        }
        assert {"pytest", "hatchling", "hypothesis"} <= names["test"]
        assert {"ruff", "mypy"} <= names["lint"]
        assert {"mkdocs", "mkdocstrings"} <= names["docs"]
        assert {"matplotlib", "aiokafka", "kafka-python"} <= names["bench"]
        makefile = (REPO_ROOT / "Makefile").read_text()
        assert "--upgrade 'pip>=25.1'" in makefile
        assert "--group dev" in makefile
        assert "--group bench" in makefile


def _run_cli(code: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code, *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=REPO_ROOT,
    )


class TestCommandLine:
    @pytest.mark.parametrize("blocked", ["typer", "rich"])
    def test_without_the_cli_extra_it_names_the_extra_in_one_line(self, blocked: str) -> None:
        """With typer or rich missing, ``eventwire`` prints one line naming
        ``pip install 'eventwire[cli]'`` on stderr and exits 1."""
        code = (
            f"import sys; sys.modules[{blocked!r}] = None; sys.argv = ['eventwire', 'outbox']; "
            "from eventwire.cli import main; main()"
        )
        proc = _run_cli(code)
        assert proc.returncode == 1
        assert proc.stdout == ""
        lines = proc.stderr.splitlines()
        assert len(lines) == 1, proc.stderr
        assert "pip install 'eventwire[cli]'" in lines[0]

    def test_devkit_commands_are_discovered_through_entry_points(self) -> None:
        """With the devkit installed, ``eventwire --help`` lists its broker, registry, demo
        and bench commands beside the runtime's outbox and dlq."""
        proc = _run_cli("from eventwire.cli import main; main()", "--help")
        assert proc.returncode == 0, proc.stderr
        for command in ("outbox", "dlq", "broker", "registry", "demo", "bench"):
            assert f" {command} " in proc.stdout, proc.stdout
        assert "skipping command" not in proc.stderr


def test_the_changelog_keeps_a_changelog_with_an_unreleased_section() -> None:
    """CHANGELOG.md says it follows Keep a Changelog, starts with an [Unreleased] section
    whose subsections are Keep a Changelog's kinds."""
    text = (REPO_ROOT / "CHANGELOG.md").read_text()
    assert text.startswith("# Changelog\n")
    assert "[Keep a Changelog](https://keepachangelog.com/" in text
    sections = [line for line in text.splitlines() if line.startswith("## ")]
    assert sections[0] == "## [Unreleased]"
    kinds = {line[4:] for line in text.splitlines() if line.startswith("### ")}
    assert kinds
    assert kinds <= {"Added", "Changed", "Deprecated", "Removed", "Fixed", "Security"}
