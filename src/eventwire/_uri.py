"""Whether a ``source`` is a URI-reference, as CloudEvents requires of ``ce_source``.

CloudEvents 1.0 types ``source`` as a URI-reference (RFC 3986 section 4.1), and other
languages' SDKs parse it as one (the Java SDK into a ``java.net.URI``): a source such
as ``billing service`` or ``100%`` makes every event unreadable there. The check is
the RFC 3986 grammar (appendix A), written out below, with one allowance that
``java.net.URI`` and Go's ``net/url`` make too: non-ASCII characters other than spaces
may stand where an unreserved character may (an IRI, RFC 3987), so a source can be
written in any script. Control characters are refused earlier (:mod:`eventwire._text`).
"""

from __future__ import annotations

import ipaddress
import re
import unicodedata

__all__ = ["uri_reference_problem"]

# RFC 3986 appendix A; "unreserved" also takes the non-ASCII characters (checked below).
_UNRESERVED = "A-Za-z0-9\\-._~\u0080-\U0010ffff"
_SUB_DELIMS = "!$&'()*+,;="
_PCT = "%[0-9A-Fa-f]{2}"
_PCHAR = f"(?:[{_UNRESERVED}{_SUB_DELIMS}:@]|{_PCT})"
_SEGMENT = f"{_PCHAR}*"
_SEGMENT_NZ = f"{_PCHAR}+"
_SEGMENT_NZ_NC = f"(?:[{_UNRESERVED}{_SUB_DELIMS}@]|{_PCT})+"
_QUERY = f"(?:{_PCHAR}|[/?])*"  # the fragment has the same grammar
_USERINFO = f"(?:[{_UNRESERVED}{_SUB_DELIMS}:]|{_PCT})*"
_IP_LITERAL = f"\\[(?:[0-9A-Fa-f:.]+|[vV][0-9A-Fa-f]+\\.[A-Za-z0-9\\-._~{_SUB_DELIMS}:]+)\\]"
_REG_NAME = f"(?:[{_UNRESERVED}{_SUB_DELIMS}]|{_PCT})*"
_AUTHORITY = f"(?:{_USERINFO}@)?(?:{_IP_LITERAL}|{_REG_NAME})(?::[0-9]*)?"
_PATH_ABEMPTY = f"(?:/{_SEGMENT})*"
_PATH_ABSOLUTE = f"/(?:{_SEGMENT_NZ}(?:/{_SEGMENT})*)?"
_TAIL = f"(?:\\?{_QUERY})?(?:#{_QUERY})?"
_URI = (
    f"[A-Za-z][A-Za-z0-9+\\-.]*:"
    f"(?://{_AUTHORITY}{_PATH_ABEMPTY}|{_PATH_ABSOLUTE}|{_SEGMENT_NZ}(?:/{_SEGMENT})*|){_TAIL}"
)
_RELATIVE_REF = (
    f"(?://{_AUTHORITY}{_PATH_ABEMPTY}|{_PATH_ABSOLUTE}|{_SEGMENT_NZ_NC}(?:/{_SEGMENT})*|){_TAIL}"
)
_URI_REFERENCE = re.compile(f"(?:{_URI}|{_RELATIVE_REF})")
_ALLOWED_ASCII = frozenset(
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~:/?#[]@!$&'()*+,;=%"
)
_BAD_ESCAPE = re.compile("%(?![0-9A-Fa-f]{2})")


def uri_reference_problem(text: str) -> str | None:
    """What makes ``text`` not a URI-reference, in a few words; None if it is one."""
    problem = _character_problem(text)
    if problem is not None:
        return problem
    if _BAD_ESCAPE.search(text):
        return "a '%' is not followed by two hex digits (a literal '%' is written '%25')"
    if not _URI_REFERENCE.fullmatch(text):
        return (
            "it does not follow the URI grammar (e.g. a ':' in the first segment of a "
            "relative reference, a port that is not a number, or '[' ']' outside an IPv6 host)"
        )
    host = re.search(r"\[([^\]]*)\]", text)  # only an IP-literal host may hold brackets
    if host is not None and host.group(1)[:1] not in {"v", "V"}:
        try:
            ipaddress.IPv6Address(host.group(1))
        except ValueError:
            return f"[{host.group(1)}] is not an IPv6 address"
    return None


def _character_problem(text: str) -> str | None:
    for char in text:
        if char == " ":
            return "it holds a space"
        if char.isascii():
            if char not in _ALLOWED_ASCII:
                return f"it holds the character {char!r}, which a URI may not hold unescaped"
        elif unicodedata.category(char).startswith("Z"):
            return f"it holds the space character U+{ord(char):04X}"
    return None
