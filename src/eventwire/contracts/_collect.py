"""Finding the routed event types of an application: ``@event`` classes and ``routes=`` mappings.

A *spec* names where to look: ``package.module`` (every ``@event``-decorated class in
the module's namespace, including ones it imports), or ``package.module:NAME`` where
``NAME`` is an ``@event`` class or a mapping ``{EventClass: Route(...)}`` (what the
application passes as ``Publisher(routes=...)``).
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from eventwire._errors import EventwireError
from eventwire._event import ROUTE_ATTRIBUTE, Route, check_text
from eventwire._type_name import default_type_name

__all__ = ["ContractError", "RoutedType", "collect_routes", "routed_types"]


class ContractError(EventwireError, ValueError):
    """A contract cannot be built or read: a module, a file, a type msgspec cannot describe."""


@dataclass(frozen=True, slots=True)
class RoutedType:
    """An event class with its route and the ``ce_type`` it is published under."""

    cls: type
    route: Route

    @property
    def type_name(self) -> str:
        """The CloudEvents ``ce_type``: the route's ``type_name``, else ``module.QualName``."""
        return self.route.type_name or check_text(
            default_type_name(self.cls), f"the type name of {self.cls!r}"
        )


def _route_of(obj: object) -> Route | None:
    if isinstance(obj, type):
        route = obj.__dict__.get(ROUTE_ATTRIBUTE)
        if isinstance(route, Route):
            return route
    return None


def _import(name: str) -> object:
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        raise ContractError(f"cannot import module {name!r}: {exc}") from exc
    except SystemExit as exc:
        # A module that runs a program when imported (argparse, a script's sys.exit()):
        # letting the exit through would end `eventwire schema check` with its code --
        # 0, "compatible", without anything checked.
        raise ContractError(
            f"importing module {name!r} called sys.exit({exc.code!r}), so its event types "
            "cannot be collected: guard the module's program with "
            '`if __name__ == "__main__":`, or name a module that only defines the events'
        ) from None


def collect_routes(specs: Iterable[str]) -> list[RoutedType]:
    """The routed event types named by ``specs`` (see the module docstring), in a stable order.

    A class found twice is listed once; a ``routes=`` mapping wins over the class's own
    ``@event`` route (as in the publisher).

    Raises:
        ContractError: a module cannot be imported (or calls ``sys.exit()`` when
            imported), ``NAME`` is missing or is neither an ``@event`` class nor a mapping
            of classes to routes, two routed classes share a ``ce_type``, or nothing
            routed was found.
    """
    explicit: dict[type, Route] = {}
    declared: dict[type, Route] = {}
    for spec in specs:
        module_name, _, attr = spec.partition(":")
        module = _import(module_name)
        if not attr:
            for value in vars(module).values():
                route = _route_of(value)
                if route is not None and isinstance(value, type):
                    declared.setdefault(value, route)
            continue
        try:
            value = getattr(module, attr)
        except AttributeError:
            raise ContractError(f"module {module_name!r} has no attribute {attr!r}") from None
        route = _route_of(value)
        if route is not None and isinstance(value, type):
            declared.setdefault(value, route)
        elif isinstance(value, Mapping):
            for cls, route in value.items():
                if not (isinstance(cls, type) and isinstance(route, Route)):
                    raise ContractError(
                        f"{spec}: a routes mapping holds classes and Route objects, got "
                        f"{cls!r}: {type(route).__name__}"
                    )
                explicit[cls] = route
        else:
            raise ContractError(
                f"{spec} is a {type(value).__name__}: name an @event class or a "
                "routes mapping {EventClass: Route(...)}"
            )
    merged = {**declared, **explicit}
    if not merged:
        raise ContractError(
            f"no routed event type in {', '.join(specs)}: decorate event classes with "
            "@event(topic=..., key=...), or name a routes mapping as module:NAME"
        )
    return routed_types(merged)


def routed_types(routes: Mapping[type, Route] | Iterable[type]) -> list[RoutedType]:
    """``RoutedType`` s of ``@event`` classes or a ``{cls: Route}`` mapping, by ``ce_type``.

    Raises:
        ContractError: a class has no route, or two classes share a ``ce_type``.
    """
    items: list[RoutedType] = []
    if isinstance(routes, Mapping):
        items = [RoutedType(cls, route) for cls, route in routes.items()]
    else:
        for cls in routes:
            route = _route_of(cls)
            if route is None:
                raise ContractError(
                    f"{getattr(cls, '__qualname__', cls)!r} has no route: decorate it with "
                    "@event(topic=..., key=...) or pass a {cls: Route(...)} mapping"
                )
            items.append(RoutedType(cls, route))
    for item in items:
        item.route.check_for(item.cls)
    by_name: dict[str, RoutedType] = {}
    for item in items:
        other = by_name.setdefault(item.type_name, item)
        if other.cls is not item.cls:
            raise ContractError(
                f"{other.cls.__module__}.{other.cls.__qualname__} and "
                f"{item.cls.__module__}.{item.cls.__qualname__} share the ce_type "
                f"{item.type_name!r}: give one of them another type_name"
            )
    return sorted(by_name.values(), key=lambda item: item.type_name)
