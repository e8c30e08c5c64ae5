"""``eventwire schema export|check``: files, exit codes and messages."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from eventwire.cli._app import build_app
from eventwire.contracts import load_document

V1 = """
import msgspec
from eventwire import event

@event(topic="orders", key="order_id", type_name="shop.order.placed")
class OrderPlaced(msgspec.Struct):
    order_id: str
    total: int
"""
#: compatible in every mode: a field with a default added, int widened? no: only the default
V2_OK = V1 + "    note: str = ''\n"
#: breaks BACKWARD (a field without default) and FORWARD (int -> float)
V3_BAD = V1.replace("total: int", "total: float\n    customer: str")


@pytest.fixture
def modules(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A directory on sys.path holding shop_v1, shop_v2 and shop_v3."""
    for name, source in (("shop_v1", V1), ("shop_v2", V2_OK), ("shop_v3", V3_BAD)):
        (tmp_path / f"{name}.py").write_text(textwrap.dedent(source))
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path
    for name in ("shop_v1", "shop_v2", "shop_v3"):
        sys.modules.pop(name, None)


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(build_app(), ["schema", *args])
    return result.exit_code, result.stdout, result.stderr


def test_export_writes_a_yaml_document_of_the_modules_events(modules: Path) -> None:
    """`schema export MODULE -o FILE` writes the AsyncAPI 3.0 YAML and says what it wrote."""
    code, _, err = run("export", "shop_v1", "-o", str(modules / "v1.yaml"), "--api-version", "1")
    assert code == 0, err
    assert "wrote" in err and "1 message(s) on 1 topic(s)" in err
    document = load_document(modules / "v1.yaml")
    assert document["asyncapi"] == "3.0.0" and document["info"]["version"] == "1"
    assert document["channels"]["orders"]["address"] == "orders"


def test_export_without_output_prints_the_document(modules: Path) -> None:
    """Without -o the YAML goes to stdout (and .json gives JSON)."""
    code, out, _ = run("export", "shop_v1")
    assert code == 0 and out.startswith("asyncapi: 3.0.0")
    code, _, _ = run("export", "shop_v1", "-o", str(modules / "v1.json"))
    assert code == 0 and (modules / "v1.json").read_text().startswith("{")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["nope_module"], "cannot import module 'nope_module'"),
        (["shop_v1", "--codec", "avro"], "--codec must be json or msgpack"),
        (["json"], "no routed event type"),
    ],
)
def test_export_exits_2_naming_the_problem(modules: Path, args: list[str], message: str) -> None:
    """A module that does not import, routes nothing, or a bad option: exit 2, one message."""
    code, out, err = run("export", *args)
    assert code == 2 and out == ""
    assert message in err


def test_check_exits_0_for_a_compatible_change(modules: Path) -> None:
    """A field added with a default is compatible in FULL_TRANSITIVE: exit 0, one line."""
    assert run("export", "shop_v1", "-o", str(modules / "v1.yaml"))[0] == 0
    code, out, err = run(
        "check", "shop_v2", "--against", str(modules / "v1.yaml"), "--mode", "full_transitive"
    )
    assert code == 0, out + err
    assert out.startswith("compatible (FULL_TRANSITIVE) with")


def test_check_exits_1_listing_each_break(modules: Path) -> None:
    """Each break is a line: message, field path, what changed, and which side it breaks."""
    assert run("export", "shop_v1", "-o", str(modules / "v1.yaml"))[0] == 0
    code, out, _ = run("check", "shop_v3", "--against", str(modules / "v1.yaml"), "--mode", "FULL")
    assert code == 1
    lines = out.splitlines()
    assert lines[0].startswith("2 incompatible change(s) (FULL) against")
    assert any(
        "shop.order.placed $.customer: field 'customer' is required in the new schema" in line
        and "(BACKWARD)" in line
        for line in lines
    ), out
    assert any(
        "shop.order.placed $.total: type changed: old integer, new number" in line
        and "(FORWARD)" in line
        for line in lines
    ), out
    code, out, _ = run("check", "shop_v3", "--against", str(modules / "v1.yaml"))
    assert code == 1 and "(BACKWARD)" in out and "(FORWARD)" not in out  # the default mode


def test_check_transitive_takes_several_files_or_a_directory(modules: Path) -> None:
    """--against twice (or a directory) checks every version in the _TRANSITIVE modes."""
    versions = modules / "versions"
    versions.mkdir()
    assert run("export", "shop_v1", "-o", str(versions / "v1.yaml"))[0] == 0
    assert run("export", "shop_v2", "-o", str(versions / "v2.yaml"))[0] == 0
    code, out, _ = run(
        "check", "shop_v3", "--against", str(versions), "--mode", "FORWARD_TRANSITIVE"
    )
    assert code == 1 and "[against" in out
    files = ["--against", str(versions / "v1.yaml"), "--against", str(versions / "v2.yaml")]
    code, out, _ = run("check", "shop_v2", *files, "--mode", "BACKWARD_TRANSITIVE")
    assert code == 0, out


def test_check_exits_2_when_the_old_contract_cannot_be_read(modules: Path) -> None:
    """A missing file or one that is not AsyncAPI 3: exit 2 with the reason, not a traceback."""
    code, _, err = run("check", "shop_v1", "--against", str(modules / "missing.yaml"))
    assert code == 2 and "cannot read" in err
    (modules / "old.yaml").write_text("asyncapi: 2.6.0\n")
    code, _, err = run("check", "shop_v1", "--against", str(modules / "old.yaml"))
    assert code == 2 and "not an AsyncAPI 3 document" in err
    code, _, err = run("check", "shop_v1", "--against", str(modules / "old.yaml"), "--mode", "UP")
    assert code == 2 and "'UP' is not one of" in err


def test_the_installed_command_runs_it(modules: Path) -> None:
    """`python -m eventwire.cli schema check` in a subprocess: the same exit codes."""
    assert run("export", "shop_v1", "-o", str(modules / "v1.yaml"))[0] == 0
    env_path = f"{modules}:{':'.join(p for p in sys.path if p)}"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "eventwire.cli",
            "schema",
            "check",
            "shop_v3",
            "--against",
            str(modules / "v1.yaml"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={"PYTHONPATH": env_path, "PATH": "/usr/bin:/bin"},
    )
    assert proc.returncode == 1, proc.stderr
    assert "shop.order.placed $.customer" in proc.stdout


PYDANTIC_V1 = """
import pydantic
from eventwire import event

@event(topic="invoices", key="invoice_id", type_name="billing.invoice")
class Invoice(pydantic.BaseModel):
    invoice_id: str = pydantic.Field(alias="invoiceId")
    amount: float
"""
#: BACKWARD-compatible: a field with a default; an alias that still reads the old name
PYDANTIC_V2 = (
    PYDANTIC_V1.replace(
        'invoice_id: str = pydantic.Field(alias="invoiceId")',
        "invoice_id: str = pydantic.Field(\n"
        '        validation_alias=pydantic.AliasChoices("id", "invoiceId"), serialization_alias="id"\n'
        "    )",
    )
    + "    note: str | None = None\n"
)


def test_check_reads_pydantic_modules(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`schema export`/`check` on pydantic events: the alias change that still reads the old
    name passes BACKWARD (exit 0) and breaks FORWARD (exit 1, naming the field)."""
    for name, source in (("bill_v1", PYDANTIC_V1), ("bill_v2", PYDANTIC_V2)):
        (tmp_path / f"{name}.py").write_text(textwrap.dedent(source))
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        assert run("export", "bill_v1", "-o", str(tmp_path / "v1.yaml"))[0] == 0
        against = ["--against", str(tmp_path / "v1.yaml")]
        code, out, err = run("check", "bill_v2", *against, "--mode", "BACKWARD")
        assert code == 0, out + err
        code, out, _ = run("check", "bill_v2", *against, "--mode", "FORWARD")
        assert code == 1
        assert "billing.invoice $.invoiceId: field 'invoiceId' is required in the old" in out
    finally:
        for name in ("bill_v1", "bill_v2"):
            sys.modules.pop(name, None)


def test_the_console_script_imports_modules_from_the_current_directory(modules: Path) -> None:
    """`eventwire schema export myapp.events` run next to myapp/ finds it, as `python -m`
    would (a console script does not put the current directory on sys.path by itself)."""
    script = Path(sys.executable).parent / "eventwire"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.run(
        [str(script), "schema", "export", "shop_v1", "-o", "out.yaml"],
        cwd=modules,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr
    assert "shop.order.placed" in (modules / "out.yaml").read_text()
