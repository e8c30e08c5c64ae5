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

import unicodedata

from rich.markup import escape
from rich.text import Text

__all__ = ["cell", "decoded", "markup_safe", "printable"]

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
