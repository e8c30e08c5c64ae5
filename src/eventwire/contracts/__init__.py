"""Event contracts: an AsyncAPI 3.0 document of the routed events, and compatibility checks.

* :func:`collect_routes` finds the routed event types of modules (``@event`` classes,
  ``module:ROUTES`` mappings).
* :func:`build_asyncapi` describes them as an AsyncAPI 3.0 document (channels = topics,
  messages = event types, CloudEvents headers, Kafka key bindings);
  :func:`dump_document` / :func:`load_document` write and read it (YAML needs PyYAML:
  the ``contracts`` or ``cli`` extra).
* :func:`check_compatible` lists the :class:`Break` s between an earlier document and
  the current types under a Schema Registry :class:`Mode` (``BACKWARD``, ``FORWARD``,
  ``FULL`` and their ``_TRANSITIVE`` forms), following what the decoder accepts
  (msgspec's, or pydantic's ``model_validate_json`` for a pydantic model);
  :func:`assert_compatible` is its pytest form.

The command line: ``eventwire schema export MODULE... -o asyncapi.yaml`` and
``eventwire schema check MODULE... --against asyncapi.yaml --mode BACKWARD``.
"""

from eventwire.contracts._collect import ContractError, RoutedType, collect_routes, routed_types
from eventwire.contracts.asyncapi import build_asyncapi, dump_document, load_document
from eventwire.contracts.compat import (
    Break,
    IncompatibleSchemaError,
    Mode,
    assert_compatible,
    check_compatible,
    load_versions,
)

__all__ = [
    "Break",
    "ContractError",
    "IncompatibleSchemaError",
    "Mode",
    "RoutedType",
    "assert_compatible",
    "build_asyncapi",
    "check_compatible",
    "collect_routes",
    "dump_document",
    "load_document",
    "load_versions",
    "routed_types",
]
