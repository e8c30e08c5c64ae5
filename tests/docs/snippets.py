"""The code blocks of the documentation (docs/**/*.md and README.md), as the tests run them.

The convention every page follows:

* a block fenced ```` ```python ```` runs on its own;
* ```` ```python continuation ```` continues the previous block of the same page (the two
  run, and are type-checked, as one program);
* ```` ```python notest ```` is not run; the line just above its fence must say why, as
  ``<!-- notest: reason -->``;
* ```` ```python excerpt ```` shows lines of a file the test suite runs (an example app);
  the line just above its fence names it, as ``<!-- excerpt: examples/fastapi_app.py -->``,
  and every line of the block must be a line of that file (a ``...`` line or a ``#``
  comment line stands for what is left out), so the excerpt cannot drift from the code.

Blocks use ``localhost:9092`` as the Kafka broker: the runner puts the test session's
broker in its place. Fences must start at the beginning of a line (a block indented
inside a list item would not be found, so ``check_fences`` refuses them).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BROKER = "localhost:9092"
REGISTRY = "http://localhost:8081"

_FENCE = re.compile(
    r"^```python(?P<info>[^\n]*)\n(?P<code>.*?)^```[ \t]*$", re.MULTILINE | re.DOTALL
)
_NOTEST_REASON = re.compile(r"<!-- notest: (?P<reason>[^>]+?) -->\s*$")
_EXCERPT_OF = re.compile(r"<!-- excerpt: (?P<file>[^>]+?) -->\s*$")
_INDENTED_FENCE = re.compile(r"^[ \t]+```python", re.MULTILINE)


@dataclass
class Block:
    """One ```python block of a page."""

    page: str
    line: int
    kind: str  # "run", "continuation", "notest" or "excerpt"
    code: str
    reason: str = ""  # notest: why; excerpt: the file it is taken from


@dataclass
class Program:
    """A runnable block and its continuations: what one test runs and type-checks."""

    page: str
    line: int
    blocks: list[Block] = field(default_factory=list)

    @property
    def id(self) -> str:
        return f"{self.page}:{self.line}"

    @property
    def source(self) -> str:
        parts = [f"# --- {b.page}:{b.line}\n{b.code}" for b in self.blocks]
        return "\n".join(parts)

    @property
    def needs_kafka(self) -> bool:
        return BROKER in self.source

    @property
    def needs_registry(self) -> bool:
        return REGISTRY in self.source


def pages() -> list[Path]:
    """Every page whose code blocks are tested: docs/**/*.md and README.md."""
    found = sorted((ROOT / "docs").rglob("*.md"))
    return [*found, ROOT / "README.md"]


def _name(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


def blocks(path: Path) -> list[Block]:
    """The ```python blocks of one page, in order.

    Raises:
        ValueError: an unknown info string, or a notest block without a reason.
    """
    text = path.read_text(encoding="utf-8")
    out = []
    for match in _FENCE.finditer(text):
        info = match.group("info").strip()
        line = text.count("\n", 0, match.start()) + 1
        if info not in {"", "continuation", "notest", "excerpt"}:
            raise ValueError(f"{_name(path)}:{line}: unknown ```python info string {info!r}")
        kind = {"": "run"}.get(info, info)
        reason = ""
        if kind == "notest":
            before = text[: match.start()].rstrip("\n").rsplit("\n", 1)[-1]
            found = _NOTEST_REASON.search(before)
            if not found:
                raise ValueError(
                    f"{_name(path)}:{line}: a ```python notest block needs "
                    "'<!-- notest: reason -->' on the line above its fence"
                )
            reason = found.group("reason")
        if kind == "excerpt":
            before = text[: match.start()].rstrip("\n").rsplit("\n", 1)[-1]
            of = _EXCERPT_OF.search(before)
            if not of:
                raise ValueError(
                    f"{_name(path)}:{line}: a ```python excerpt block needs "
                    "'<!-- excerpt: path/of/the/file.py -->' on the line above its fence"
                )
            reason = of.group("file")
        out.append(Block(_name(path), line, kind, match.group("code"), reason))
    return out


def check_fences(path: Path) -> list[int]:
    """Lines of ```python fences that are indented (and so would not be run)."""
    text = path.read_text(encoding="utf-8")
    return [text.count("\n", 0, m.start()) + 1 for m in _INDENTED_FENCE.finditer(text)]


def programs(path: Path) -> list[Program]:
    """The runnable programs of one page.

    Raises:
        ValueError: a continuation block with no runnable block before it.
    """
    out: list[Program] = []
    for block in blocks(path):
        if block.kind == "run":
            out.append(Program(block.page, block.line, [block]))
        elif block.kind == "continuation":
            if not out:
                raise ValueError(f"{block.page}:{block.line}: continuation of nothing")
            out[-1].blocks.append(block)
    return out


def all_programs() -> list[Program]:
    """The runnable programs of every page."""
    return [p for page in pages() for p in programs(page)]


_CONFIG_FENCE = re.compile(
    r"^```(?P<lang>toml|properties)[ \t]*\n(?P<code>.*?)^```[ \t]*$", re.MULTILINE | re.DOTALL
)


def config_blocks() -> list[Block]:
    """Every ```toml and ```properties block of the pages (config files, as shown)."""
    out = []
    for path in pages():
        text = path.read_text(encoding="utf-8")
        for match in _CONFIG_FENCE.finditer(text):
            line = text.count("\n", 0, match.start()) + 1
            out.append(Block(_name(path), line, match.group("lang"), match.group("code")))
    return out


def all_notest() -> list[Block]:
    """The blocks not run, with their reasons."""
    return [b for page in pages() for b in blocks(page) if b.kind == "notest"]


def all_excerpts() -> list[Block]:
    """The blocks that show lines of a tested file."""
    return [b for page in pages() for b in blocks(page) if b.kind == "excerpt"]


def _code_of(line: str) -> str:
    """A line without indentation or a trailing ``  # comment`` (which excerpts may add)."""
    return line.split("  # ", 1)[0].strip()


def excerpt_strays(block: Block) -> list[str]:
    """Lines of an excerpt block that its file does not have (compared by :func:`_code_of`)."""
    text = (ROOT / block.reason).read_text(encoding="utf-8")
    source = {_code_of(line) for line in text.splitlines()}
    strays = []
    for line in block.code.splitlines():
        code = _code_of(line)
        if not code or code == "..." or code.startswith("#"):
            continue
        if code not in source:
            strays.append(code)
    return strays
