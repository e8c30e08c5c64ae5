r"""Untrusted text shown in a terminal: never markup, never a control sequence.

Record headers, error texts and database rows come from whoever wrote them. The
CLI shows them only through :func:`printable` / :func:`cell`, so that

* rich never parses them as markup (``[/x]`` would crash the command, ``[link=...]``
  would forge a hyperlink): :func:`cell` makes a :class:`rich.text.Text`, which is
  not parsed, and :func:`printable` escapes ``[`` with :func:`rich.markup.escape`
  for text that is printed as markup;
* no control character reaches the terminal (ESC starts an escape sequence that can
  rewrite the screen or the window title; a bidi override reorders what is shown):
  each is shown as a visible ``\xNN`` / ``\uNNNN`` escape instead;
* bytes that are not UTF-8 are shown as ``\xNN`` escapes, not dropped.
"""

from __future__ import annotations

import os
import sys
import unicodedata

from rich.console import Console
from rich.markup import escape
from rich.text import Text

__all__ = ["cell", "console", "decoded", "markup_safe", "one_line", "printable"]

#: The width of a console that is not a terminal: wide enough that nothing is wrapped
#: or cut short with "...".
_UNBOUNDED = 100_000


def console(*, stderr: bool = False) -> Console:
    """A console for stdout (or stderr) that never wraps or cuts text when it is piped.

    rich lays out for 80 columns when the stream is not a terminal: table cells were
    cut short with "..." (an event id then no longer matched a grep) and error lines
    wrapped mid-sentence in a log collector. Not a terminal and no ``COLUMNS`` set: no
    width limit. A terminal: its own width, as before.
    """
    stream = sys.stderr if stderr else sys.stdout
    try:
        terminal = stream.isatty()
    except (AttributeError, ValueError):  # replaced or closed
        terminal = False
    wide = not terminal and not os.environ.get("COLUMNS")
    return Console(stderr=stderr, width=_UNBOUNDED if wide else None)


#: Control, format (bidi overrides, zero-width), surrogate, private-use and
#: line/paragraph-separator characters: shown escaped.
_UNSAFE = frozenset({"Cc", "Cf", "Cs", "Co", "Zl", "Zp"})


def _escape(ch: str) -> str:
    code = ord(ch)
    if code < 0x100:
        return f"\\x{code:02x}"
    if code < 0x10000:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def printable(text: str) -> str:
    """``text`` with every control/format character replaced by a visible escape."""
    if text.isprintable():
        return text
    return "".join(_escape(ch) if unicodedata.category(ch) in _UNSAFE else ch for ch in text)


def decoded(value: bytes) -> str:
    r"""A header value as printable text: UTF-8, other bytes as ``\xNN``."""
    return printable(value.decode("utf-8", errors="backslashreplace"))


def cell(text: str, style: str = "") -> Text:
    """A table cell (or a line) showing ``text`` literally: no markup, no control characters."""
    return Text(printable(text), style=style)


def markup_safe(text: str) -> str:
    """``text`` to embed in a markup string: printable, with its ``[`` escaped."""
    return escape(printable(text))


def one_line(text: str) -> str:
    r"""``text`` on one line: each run of whitespace (line breaks, tabs) one space.

    For error messages: a multi-line error (libpq's hints, a YAML parser's context)
    reads as one line, instead of showing its breaks as ``\x0a`` escapes.
    """
    return " ".join(text.split())
