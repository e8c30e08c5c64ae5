"""MkDocs hook: the reference tables of the docs, generated from the code at build time.

A page holds a generated block, its markers each on a line of its own::

    <!-- eventwire:generate log-events -->
    ...the table, as last generated...
    <!-- eventwire:end -->

The table between the markers is committed, so the pages read complete where Markdown is
shown as it is (GitHub, an editor); ``make docs-tables`` (``python tools/docs_hooks.py``)
writes it afresh from the code, and ``tests/docs/test_generated.py`` fails while a
committed table differs from what the code makes. At build time, :func:`on_page_markdown`
replaces each block (markers included) with the table :data:`GENERATORS` makes from the
code that owns it, so the site cannot drift from the library either:

* ``log-events``: the events table in the docstring of ``eventwire.observability.logging``;
* ``metrics``: the instrument table in the docstring of ``eventwire.observability.metrics``
  (checked against ``PROMETHEUS_NAMES``);
* ``publisher-options``, ``profiles``, ``kafka-config``, ``relay-settings``,
  ``schema-registry-settings``, ``environment``: the option dataclasses and constants;
* ``error-codes``: the classification, meaning and remedy of every error code eventwire
  knows (``eventwire._policy`` and ``eventwire._errors``);
* ``cli``: every built-in ``eventwire`` command, its arguments and options (Typer/Click).

An unknown marker name, or a block without its end marker, fails the build.
``tests/docs/test_generated.py`` checks the generated tables against the code too.
"""

from __future__ import annotations

import dataclasses
import inspect
import re
import sys
import typing
from collections.abc import Callable, Iterable, Sequence
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

_ROOT = Path(__file__).resolve().parent.parent
for _path in (_ROOT / "src",):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

import typer  # noqa: E402 - after the sys.path set-up above

from eventwire import _errors, _policy  # noqa: E402
from eventwire._config import PROFILES, KafkaConfig  # noqa: E402
from eventwire._config_load import RELAY_ENV_PREFIX  # noqa: E402
from eventwire._errors import ErrorClass  # noqa: E402
from eventwire._options import Options, PublisherOptions  # noqa: E402
from eventwire.cli._app import COMMANDS_GROUP, build_app  # noqa: E402
from eventwire.cli._relay_settings import RelaySettings  # noqa: E402
from eventwire.observability import logging as ew_logging  # noqa: E402
from eventwire.observability import metrics as ew_metrics  # noqa: E402
from eventwire.schema_registry import ENV_PREFIX, SchemaRegistryConfig  # noqa: E402

MARKER = re.compile(r"^<!-- eventwire:generate ([a-z-]+) -->$", re.MULTILINE)
END_MARKER = "<!-- eventwire:end -->"
#: A whole generated block: its start marker (group 1: the table's name), the committed
#: table (group 2) and its end marker.
BLOCK = re.compile(
    r"^<!-- eventwire:generate ([a-z-]+) -->\n(.*?)^<!-- eventwire:end -->$",
    re.MULTILINE | re.DOTALL,
)
#: The test runner's fence words (tests/docs/snippets.py), which Markdown does not know.
_RUNNER_FENCE = re.compile(r"^```python (?:continuation|notest|excerpt)[ \t]*$", re.MULTILINE)


# -- helpers --------------------------------------------------------------------------------


def rst_to_md(text: str) -> str:
    """Inline reStructuredText of the docstrings (``x``, :class:`X`) as Markdown."""
    text = re.sub(r":[a-z]+:`~?([^`]+)`", r"`\1`", text)
    text = text.replace("``", "`")
    return re.sub(r"\s+", " ", text).strip()


def _cell(text: str) -> str:
    """A table cell: pipes escaped outside code spans (inside them they are literal)."""
    parts = text.split("`")
    return "`".join(p if k % 2 else p.replace("|", "\\|") for k, p in enumerate(parts))


def md_table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    """A Markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def rst_simple_table(doc: str, first_header: str | None) -> list[list[str]]:
    """The rows of a reST simple table in ``doc``.

    ``first_header``: the first header cell of the table wanted; None for the first
    table without a header row. Continuation lines (blank first column) extend the row
    above: their first-column text joins the first cell, the rest joins the last cell.
    """
    lines = doc.splitlines()
    rules = [i for i, line in enumerate(lines) if re.fullmatch(r"\s*=+( +=+)+\s*", line)]
    spans: list[tuple[int, int]] = []
    for k in range(len(rules) - 1):
        start, nxt = rules[k], rules[k + 1]
        header = [line.split() for line in lines[start + 1 : nxt]]
        if first_header is not None and len(header) == 1 and header[0][:1] == [first_header]:
            if k + 2 < len(rules):
                spans.append((nxt, rules[k + 2]))
        elif first_header is None and len(header) > 1:
            spans.append((start, nxt))
    if not spans:
        raise LookupError(f"no reST table headed {first_header!r} found")
    body_start, end = spans[0]
    bounds = [(m.start(), m.end()) for m in re.finditer(r"=+", lines[body_start])]
    rows: list[list[str]] = []
    for line in lines[body_start + 1 : end]:
        if not line.strip():
            continue
        cols = [
            line[a : (bounds[k + 1][0] if k + 1 < len(bounds) else None)].strip()
            for k, (a, _) in enumerate(bounds)
        ]
        if line[bounds[0][0] : bounds[0][1]].strip():
            rows.append(cols)
        elif rows:
            rows[-1][-1] += " " + line[bounds[0][1] :].strip()
    return [[rst_to_md(c) for c in row] for row in rows]


def _field_comments(cls: type) -> dict[str, str]:
    """The ``#:`` comments above each field of a class, by field name."""
    comments: dict[str, str] = {}
    pending: list[str] = []
    for line in inspect.getsource(cls).splitlines():
        stripped = line.strip()
        if stripped.startswith("#:"):
            pending.append(stripped[2:].strip())
            continue
        match = re.match(r"([a-z_][a-z0-9_]*)\s*:", stripped)
        if match and pending:
            comments[match.group(1)] = " ".join(pending)
        pending = [] if not stripped.startswith("#:") else pending
    return comments


def _default(field: dataclasses.Field[Any]) -> str:
    if field.default is not dataclasses.MISSING:
        return "`None`" if field.default is None else f"`{field.default!r}`"
    if field.default_factory is not dataclasses.MISSING:
        return f"`{field.default_factory()!r}`"
    return "required"


def _args_section(doc: str) -> dict[str, str]:
    """``name: text`` entries of a Google-style ``Args:`` section (several names per entry)."""
    out: dict[str, str] = {}
    match = re.search(r"\n\s*Args:\n(.*?)(?:\n\s*\n|\Z)", doc, re.DOTALL)
    if not match:
        return out
    entries = re.split(r"\n\s{8}(?=[a-z_, ]+:)", "\n" + match.group(1))
    for entry in entries:
        if ":" not in entry:
            continue
        names, text = entry.split(":", 1)
        for name in names.split(","):
            out[name.strip()] = rst_to_md(text)
    return out


# -- generators -----------------------------------------------------------------------------


def log_events() -> str:
    """The log-event table of ``eventwire.observability.logging``."""
    rows = rst_simple_table(ew_logging.__doc__ or "", "event")
    table = md_table(["event", "level", "fields and meaning"], rows)
    return table + (
        "\n\nLoggers: `eventwire`, `eventwire.kafka`, `eventwire.librdkafka`, "
        "`eventwire.breaker`, `eventwire.outbox`, `eventwire.consumer`. Repeats of an event "
        f"marked *collapsed* are counted for {ew_logging.COLLAPSE_WINDOW_S:g} s and reported "
        "with `repeated=N`."
    )


def metrics() -> str:
    """The instrument table of ``eventwire.observability.metrics``."""
    rows = rst_simple_table(ew_metrics.__doc__ or "", None)
    documented = {row[0].strip("`") for row in rows}
    missing = set(ew_metrics.PROMETHEUS_NAMES) - documented
    if missing:
        raise LookupError(f"instruments missing from the metrics docstring: {sorted(missing)}")
    out = []
    for otel, prom, kind in rows:
        name = otel.strip("`")
        if ew_metrics.PROMETHEUS_NAMES[name] != prom.strip("`"):
            raise LookupError(f"{name}: docstring says {prom}, PROMETHEUS_NAMES disagrees")
        kind_name, _, labels = kind.partition(":")
        out.append([prom, otel, kind_name.strip(), labels.strip() or "—"])
    return md_table(["Prometheus name", "OpenTelemetry instrument", "kind", "labels"], out)


def publisher_options() -> str:
    """The keyword options of ``Publisher`` and ``AsyncPublisher``."""
    bullets: dict[str, str] = {}
    for match in re.finditer(
        r"^\s*\* (``[a-z_]+``(?: / ``[a-z_]+``)*): (.*?)(?=^\s*\* |\Z)",
        PublisherOptions.__doc__ or "",
        re.MULTILINE | re.DOTALL,
    ):
        for name in re.findall(r"``([a-z_]+)``", match.group(1)):
            bullets[name] = rst_to_md(match.group(2))
    hints = typing.get_type_hints(PublisherOptions)
    fields = {f.name: f for f in dataclasses.fields(Options)}
    rows = [
        [f"`{name}`", f"`{_type_text(hints[name])}`", _default(fields[name]), bullets.get(name, "")]
        for name in PublisherOptions.__annotations__
    ]
    return md_table(["option", "type", "default", "meaning"], rows)


def _type_text(annotation: object) -> str:
    if isinstance(annotation, type):
        return annotation.__name__
    text = str(annotation).replace("typing.", "")
    return re.sub(r"\b(?:[a-z_]+\.)+([A-Za-z_]+)", r"\1", text)


def profiles() -> str:
    """The producer profiles and their librdkafka settings."""
    rows = [
        [f"`{name}`", ", ".join(f"`{k}={v}`" for k, v in props.items())]
        for name, props in PROFILES.items()
    ]
    return md_table(["profile", "librdkafka properties"], rows)


def kafka_config() -> str:
    """The fields of ``KafkaConfig`` and the librdkafka property each one sets."""
    rows = []
    for f in dataclasses.fields(KafkaConfig):
        if f.name == "overrides":
            prop = "any librdkafka producer or global property"
        elif f.name == "profile":
            prop = "(eventwire's own: `profile`)"
        else:
            prop = f"`{f.name.replace('_', '.')}`"
        secret = "per property" if f.name == "overrides" else ""
        secret = secret or ("yes" if str(f.type).startswith("Secret") else "")
        rows.append([f"`{f.name}`", prop, _default(f), secret])
    return md_table(["field", "file key / librdkafka property", "default", "secret"], rows)


def relay_settings() -> str:
    """The standalone relay's ``[relay]`` settings."""
    comments = _field_comments(RelaySettings)
    rows = [
        [
            f"`{f.name}`",
            f"`EVENTWIRE_RELAY_{f.name.upper()}`",
            f"`{_type_text(f.type)}`",
            _default(f),
            rst_to_md(comments.get(f.name, "")),
        ]
        for f in dataclasses.fields(RelaySettings)
    ]
    return md_table(["`[relay]` key", "variable", "type", "default", "meaning"], rows)


def schema_registry_settings() -> str:
    """The ``[schema_registry]`` settings (``SchemaRegistryConfig``)."""
    args = _args_section(SchemaRegistryConfig.__doc__ or "")
    rows = [
        [
            f"`{f.name}`",
            f"`{ENV_PREFIX}{f.name.upper()}`",
            _default(f),
            "yes" if "Secret" in str(f.type) else "",
            args.get(f.name, ""),
        ]
        for f in dataclasses.fields(SchemaRegistryConfig)
    ]
    return md_table(["key", "variable", "default", "secret", "meaning"], rows)


def environment() -> str:
    """The environment variables eventwire reads."""
    rows = [
        ["`EVENTWIRE_KAFKA_CONFIG`", "the config file `KafkaConfig.load()` and the commands read"],
        [
            "`EVENTWIRE_KAFKA_<NAME>`",
            "a librdkafka property (`_` for `.`, `__` for `_`), or `PROFILE`; "
            "`<NAME>_FILE` / `<NAME>_ENV` read a secret by reference",
        ],
        [f"`{RELAY_ENV_PREFIX}<NAME>`", "a `[relay]` setting of `eventwire outbox relay`"],
        [f"`{ENV_PREFIX}<KEY>`", "a `[schema_registry]` setting"],
        ["`EVENTWIRE_OUTBOX_POSTGRES`", "the PostgreSQL DSN of the outbox the commands use"],
    ]
    return md_table(["variable", "meaning"], rows)


def error_codes() -> str:
    """Every code eventwire classifies or explains, with its re-send advice."""
    rows = []
    for code in sorted(_policy.KNOWN_CODES, key=lambda c: (c.lstrip("_"), c)):
        cls = _policy.classify(code)
        written = _policy.is_possibly_written(code)
        rows.append(
            [
                f"`{code}`",
                cls.value,
                "yes" if written else "no",
                _errors.resend_advice(cls, written).value,
                _policy.meaning(code, "—"),
                _errors.remedy(code, cls, written),
            ]
        )
    unknown = _errors.remedy("", ErrorClass.RETRIABLE, False)
    return md_table(
        ["code", "class", "possibly written", "resend", "meaning", "what to do"], rows
    ) + (f"\n\nAny other code is classified `retriable` ({unknown}).")


def _params_table(params: Sequence[Any]) -> str:
    rows = []
    for param in params:
        if param.param_type_name == "option":
            names = ", ".join(f"`{o}`" for o in [*param.opts, *param.secondary_opts])
            default = ""
            if not param.required and param.default not in (None, False, ()):
                default = f" (default: `{param.default}`)"
            rows.append([names, (param.help or "").replace("*", "\\*") + default])
        else:
            help_text = getattr(param, "help", "") or ""
            rows.append([f"`{(param.name or '').upper()}`", help_text])
    return md_table(["argument / option", "meaning"], rows) + "\n" if rows else ""


def cli() -> str:
    """Every built-in ``eventwire`` command: usage, help, arguments and options.

    The app is the real one (:func:`eventwire.cli._app.build_app`), without the commands
    other installed distributions plug in (``eventwire.commands`` entry points).
    """
    plugins = {ep.name for ep in entry_points(group=COMMANDS_GROUP)}
    root = typer.main.get_command(build_app())
    parts: list[str] = ["### `eventwire`\n", _params_table(root.params)]

    def walk(command: Any, path: list[str]) -> None:
        subcommands = getattr(command, "commands", None)
        if subcommands is not None:
            for name in sorted(subcommands):
                if len(path) == 1 and name in plugins:
                    continue
                walk(subcommands[name], [*path, name])
            return
        ctx = type(command).context_class(command, info_name=" ".join(path))
        parts.append(f"### `{' '.join(path)}`\n")
        usage = " ".join([*path, *command.collect_usage_pieces(ctx)])
        help_text = inspect.cleandoc(command.help or "")
        parts.append(f"```text\n{usage}\n\n{help_text}\n```\n")
        parts.append(_params_table(command.params))

    walk(root, ["eventwire"])
    return "\n".join(part for part in parts if part)


GENERATORS: dict[str, Callable[[], str]] = {
    "cli": cli,
    "environment": environment,
    "error-codes": error_codes,
    "kafka-config": kafka_config,
    "log-events": log_events,
    "metrics": metrics,
    "profiles": profiles,
    "publisher-options": publisher_options,
    "relay-settings": relay_settings,
    "schema-registry-settings": schema_registry_settings,
}


def _table(name: str) -> str:
    """The table ``name`` as the code makes it now (KeyError: no such table)."""
    if name not in GENERATORS:
        raise KeyError(f"unknown eventwire:generate marker {name!r}; known: {sorted(GENERATORS)}")
    return GENERATORS[name]().rstrip("\n")


def _check_blocks(markdown: str) -> None:
    """ValueError if a start marker has no end marker before the next block starts."""
    starts = MARKER.findall(markdown)
    blocks = BLOCK.findall(markdown)
    nested = [name for name, body in blocks if MARKER.search(body)]
    if len(starts) != len(blocks) or nested or markdown.count(END_MARKER) != len(blocks):
        unpaired = sorted(set(starts) - {name for name, body in blocks if name not in nested})
        raise ValueError(
            f"every <!-- eventwire:generate NAME --> marker needs its own {END_MARKER} "
            f"line (unpaired here: {', '.join(unpaired) or 'an end marker'}): add that line "
            "right after the marker, then `make docs-tables` writes the table between them"
        )


def render(markdown: str) -> str:
    """``markdown`` with every generated block (markers included) replaced by its table.

    The snippet runner's fences (```` ```python continuation ````, ```` ```python notest ````)
    become plain ```` ```python ```` fences.
    """
    _check_blocks(markdown)
    markdown = _RUNNER_FENCE.sub("```python", markdown)
    return BLOCK.sub(lambda match: _table(match.group(1)), markdown)


_CODE_SPAN = re.compile(r"`[^`\n]*`")


def _gfm(table: str) -> str:
    """``table`` as GitHub's Markdown reads it: pipes in a row's code spans escaped.

    GFM splits cells at such a pipe; the site's Python-Markdown does not, and would show
    the backslash, so only the committed copy is escaped.
    """

    def row(line: str) -> str:
        if not line.startswith("|"):
            return line
        return _CODE_SPAN.sub(lambda m: m.group(0).replace("|", "\\|"), line)

    return "\n".join(row(line) for line in table.split("\n"))


def refresh(markdown: str) -> str:
    """``markdown`` with each generated block's table written afresh, markers kept."""
    _check_blocks(markdown)
    return BLOCK.sub(
        lambda m: (
            f"<!-- eventwire:generate {m.group(1)} -->\n{_gfm(_table(m.group(1)))}\n{END_MARKER}"
        ),
        markdown,
    )


def on_page_markdown(markdown: str, **_: Any) -> str:
    """MkDocs hook: fill in the generated tables of a page."""
    return render(markdown)


def main(argv: Sequence[str]) -> int:
    """Write each page's generated tables afresh (``--check``: only say which are stale)."""
    check = "--check" in argv
    stale = []
    for page in sorted((_ROOT / "docs").rglob("*.md")):
        text = page.read_text(encoding="utf-8")
        try:
            fresh = refresh(text)
        except ValueError as exc:
            print(f"{page.relative_to(_ROOT)}: {exc}", file=sys.stderr)
            return 2
        if fresh != text:
            stale.append(page.relative_to(_ROOT))
            if not check:
                page.write_text(fresh, encoding="utf-8")
    for path in stale:
        print(f"{path}: {'stale tables (run `make docs-tables`)' if check else 'written'}")
    return 1 if check and stale else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
