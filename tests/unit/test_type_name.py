"""The default ce_type of a class defined in the script being run is the name it is imported by."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = """
import msgspec
from eventwire import event
from eventwire.testing import capture_events

@event(topic="orders", key="order_id")
class OrderPlaced(msgspec.Struct):
    order_id: str

with capture_events() as captured:
    captured.publisher.publish(OrderPlaced(order_id="o-1"))
    captured.publisher.flush()
print(dict(captured.records()[0].headers)["ce_type"].decode())
"""


def _run(args: list[str], cwd: Path) -> str:
    done = subprocess.run(
        [sys.executable, *args], cwd=cwd, capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip().splitlines()[-1]


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "app").mkdir()
    (tmp_path / "app" / "__init__.py").write_text("")
    (tmp_path / "app" / "events.py").write_text(SCRIPT)
    (tmp_path / "events.py").write_text(SCRIPT)
    return tmp_path


def test_a_script_run_by_path_is_named_by_its_file(project: Path) -> None:
    """`python events.py` publishes events.OrderPlaced, as `import events` names the class."""
    assert _run(["events.py"], project) == "events.OrderPlaced"


def test_a_module_run_with_dash_m_is_named_by_its_module(project: Path) -> None:
    """`python -m app.events` publishes app.events.OrderPlaced."""
    assert _run(["-m", "app.events"], project) == "app.events.OrderPlaced"


def test_code_without_a_file_keeps_main(project: Path) -> None:
    """`python -c` has no module name to give: the class stays __main__.OrderPlaced."""
    assert _run(["-c", SCRIPT], project) == "__main__.OrderPlaced"


def test_an_imported_class_is_named_by_its_module(project: Path) -> None:
    """The same class imported (what schema export and consumers see) has the same name."""
    code = "import events; from eventwire._type_name import default_type_name; "
    code += "print(default_type_name(events.OrderPlaced))"
    assert _run(["-c", code], project) == "events.OrderPlaced"
