"""Every event name eventwire logs is documented in the table of observability/logging.py."""

from __future__ import annotations

import ast
import re
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src" / "eventwire"
_LEVELS = {"debug", "info", "warning", "error", "critical", "exception"}


def _logged_events() -> dict[str, str]:
    """Each ``<logger>.<level>("event_name", ...)`` call in the package: name -> where."""
    found: dict[str, str] = {}
    for path in sorted(SRC.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr in _LEVELS
                and node.args
                and isinstance(node.args[0], ast.Constant)
                and isinstance(node.args[0].value, str)
                and re.fullmatch(r"[a-z][a-z_]+", node.args[0].value)
            ):
                found.setdefault(node.args[0].value, f"{path.relative_to(SRC)}:{node.lineno}")
    return found


def test_every_logged_event_is_in_the_event_table() -> None:
    """A new log event without a row in the table (its level and fields) fails here."""
    table = (SRC / "observability" / "logging.py").read_text(encoding="utf-8")
    events = _logged_events()
    assert len(events) > 20  # the scan found the package's log calls
    missing = {name: where for name, where in events.items() if f"``{name}``" not in table}
    assert missing == {}
