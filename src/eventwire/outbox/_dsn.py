r"""Keep a PostgreSQL DSN's passwords out of messages: :func:`mask_dsn`, :func:`scrub_dsn`.

A leaf module (standard library only), the one implementation for the PostgreSQL
outbox's errors and for any tool that shows a DSN (the CLI: :func:`mask_text`,
:func:`has_password`). The DSN is parsed here, never by libpq: an older libpq
splits a malformed URL elsewhere, and its idea of the password could be a
fragment such as ``"p"``. Both libpq forms are handled:

* keyword/value: ``host=db user=app password=s3cret`` (a value may be single-quoted,
  with ``\'`` and ``\\`` escapes), also ``sslpassword=`` (the client key's
  passphrase);
* URL: ``postgresql://app:s3cret@db/app`` (the userinfo's password, percent-encoded
  or not) and ``?password=...`` / ``&sslpassword=...`` query parameters. A URL of
  another scheme (``mysql://``, SQLAlchemy's ``postgresql+psycopg://``) is no libpq
  DSN (:func:`unsupported_scheme` says so), but its password is found the same way.
"""

from __future__ import annotations

import re
from urllib.parse import quote, unquote

__all__ = [
    "dsn_passwords",
    "has_password",
    "hide_quoted",
    "mask_dsn",
    "mask_text",
    "scrub_dsn",
    "unsupported_scheme",
]

_MASK = "***"
_KEYWORDS = r"(?:password|sslpassword)"
# keyword=value: a quoted value to its closing quote; an unquoted one up to the next
# "key=" (so "password=two words" is masked whole, though libpq would refuse it).
_KEYWORD_VALUE = re.compile(
    rf"(?P<head>(?:^|(?<=\s)){_KEYWORDS}\s*=\s*)"
    r"(?P<value>'(?:[^'\\]|\\.)*(?:'|$)|.*?(?=\s+[A-Za-z_]+\s*=|\s*$))",
    re.S,
)
# Any scheme://, not only libpq's: another one is refused (:func:`unsupported_scheme`),
# but its user:password@ is still a password (kept off command lines, masked).
_SCHEME = re.compile(r"^(?P<name>[a-z][a-z0-9+.-]*)://", re.I)
_URL = re.compile(r"^(?P<scheme>[a-z][a-z0-9+.-]*://)(?P<userinfo>[^/?#]*)@", re.I)
#: The URL schemes libpq accepts.
_LIBPQ_SCHEMES = frozenset({"postgres", "postgresql"})
_QUERY_PASSWORD = re.compile(rf"(?P<head>[?&]{_KEYWORDS}=)(?P<value>[^&#]*)", re.I)
# In free text: password=... / sslpassword = '...' anywhere, and scheme://user:secret@.
_TEXT_KEYWORD = re.compile(rf"(?i)(\b{_KEYWORDS}\s*=\s*)('(?:[^'\\]|\\.)*'?|[^\s&]+)")
_TEXT_USERINFO = re.compile(r"(?i)(\b[a-z][a-z0-9+.-]*://[^:/@\s]*:)([^@\s]*)@")
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

    In each form a message may show it: as written, unquoted, percent-decoded,
    percent-encoded, and each word of one.
    """
    found: list[str] = []
    if _SCHEME.match(dsn):  # a URL, with or without user:password@
        url = _URL.match(dsn)
        _, sep, password = url["userinfo"].partition(":") if url else ("", "", "")
        if url and sep:
            found += [password, unquote(password), url["userinfo"], unquote(url["userinfo"])]
        for m in _QUERY_PASSWORD.finditer(dsn):
            found += [m["value"], unquote(m["value"])]
    else:
        for m in _KEYWORD_VALUE.finditer(dsn):
            found += [m["value"], _unquote_keyword(m["value"])]
    found += [quote(p, safe="") for p in found]
    found += [part for p in found for part in p.split()]  # "two words": each word too
    return [p for p in dict.fromkeys(found) if p]


def mask_dsn(dsn: str) -> str:
    """``dsn`` with every password shown as ``***``: safe to log or print.

    ``"postgresql://app:s3cret@db/app"`` -> ``"postgresql://app:***@db/app"``;
    ``"host=db password='a b'"`` -> ``"host=db password=***"``.
    """
    if not _SCHEME.match(dsn):
        return _KEYWORD_VALUE.sub(lambda m: m["head"] + _MASK, dsn)
    shown = dsn
    url = _URL.match(dsn)
    if url:
        user, sep, _ = url["userinfo"].partition(":")
        shown = f"{url['scheme']}{user}{':' + _MASK if sep else ''}@{dsn[url.end() :]}"
    return _QUERY_PASSWORD.sub(lambda m: m["head"] + _MASK, shown)


def scrub_dsn(text: str, dsn: str) -> str:
    """``text`` (e.g. a database error) with every password of ``dsn`` masked."""
    for password in sorted(dsn_passwords(dsn), key=len, reverse=True):
        if len(password) >= _MIN_ANYWHERE:
            text = text.replace(password, _MASK)
        else:
            text = re.sub(rf"(?<!\w){re.escape(password)}(?!\w)", _MASK, text)
    return text


def has_password(dsn: str) -> bool:
    """Whether ``dsn`` carries a password or key passphrase (keyword, query or ``user:pw@``)."""
    return bool(dsn_passwords(dsn))


def mask_text(text: str, dsn: str | None = None) -> str:
    """``text`` (a message, an error) with every DSN password in it shown as ``***``.

    Masks ``password=...``/``sslpassword=...`` anywhere (quoted or not, URL query
    parameters too) and the password of ``scheme://user:password@``; with ``dsn``
    (the DSN in use) also that DSN's password in any form (:func:`scrub_dsn`), e.g.
    where libpq quotes a fragment of a malformed DSN.
    """
    if dsn:
        text = scrub_dsn(text, dsn)
    text = _TEXT_KEYWORD.sub(lambda m: m.group(1) + _MASK, text)
    return _TEXT_USERINFO.sub(lambda m: m.group(1) + _MASK + "@", text)


def hide_quoted(text: str) -> str:
    """``text`` with every double-quoted part shown as ``"***"``.

    For libpq's complaints about a DSN it could not parse: they quote the piece
    they stopped at, which may be part of a password.
    """
    return re.sub(r'"[^"]*"', f'"{_MASK}"', text)


def unsupported_scheme(dsn: str) -> str | None:
    """Why ``dsn``'s URL scheme is no libpq one (``mysql://``, ``sqlite:///``), or None.

    The reason names the scheme, never the rest of the DSN. libpq itself would say
    only that a ``keyword=value`` pair lacks its ``=``.
    """
    m = _SCHEME.match(dsn.lstrip())
    if m is None or m["name"].lower() in _LIBPQ_SCHEMES:
        return None
    scheme = m["name"]
    hint = ""
    if "+" in scheme and scheme.lower().split("+", 1)[0] in _LIBPQ_SCHEMES:
        hint = (
            f" (a SQLAlchemy URL such as {scheme}:// must drop its +driver part: "
            f"{scheme.split('+', 1)[0]}://)"
        )
    return (
        f"unsupported DSN scheme {scheme!r}: a PostgreSQL outbox takes a postgresql:// "
        f"(or postgres://) URL or libpq keyword=value pairs{hint}"
    )
