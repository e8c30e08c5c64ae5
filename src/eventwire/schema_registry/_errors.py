"""The errors of the Schema Registry codecs: all :class:`~eventwire.SerializationError`.

They are raised by ``encode_for`` -- so by ``publish()`` before anything is enqueued,
and, with an outbox, before anything is stored (encoding happens before the commit):
nothing is sent, nothing is lost, the caller decides. ``decode_from`` raises them too;
a :class:`~eventwire.Decoder` turns all but :class:`SchemaNotFoundError` into a retriable
``DecodeError`` (kind ``registry_unavailable``): the record is not at fault. ::

    SerializationError
    └── RegistryError                   the registry refused or failed a request
        ├── SchemaIncompatibleError     the schema breaks the subject's compatibility rule
        ├── SchemaNotFoundError         nothing (matching) registered, and not auto-registering
        └── SchemaRegistryUnavailableError  the registry could not be reached (also a
                                            ConnectionError): retry later
"""

from __future__ import annotations

from eventwire._errors import SerializationError

__all__ = [
    "RegistryError",
    "SchemaIncompatibleError",
    "SchemaNotFoundError",
    "SchemaRegistryUnavailableError",
]

_PUBLIC = "eventwire.schema_registry"


class RegistryError(SerializationError):
    """The Schema Registry refused or failed a request for an event's schema; nothing was sent.

    ``subject`` is the subject concerned (None if unknown), ``status`` the HTTP status
    (None when no answer came).
    """

    __module__ = _PUBLIC

    def __init__(self, message: str, *, subject: str | None = None, status: int | None = None):
        super().__init__(message)
        self.subject = subject
        self.status = status


class SchemaIncompatibleError(RegistryError):
    """The registry refused the event type's schema: it breaks the subject's compatibility rule.

    ``compatibility`` is the subject's level (``BACKWARD``...) when the registry said.
    """

    __module__ = _PUBLIC

    def __init__(
        self,
        message: str,
        *,
        subject: str | None = None,
        status: int | None = None,
        compatibility: str | None = None,
    ):
        super().__init__(message, subject=subject, status=status)
        self.compatibility = compatibility


class SchemaNotFoundError(RegistryError):
    """The subject has no (matching) schema and the codec does not register one."""

    __module__ = _PUBLIC


class SchemaRegistryUnavailableError(RegistryError, ConnectionError):
    """The registry could not be reached (network error, timeout, 5xx); retry later.

    Only a type whose schema id is not cached yet needs the registry: the others keep
    publishing while it is down.
    """

    __module__ = _PUBLIC
