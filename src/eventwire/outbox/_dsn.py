r"""Keep a PostgreSQL DSN's passwords out of messages: :func:`mask_dsn`, :func:`scrub_dsn`.

A leaf module (standard library only), for the PostgreSQL outbox's errors and for
any tool that shows a DSN (the CLI). Both libpq forms are handled:

* keyword/value: ``host=db user=app password=s3cret`` (a value may be single-quoted,
  with ``\'`` and ``\\`` escapes), also ``sslpassword=`` (the client key's
  passphrase);
* URL: ``postgresql://app:s3cret@db/app`` (the userinfo's password, percent-encoded
  or not) and ``?password=...`` / ``&sslpassword=...`` query parameters.
"""

from __future__ import annotations

import re
from urllib.parse import unquote

__all__ = ["dsn_passwords", "hide_quoted", "mask_dsn", "scrub_dsn"]

_MASK = "***"
_KEYWORDS = r"(?:password|sslpassword)"
# keyword=value: a quoted value to its closing quote; an unquoted one up to the next
# "key=" (so "password=two words" is masked whole, though libpq would refuse it).
_KEYWORD_VALUE = re.compile(
    rf"(?P<head>(?:^|(?<=\s)){_KEYWORDS}\s*=\s*)"
    r"(?P<value>'(?:[^'\\]|\\.)*(?:'|$)|.*?(?=\s+[A-Za-z_]+\s*=|\s*$))",
    re.S,
)
_URL = re.compile(r"^(?P<scheme>postgres(?:ql)?://)(?P<userinfo>[^/?#]*)@", re.I)
_QUERY_PASSWORD = re.compile(rf"(?P<head>[?&]{_KEYWORDS}=)(?P<value>[^&#]*)", re.I)
#: Shorter passwords are masked only as whole words: replacing every "ab" of a
#: message would make it unreadable.
_MIN_ANYWHERE = 4


def _unquote_keyword(value: str) -> str:
    if value.startswith("'"):
        body = value[1:-1] if value.endswith("'") and len(value) > 1 else value[1:]
        return re.sub(r"\\(.)", r"\1", body)
    return value


def dsn_passwords(dsn: str) -> list[str]:
    """Every password (and client key passphrase) ``dsn`` holds.

    In each form a message may show it: as written, unquoted, percent-decoded, and
    each word of one.
    """
    found: list[str] = []
    url = _URL.match(dsn)
    if url:
        _, sep, password = url["userinfo"].partition(":")
        if sep:
            found += [password, unquote(password), url["userinfo"], unquote(url["userinfo"])]
        for m in _QUERY_PASSWORD.finditer(dsn):
            found += [m["value"], unquote(m["value"])]
    else:
        for m in _KEYWORD_VALUE.finditer(dsn):
            found += [m["value"], _unquote_keyword(m["value"])]
    found += [part for p in found for part in p.split()]  # "two words": each word too
    return [p for p in dict.fromkeys(found) if p]


def mask_dsn(dsn: str) -> str:
    """``dsn`` with every password shown as ``***``: safe to log or print.

    ``"postgresql://app:s3cret@db/app"`` -> ``"postgresql://app:***@db/app"``;
    ``"host=db password='a b'"`` -> ``"host=db password=***"``.
    """
    url = _URL.match(dsn)
    if url:
        user, sep, _ = url["userinfo"].partition(":")
        shown = f"{url['scheme']}{user}{':' + _MASK if sep else ''}@{dsn[url.end() :]}"
        return _QUERY_PASSWORD.sub(lambda m: m["head"] + _MASK, shown)
    return _KEYWORD_VALUE.sub(lambda m: m["head"] + _MASK, dsn)


def scrub_dsn(text: str, dsn: str) -> str:
    """``text`` (e.g. a database error) with every password of ``dsn`` masked."""
    for password in sorted(dsn_passwords(dsn), key=len, reverse=True):
        if len(password) >= _MIN_ANYWHERE:
            text = text.replace(password, _MASK)
        else:
            text = re.sub(rf"(?<!\w){re.escape(password)}(?!\w)", _MASK, text)
    return text


def hide_quoted(text: str) -> str:
    """``text`` with every double-quoted part shown as ``"***"``.

    For libpq's complaints about a DSN it could not parse: they quote the piece
    they stopped at, which may be part of a password.
    """
    return re.sub(r'"[^"]*"', f'"{_MASK}"', text)
