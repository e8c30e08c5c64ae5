"""Codecs: event <-> bytes with msgspec. One encoder per codec, reused.

A codec has a ``content_type`` (sent as the ``content-type`` header), an
``encode(event) -> bytes`` and a ``decode(data, type) -> event``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol, TypeVar, runtime_checkable

import msgspec

from eventwire._errors import ConfigurationError, SerializationError

__all__ = ["ENCODE_ERRORS", "Codec", "JsonCodec", "MsgpackCodec", "resolve_codec"]

T = TypeVar("T")


@runtime_checkable
class Codec(Protocol):
    """Turns events into bytes and back."""

    content_type: str

    def encode(self, event: Any) -> bytes:
        """Encode ``event``; raise SerializationError if it cannot be encoded."""
        ...

    def decode(self, data: bytes, type: type[T]) -> T:
        """Decode ``data`` as ``type``; raise SerializationError if it does not fit."""
        ...


#: What msgspec's encoders raise for a value they cannot encode (RecursionError: an
#: event that contains itself, or one nested deeper than the interpreter's limit).
ENCODE_ERRORS = (TypeError, ValueError, OverflowError, RecursionError, msgspec.EncodeError)


class _MsgspecCodec:
    content_type: str
    _encoder: msgspec.json.Encoder | msgspec.msgpack.Encoder
    _decoders: dict[type, Any]

    @property
    def fast_encode(self) -> Callable[[Any], bytes]:
        """The bare encoder: raises one of :data:`ENCODE_ERRORS` instead of ours.

        For the publish hot path, which calls :meth:`encode` again on an error to
        raise the explanatory SerializationError.
        """
        return self._encoder.encode

    def encode(self, event: Any) -> bytes:
        try:
            return self._encoder.encode(event)
        except RecursionError as exc:
            raise SerializationError(
                f"cannot encode {type(event).__qualname__} as {self.content_type}: {exc}. "
                "The event contains itself (a field refers back to the event or to one of "
                "its containers) or is nested too deeply; break the cycle, e.g. refer to "
                "the other object by its id."
            ) from None
        except ENCODE_ERRORS as exc:
            raise SerializationError(
                f"cannot encode {type(event).__qualname__} as {self.content_type}: {exc}. "
                "Use types msgspec supports (str, int, float, bool, datetime, UUID, "
                "Struct, list, dict ...) in event fields."
            ) from exc

    def decode(self, data: bytes, type: type[T]) -> T:
        decoder = self._decoders.get(type)
        if decoder is None:
            decoder = self._decoders[type] = self._make_decoder(type)
        try:
            result: T = decoder.decode(data)
        except msgspec.DecodeError as exc:
            raise SerializationError(
                f"cannot decode {self.content_type} bytes as {type.__qualname__}: {exc}"
            ) from exc
        return result

    def _make_decoder(self, type: type[Any]) -> Any:
        raise NotImplementedError


class JsonCodec(_MsgspecCodec):
    """msgspec JSON, ``content-type: application/json``. The default."""

    content_type = "application/json"

    def __init__(self) -> None:
        self._encoder = msgspec.json.Encoder()
        self._decoders = {}

    def _make_decoder(self, type: type[Any]) -> Any:
        return msgspec.json.Decoder(type)


class MsgpackCodec(_MsgspecCodec):
    """msgspec MessagePack, ``content-type: application/msgpack``: smaller, faster."""

    content_type = "application/msgpack"

    def __init__(self) -> None:
        self._encoder = msgspec.msgpack.Encoder()
        self._decoders = {}

    def _make_decoder(self, type: type[Any]) -> Any:
        return msgspec.msgpack.Decoder(type)


_NAMED = {"json": JsonCodec, "msgpack": MsgpackCodec}


def resolve_codec(codec: Codec | str) -> Codec:
    """Return a codec instance for ``"json"``, ``"msgpack"`` or a Codec object."""
    if isinstance(codec, str):
        factory = _NAMED.get(codec)
        if factory is None:
            raise ConfigurationError(
                f"codec {codec!r} is unknown: use 'json', 'msgpack' or a Codec instance"
            )
        return factory()
    if not isinstance(codec, Codec):
        raise ConfigurationError(
            f"codec must be 'json', 'msgpack' or have content_type/encode/decode, "
            f"got {type(codec).__name__}"
        )
    return codec
