"""Which characters a CloudEvents attribute (``ce_id``, ``ce_type``, ``ce_source``) may not hold.

The CloudEvents spec disallows the control characters U+0000-001F and U+007F-009F in
its strings. Besides those, the line and paragraph separators (U+2028, U+2029) break
lines like a newline, and the bidirectional overrides and isolates (U+202A-202E,
U+2066-2069) make text read differently from what it is ("Trojan Source"). All else
is allowed: non-ASCII letters, zero-width joiners (Persian text, emoji sequences),
no-break spaces, private-use characters, characters newer than Python's tables.
The publisher refuses these in what it writes and the decoder in what it reads, so
each reads what the other writes; the log renderer quotes a value that holds one.
"""

from __future__ import annotations

import re

__all__ = ["first_unsafe"]

_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def first_unsafe(text: str) -> str | None:
    """The first character of ``text`` that an attribute may not hold, or None."""
    found = _UNSAFE.search(text)
    return found.group() if found else None
