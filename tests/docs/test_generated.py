"""The reference pages' tables come from the code, and say everything the code has.

``tools/docs_hooks.py`` fills each ``<!-- eventwire:generate NAME -->`` marker at build
time; these tests hold each table to the code it is generated from, so a new metric,
log event, option, setting or command cannot be left out of the docs.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import re
import sys
from types import ModuleType

import pytest

from eventwire._options import PublisherOptions
from eventwire.cli._relay_settings import RelaySettings
from eventwire.observability import logging as ew_logging
from eventwire.observability.metrics import PROMETHEUS_NAMES
from eventwire.schema_registry import SchemaRegistryConfig
from tests.docs import snippets


def _load_hooks() -> ModuleType:
    path = snippets.ROOT / "tools" / "docs_hooks.py"
    spec = importlib.util.spec_from_file_location("eventwire_docs_hooks", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


hooks = _load_hooks()


def _split_row(row: str) -> list[str]:
    """The cells of a Markdown table row (pipes inside code spans or escaped stay)."""
    cells, cell, in_code, escaped = [], "", False, False
    for char in row.strip().strip("|"):
        if char == "|" and not in_code and not escaped:
            cells.append(cell.strip())
            cell = ""
            continue
        in_code = in_code != (char == "`")
        escaped = char == "\\"
        cell += char
    return [*cells, cell.strip()]


def _cells(table: str, column: int = 0) -> list[str]:
    rows = [line for line in table.splitlines() if line.startswith("| ")][1:]
    return [_split_row(row)[column].strip("`") for row in rows]


def test_every_marker_on_the_pages_is_known_and_every_table_is_used() -> None:
    """A page naming an unknown table fails; a table no page shows is an omission."""
    used = set()
    for page in (snippets.ROOT / "docs").rglob("*.md"):
        used |= set(hooks.MARKER.findall(page.read_text(encoding="utf-8")))
    assert used <= set(hooks.GENERATORS)
    assert set(hooks.GENERATORS) == used


def test_render_replaces_blocks_and_runner_fences() -> None:
    """A block (markers and its committed table, stale or not) becomes the table the code
    makes; the runner's fence words become plain ```python fences."""
    out = hooks.render(
        "a\n<!-- eventwire:generate profiles -->\n| stale |\n<!-- eventwire:end -->\n"
        "```python continuation\nx = 1\n```\n"
    )
    assert "| `reliable` |" in out
    assert "stale" not in out
    assert "<!--" not in out
    assert "```python\nx = 1" in out
    with pytest.raises(KeyError, match="no-such-table"):
        hooks.render("<!-- eventwire:generate no-such-table -->\n<!-- eventwire:end -->\n")


@pytest.mark.parametrize(
    "page",
    [
        "<!-- eventwire:generate profiles -->\n",
        "<!-- eventwire:generate profiles -->\n<!-- eventwire:generate metrics -->\n"
        "<!-- eventwire:end -->\n",
    ],
)
def test_a_block_without_its_end_marker_fails(page: str) -> None:
    """A start marker with no end marker of its own is an error, not a page cut short."""
    with pytest.raises(ValueError, match="eventwire:end"):
        hooks.render(page)
    with pytest.raises(ValueError, match="make docs-tables"):
        hooks.refresh(page)


def test_committed_tables_are_what_the_code_makes() -> None:
    """The tables committed in the pages (read as they are on GitHub) equal what the code
    makes now: a new option, metric, log event or command fails here until
    ``make docs-tables`` writes it in."""
    stale = [
        str(page.relative_to(snippets.ROOT))
        for page in sorted((snippets.ROOT / "docs").rglob("*.md"))
        if hooks.refresh(text := page.read_text(encoding="utf-8")) != text
    ]
    assert not stale, f"stale generated tables in {stale}: run `make docs-tables`"


def test_refresh_keeps_markers_and_escapes_pipes_in_code_for_github() -> None:
    """refresh() writes the table between the markers it keeps; a pipe inside a code span
    of a table row is escaped (GitHub splits cells there), and only there."""
    out = hooks.refresh(
        "x `a | b`\n<!-- eventwire:generate publisher-options -->\nSTALE ROW\n<!-- eventwire:end -->\n"
    )
    assert out.startswith("x `a | b`\n<!-- eventwire:generate publisher-options -->\n| option |")
    assert out.endswith("\n<!-- eventwire:end -->\n")
    assert "| `config` | `KafkaConfig \\| None` |" in out
    assert "STALE ROW" not in out


def test_metrics_table_lists_every_instrument_under_its_prometheus_name() -> None:
    """Every instrument of PROMETHEUS_NAMES, and nothing else, is in the metrics table."""
    assert sorted(_cells(hooks.metrics())) == sorted(PROMETHEUS_NAMES.values())


def test_log_events_table_lists_every_named_event() -> None:
    """Each event-name constant of eventwire.observability.logging is in the table."""
    events = set(_cells(hooks.log_events()))
    constants = {
        getattr(ew_logging, name)
        for name in ew_logging.__all__
        if name.isupper() and isinstance(getattr(ew_logging, name), str)
    }
    assert constants <= events
    assert len(events) >= 25


def test_log_events_table_lists_every_event_the_library_logs() -> None:
    """Every event name passed to an eventwire logger in the source is documented."""
    events = set(_cells(hooks.log_events()))
    logged = set()
    for path in (snippets.ROOT / "src" / "eventwire").rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        logged |= set(
            re.findall(r"\.(?:debug|info|warning|error|critical|exception)\(\s*\"([a-z_]+)\"", text)
        )
    circuit = {name for name in logged if name.startswith("circuit_")}
    assert logged - circuit <= events, sorted(logged - circuit - events)


def test_publisher_options_table_lists_every_option() -> None:
    """Every keyword option of Publisher/AsyncPublisher, with its meaning."""
    table = hooks.publisher_options()
    assert _cells(table) == list(PublisherOptions.__annotations__)
    assert all(meaning.strip(" |") for meaning in _cells(table, 3))


def test_relay_and_registry_tables_list_every_setting() -> None:
    """Every RelaySettings field and every SchemaRegistryConfig field is a row."""
    assert _cells(hooks.relay_settings()) == [f.name for f in dataclasses.fields(RelaySettings)]
    assert _cells(hooks.schema_registry_settings()) == [
        f.name for f in dataclasses.fields(SchemaRegistryConfig)
    ]


def test_cli_reference_lists_every_built_in_command() -> None:
    """outbox ddl/status/relay, dlq list/replay and schema export/check each get a section."""
    commands = re.findall(r"^### `(eventwire [a-z ]+)`$", hooks.cli(), re.MULTILINE)
    assert commands == [
        "eventwire dlq list",
        "eventwire dlq replay",
        "eventwire outbox ddl",
        "eventwire outbox relay",
        "eventwire outbox status",
        "eventwire schema check",
        "eventwire schema export",
    ]


def test_error_code_table_classifies_like_the_library() -> None:
    """Each row's class and possibly-written flag are what the delivery policy says."""
    from eventwire import _errors, _policy

    table = hooks.error_codes()
    codes = _cells(table)
    assert {"_MSG_TIMED_OUT", "MSG_SIZE_TOO_LARGE", "_FATAL", "_IN_OUTBOX"} <= set(codes)
    rows = zip(codes, _cells(table, 1), _cells(table, 2), _cells(table, 3), strict=True)
    for code, cls, written, resend in rows:
        assert cls == _policy.classify(code).value
        assert (written == "yes") == _policy.is_possibly_written(code)
        failure = _errors.DeliveryFailure(
            "id", "t", "topic", code, "", _policy.classify(code), written == "yes"
        )
        assert resend == failure.resend.value
