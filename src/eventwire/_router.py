"""The router: event class -> topic, key bytes, type name and header template.

Resolution happens once per class and is cached, so the per-event cost is a
dict lookup plus reading the key.
"""

from __future__ import annotations

import enum
import operator
import sys
import uuid
from collections.abc import Callable, Mapping
from typing import Any

from eventwire._cloudevents import HeaderTemplate
from eventwire._errors import ConfigurationError, RoutingError
from eventwire._event import ROUTE_ATTRIBUTE, Route, check_text
from eventwire._shapes import check_event_class
from eventwire._type_name import default_type_name
from eventwire._uri import uri_reference_problem

__all__ = ["BoundRoute", "EncoderFactory", "Router", "ValueCheckFactory"]

#: Given an event class, the check each encoded event of it needs (or None).
ValueCheckFactory = Callable[[type], "Callable[[Any], None] | None"]
#: Given an event class, the function encoding its events (e.g. ``JsonCodec.encoder_for``).
EncoderFactory = Callable[[type], Callable[[Any], bytes]]


def _no_encoder(event: Any) -> bytes:
    raise AssertionError("this router was built without an encoder")  # pragma: no cover


class BoundRoute:
    """A route bound to one event class, ready for the hot path."""

    __slots__ = (
        "_key_fn",
        "_key_label",
        "check_value",
        "encode",
        "headers",
        "key_field",
        "topic",
        "type_name",
    )

    def __init__(
        self,
        cls: type,
        route: Route,
        *,
        source: str,
        content_type: str,
        value_check: ValueCheckFactory | None = None,
        encoder: EncoderFactory | None = None,
    ) -> None:
        route.check_for(cls)
        #: Encodes an event of this class (chosen once per class: msgspec's encoder,
        #: or pydantic's serializer for a model).
        self.encode = encoder(cls) if encoder is not None else _no_encoder
        #: Run on each event once it is encoded (the codec's NaN/infinity check), or None.
        self.check_value = value_check(cls) if value_check is not None else None
        self.topic = route.topic
        self.type_name = route.type_name or check_text(
            default_type_name(cls), f"the type name (ce_type) of {cls!r}"
        )
        self.headers = HeaderTemplate(
            type_name=self.type_name, source=source, content_type=content_type
        )
        key = route.key
        self.key_field: Callable[[Any], Any] | None = None
        self._key_fn: Callable[[Any], Any] | None
        if key is None:
            self._key_fn, self._key_label = None, ""
        elif isinstance(key, str):
            self._key_fn, self._key_label = operator.attrgetter(key), f"key field {key!r}"
            #: The key field's getter, for the hot path's inlined ``key_of`` (a str
            #: field's value is encoded there; anything else goes through key_of).
            self.key_field = self._key_fn
        else:
            self._key_fn = key
            self._key_label = f"key function {getattr(key, '__qualname__', key)!r}"

    def key_of(self, event: Any) -> bytes | None:
        """Return the UTF-8 routing key of ``event``, or None for an unkeyed route.

        Raises:
            RoutingError: the key is None, of a type with no canonical text, or text
                that is not valid UTF-8 (a lone surrogate).
        """
        fn = self._key_fn
        if fn is None:
            return None
        try:
            value = fn(event)
        except Exception as exc:
            raise RoutingError(f"{self._key_label} of {self.type_name} failed: {exc!r}") from exc
        if type(value) is str:
            try:
                return value.encode()
            except UnicodeEncodeError as exc:
                raise self._not_text(exc) from None
        return self._coerce_key(value)

    def _not_text(self, exc: UnicodeEncodeError) -> RoutingError:
        return RoutingError(
            f"{self._key_label} of {self.type_name} is {exc.object!r}, which is not valid text "
            f"({exc.reason} at position {exc.start}): Kafka keys are sent as UTF-8. Fix "
            "the value (it usually comes from bytes decoded with errors='surrogateescape'), "
            "or return bytes from a key function."
        )

    def _coerce_key(self, value: object) -> bytes:
        if value is None:
            raise RoutingError(
                f"{self._key_label} of {self.type_name} is None, so the event has no "
                f"partition key (topic {self.topic!r}). Set the field, or route with "
                "key=None explicitly if ordering does not matter."
            )
        try:
            if isinstance(value, str):
                return value.encode()
            if isinstance(value, bytes):
                return value
            if isinstance(value, int) and not isinstance(value, bool):
                try:
                    # int's own digits: str() of an ``(int, Enum)`` member is "Region.EU".
                    return int.__repr__(value).encode()
                except ValueError:  # past Python's int-to-str digit limit (4,300 by default)
                    raise RoutingError(
                        f"{self._key_label} of {self.type_name} is an int of more than "
                        f"{sys.get_int_max_str_digits()} digits, too long to be a key: use "
                        "a key function that returns a shorter str or bytes."
                    ) from None
            if isinstance(value, uuid.UUID):
                return str(value).encode()
            if isinstance(value, enum.Enum) and isinstance(value.value, str | int):
                return str(value.value).encode()
        except UnicodeEncodeError as exc:
            raise self._not_text(exc) from None
        raise RoutingError(
            f"{self._key_label} of {self.type_name} is a {type(value).__qualname__}, "
            "which has no canonical text form (its value is not shown: it may be "
            "personal data). Keys must be str, bytes, int, UUID or a str/int Enum; use a "
            "key function to convert it."
        )


class Router:
    """Maps event classes to bound routes.

    Routes come from ``routes`` (for event classes you do not own) first, then from the
    class's ``@event`` declaration. Unknown classes raise RoutingError before
    anything is enqueued.
    """

    def __init__(
        self,
        routes: Mapping[Any, Route] | None = None,
        *,
        source: str,
        content_type: str,
        value_check: ValueCheckFactory | None = None,
        encoder: EncoderFactory | None = None,
    ) -> None:
        try:
            check_text(source, "source (the CloudEvents ce_source)")
        except RoutingError as exc:
            raise ConfigurationError(str(exc)) from None
        problem = uri_reference_problem(source)
        if problem is not None:
            shown = f"{source[:200]!r}{'...' if len(source) > 200 else ''}"
            raise ConfigurationError(
                f"source (the CloudEvents ce_source) {shown} is not a URI-reference: "
                f"{problem}. CloudEvents requires ce_source to be a URI-reference (RFC 3986; "
                "non-ASCII letters are allowed, as in an IRI), and consumers in other "
                "languages (the Java SDK parses it as a java.net.URI) cannot read the events "
                "otherwise. Use e.g. 'urn:myorg:billing', '/billing-service' or "
                "'https://example.com/billing', and percent-encode other characters "
                "('%20' for a space, '%25' for '%')."
            )
        self._source = source
        self._content_type = content_type
        self._value_check = value_check
        self._encoder = encoder
        self._explicit: dict[type, Route] = {}
        #: Bound routes by class; read directly on the hot path.
        self.cache: dict[type, BoundRoute] = {}
        for cls, route in (routes or {}).items():
            if not isinstance(route, Route):
                raise RoutingError(
                    f"routes[{getattr(cls, '__qualname__', cls)!r}] must be a Route, "
                    f"got {type(route).__name__}"
                )
            self.cache[cls] = BoundRoute(
                cls,
                route,
                source=source,
                content_type=content_type,
                value_check=value_check,
                encoder=encoder,
            )
            self._explicit[cls] = route

    def resolve(self, cls: type) -> BoundRoute:
        """Return the bound route for ``cls`` (cached after the first call)."""
        bound = self.cache.get(cls)
        if bound is None:
            bound = self.cache[cls] = self._bind(cls)
        return bound

    def template_for(self, type_name: str) -> HeaderTemplate:
        """The CloudEvents header template of the bound route whose ``ce_type`` is ``type_name``.

        For re-sending an event already published (its route is bound by then).

        Raises:
            RoutingError: no bound route has that type name.
        """
        for bound in list(self.cache.values()):
            if bound.type_name == type_name:
                return bound.headers
        raise RoutingError(f"no bound route has ce_type {type_name!r}")

    def _bind(self, cls: type) -> BoundRoute:
        try:
            check_event_class(cls)
        except RoutingError as exc:
            raise RoutingError(
                f"cannot publish a {getattr(cls, '__qualname__', cls)}: {exc}"
            ) from None
        route = cls.__dict__.get(ROUTE_ATTRIBUTE)
        if route is None:
            raise RoutingError(
                f"{cls.__qualname__} has no route: decorate it with "
                "@event(topic=..., key=...) or pass "
                f"routes={{{cls.__qualname__}: Route(topic=..., key=...)}} to the publisher."
            )
        return BoundRoute(
            cls,
            route,
            source=self._source,
            content_type=self._content_type,
            value_check=self._value_check,
            encoder=self._encoder,
        )
