"""What a failed connection to Kafka means: authentication, TLS, or just no broker.

librdkafka reports a rejected login or a failed TLS handshake as client errors
(``_AUTHENTICATION``, ``_SSL``, some ``_TRANSPORT``) and FAIL log lines, not as a
failed call. :class:`ConnectErrors` notes them as they come (from any thread) and
turns them into the typed error :meth:`KafkaTransport.check_connection` raises,
with a remedy. Everything here works on the (already scrubbed) texts only.
"""

from __future__ import annotations

import re
import threading
import time
from collections import deque
from typing import Any, Literal

from eventwire._errors import AuthenticationError, BrokerUnavailableError, TLSError
from eventwire._properties import mask_embedded

__all__ = ["ConnectErrorKind", "ConnectErrors", "classify_connect_error", "repeat_key"]

_DIGITS = re.compile(r"\d+")
#: How often a suspected TLS mismatch must be seen before check_connection raises for it.
_SUSPECT_REPEATS = 2

ConnectErrorKind = Literal["auth", "tls"]

#: librdkafka's hints, in a _TRANSPORT error, that a TLS handshake failed.
_TLS_MISMATCH_HINTS = (
    "PLAINTEXT broker listener?",
    "SSL handshake failed",
    "certificate verify failed",
)
#: A plaintext client's connection dropped during its first request (a FAIL log line;
#: librdkafka 2.x reports it in no error callback but _ALL_BROKERS_DOWN).
_PLAINTEXT_ON_TLS = re.compile(
    r"(Disconnected|Invalid response size|connection reset).*in state APIVERSION_QUERY"
)
#: A connection closed by the broker N ms after it was set up (FAIL log line).
_CLOSED_WHEN_UP = re.compile(r"Disconnected.*\(after (\d+)ms in state UP\b")
#: When check_connection() raises for a noted error: at once, once seen twice, or only
#: at its timeout (instead of the plain BrokerUnavailableError).
_Urgency = Literal["now", "repeated", "final"]


def classify_connect_error(code: str, reason: str) -> tuple[ConnectErrorKind, bool] | None:
    """Whether a librdkafka client error is an authentication or a TLS failure.

    Returns ``(kind, definitive)``: ``("auth", True)`` for ``_AUTHENTICATION``,
    ``("tls", True)`` for ``_SSL``, ``("tls", False)`` for a ``_TRANSPORT`` error whose
    text says a TLS handshake failed (e.g. a TLS client on a plaintext port), which a
    broker going down mid-handshake could also cause; ``None`` for anything else.
    """
    if code == "_AUTHENTICATION":
        return ("auth", True)
    if code == "_SSL":
        return ("tls", True)
    if code == "_TRANSPORT" and any(hint in reason for hint in _TLS_MISMATCH_HINTS):
        return ("tls", False)
    return None


def sasl_identity(props: dict[str, Any]) -> tuple[str, str | None]:
    """The SASL mechanism and, for mechanisms that have one, the user name."""
    mechanism = str(props.get("sasl.mechanism") or props.get("sasl.mechanisms") or "GSSAPI")
    username = props.get("sasl.username")
    if mechanism.upper() not in ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512") or not username:
        return mechanism, None
    return mechanism, str(username)


def split_broker(reason: str, bootstrap: str) -> tuple[str, str]:
    """``("sasl_ssl://host:9093/bootstrap", "the rest")`` from a librdkafka error text."""
    head, sep, rest = reason.partition(": ")
    if sep and "/" in head and " " not in head:
        return head, rest
    return bootstrap, reason


def repeat_key(code: str, reason: str) -> tuple[str, str]:
    """Collapse key of a client error: its code and broker (or its text without numbers)."""
    head, sep, _ = reason.partition(": ")
    if sep and "/" in head and " " not in head:
        return code, head
    return code, _DIGITS.sub("#", reason)


def tls_remedy(detail: str) -> str:
    if "connecting to a SSL listener?" in detail or _PLAINTEXT_ON_TLS.search(detail):
        return (
            "The broker closed every connection at the first request: its port most "
            "likely expects TLS while this client connects in plaintext (set "
            "security_protocol to SSL or SASL_SSL, or use the broker's plaintext port), "
            "or it is not a Kafka listener."
        )
    if "PLAINTEXT broker listener?" in detail or "wrong version number" in detail:
        return (
            "This client speaks TLS (security_protocol SSL or SASL_SSL) but the broker's "
            "port does not: use the broker's TLS port, or set security_protocol to "
            "PLAINTEXT (or SASL_PLAINTEXT)."
        )
    if "certificate verify failed" in detail or "could not be verified" in detail:
        return (
            "The broker's certificate was not accepted: either it is signed by a CA this "
            "client does not trust (set ssl_ca_location to the CA certificate that signed "
            "the brokers' certificates) or it does not name the host in bootstrap_servers "
            "(connect by a host name the certificate lists)."
        )
    return (
        "Check ssl_ca_location, the client certificate and key if the broker asks for "
        "them (ssl.certificate.location, ssl.key.location), and that security_protocol "
        "matches the broker's port."
    )


class ConnectErrors:
    """The authentication/TLS failures one producer has met, and what to raise for them.

    Thread-safe: librdkafka's error callback and log lines arrive on its threads.
    """

    def __init__(self, props: dict[str, Any]) -> None:
        self.sasl = sasl_identity(props)
        protocol = str(props.get("security.protocol", "plaintext")).lower()
        self._plaintext = protocol in ("plaintext", "sasl_plaintext")
        self._no_sasl = not protocol.startswith("sasl_")
        #: When the producer was made: the first check counts errors from then on.
        self.created_at = time.monotonic()
        # (when, kind, when to raise, code, reason) of recent authentication/TLS errors
        self._seen: deque[tuple[float, str, _Urgency, str, str]] = deque(maxlen=32)
        self._lock = threading.Lock()

    def note_error(self, code: str, reason: str) -> None:
        """Note a librdkafka client error (``error_cb``), if it is an auth/TLS failure."""
        kind = classify_connect_error(code, reason)
        if kind is not None:
            self._add(kind[0], "now" if kind[1] else "repeated", code, reason)

    def note_fail_line(self, text: str) -> None:
        """Note what a librdkafka FAIL log line (scrubbed) tells about the connection.

        A plaintext client on a TLS port, or a client without SASL that the broker
        hangs up on right after connecting.
        """
        if self._plaintext and _PLAINTEXT_ON_TLS.search(text):
            self._add("tls", "repeated", "_TRANSPORT", text.split("]: ", 1)[-1])
        elif self._no_sasl and (up := _CLOSED_WHEN_UP.search(text)) and int(up[1]) < 2000:
            self._add("auth", "final", "_TRANSPORT", text.split("]: ", 1)[-1])

    def _add(self, kind: str, urgency: _Urgency, code: str, reason: str) -> None:
        with self._lock:
            self._seen.append((time.monotonic(), kind, urgency, code, reason))

    def failure(
        self, since: float, bootstrap: str, *, final: bool
    ) -> BrokerUnavailableError | None:
        """The typed error for the failures noted since ``since`` (None: none to raise yet).

        ``final``: the check's timeout ran out, so suspicions noted once count too.
        ``bootstrap`` is shown with any credentials it embeds (``user:pass@``) masked.
        """
        bootstrap = mask_embedded(bootstrap)
        with self._lock:
            recent = [e for e in self._seen if e[0] >= since]
        chosen = next((e for e in recent if e[2] == "now"), None)
        repeated = [e for e in recent if e[2] == "repeated"]
        if chosen is None and repeated and (final or len(repeated) >= _SUSPECT_REPEATS):
            chosen = repeated[-1]
        if chosen is None and final:
            chosen = next((e for e in reversed(recent) if e[2] == "final"), None)
        if chosen is None:
            return None
        _, kind, urgency, _, reason = chosen
        broker, detail = split_broker(reason, bootstrap)
        if kind == "auth" and urgency == "final":
            return AuthenticationError(broker, None, None, detail)
        if kind == "auth":
            mechanism, username = self.sasl
            return AuthenticationError(broker, mechanism, username, detail)
        return TLSError(broker, detail, tls_remedy(detail))
