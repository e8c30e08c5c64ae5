"""Masking secrets in text: every known secret value, and every part of one, becomes ``***``.

Used on whatever librdkafka, a database driver or a registry client says before eventwire
logs or raises it. It depends on nothing else of eventwire, so the transports can use it
without importing the configuration.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator

__all__ = ["MIN_SCRUBBED_LENGTH", "Scrubber"]

_MASK = "***"
#: Masked values shorter than this, of a property whose name does not say
#: "secret", are not scrubbed from log text: replacing a word such as "none"
#: or "1" everywhere would wreck the logs for no gain.
MIN_SCRUBBED_LENGTH = 6
_NUMBER = re.compile(r"[-+]?[0-9]+(\.[0-9]*)?")


#: librdkafka texts that echo the rest of a secret property's value from some point
#: on (the OAUTHBEARER config parser: the text from its first unknown key, a
#: value it could not parse): everything after the marker is masked.
_ECHO_MARKERS = re.compile(
    r"(sasl\.oauthbearer\.config beginning at: "
    r"|sasl\.oauthbearer\.config: non-integral '[^']*': )[^\n]*"
)
#: A part of a secret value (``key=value`` pairs of ``sasl.oauthbearer.config`` and
#: ``.extensions``, the words of a command): what blanks, commas, ``;`` or ``&`` separate.
_PART = re.compile(r"[^\s,;&]+")


def _fragments(secret: str) -> Iterator[str]:
    """``secret`` and the parts of it a message may quote alone.

    Every tail from a part on (librdkafka echoes "the rest from the first unknown
    key"), every part (``key=value``) and every part's value. A fragment is kept only
    if it is worth hiding on its own: at least :data:`MIN_SCRUBBED_LENGTH` long, or a
    ``key=value`` pair, and not a number or ``true``/``false``.
    """
    yield secret
    for part in _PART.finditer(secret):
        tail = secret[part.start() :].rstrip()
        token = part.group()
        value = token.partition("=")[2]
        for fragment in (tail, token, value):
            if fragment == secret or not fragment:
                continue
            if (len(fragment) >= MIN_SCRUBBED_LENGTH or "=" in fragment) and not (
                fragment.lower() in ("true", "false") or _NUMBER.fullmatch(fragment)
            ):
                yield fragment


class Scrubber:
    """Replaces every known secret value, and every part of one, in a text with ``***``.

    Besides each whole value it masks the parts a message may quote alone (see
    :func:`_fragments`): each ``key=value`` pair of a value such as
    ``sasl.oauthbearer.config``, each such pair's value, and each tail of the value
    from a pair on; and what follows librdkafka's markers that echo the rest of the
    OAUTHBEARER config ("... beginning at: "), however short.

    Example::

        scrub = Scrubber(config.secret_values())
        log.warning("kafka_error", reason=scrub(err.str()))
    """

    __slots__ = ("_count", "_secrets")

    def __init__(self, secrets: Iterable[str]) -> None:
        given = {s for s in secrets if s}
        self._count = len(given)
        # Longest first, so a secret containing another is masked whole.
        found = {f for s in given for f in _fragments(s)}
        self._secrets = sorted(found, key=len, reverse=True)

    def __call__(self, text: str) -> str:
        """Return ``text`` with every secret masked."""
        if not self._secrets:
            return text
        for secret in self._secrets:
            if secret in text:
                text = text.replace(secret, _MASK)
        return _ECHO_MARKERS.sub(lambda m: m.group(1) + _MASK, text)

    def __bool__(self) -> bool:
        return bool(self._secrets)

    def __repr__(self) -> str:
        return f"<Scrubber of {self._count} secret(s)>"
