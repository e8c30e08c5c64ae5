r"""Schema Registry codecs: Confluent's wire format, JSON Schema and Avro (``eventwire[registry]``).

:class:`JsonSchemaCodec` and :class:`AvroCodec` are :class:`~eventwire.TopicCodec`\ s: give
one to a publisher (``Publisher(..., codec=JsonSchemaCodec(...))``) and each event's value
is written as byte 0, the 4-byte id of its schema in the registry, then the JSON document
or Avro body -- what Confluent's serializers in any language write and read. The schema
comes from the event type (derived once per type) or is given explicitly; its id is
looked up or registered once per type and topic and then cached, so publishing costs no
registry call per event. Each record also gets the CloudEvents ``ce_dataschema`` header,
``<registry url>/schemas/ids/<id>``.

Where the registry is and how to log in (:class:`SchemaRegistryConfig`) comes from the
same config file as Kafka (a ``[schema_registry]`` table) and from
``EVENTWIRE_SCHEMA_REGISTRY_*`` variables; credentials are secrets, never shown.

Errors are :class:`~eventwire.SerializationError`\ s raised by ``publish()`` before
anything is enqueued (with an outbox: before anything is stored): the registry refusing
the schema as incompatible (:class:`SchemaIncompatibleError`), nothing registered while
not registering (:class:`SchemaNotFoundError`), the registry unreachable
(:class:`SchemaRegistryUnavailableError`, also a ``ConnectionError``), other refusals
(:class:`RegistryError`).

Decision (issue 16): this package builds on confluent-kafka's own
``confluent_kafka.schema_registry`` client and serializers (``JSONSerializer``,
``AvroSerializer`` and their deserializers) instead of a client of our own. They are
well kept by the same vendor as the Kafka client, write exactly Confluent's wire format,
and bring the schema-id cache, subject name strategies, retries and auth. So this package
is the one place besides ``eventwire.transports.kafka`` that imports ``confluent_kafka``,
and only its ``schema_registry`` subpackage, lazily (when a codec is made): ``import
eventwire`` and ``import eventwire.schema_registry`` work without the extra.
"""

from __future__ import annotations

from eventwire.schema_registry._avro import avro_schema
from eventwire.schema_registry._codec import (
    AvroCodec,
    JsonSchemaCodec,
    SubjectNameStrategy,
    json_schema,
)
from eventwire.schema_registry._config import ENV_PREFIX, SchemaRegistryConfig
from eventwire.schema_registry._errors import (
    RegistryError,
    SchemaIncompatibleError,
    SchemaNotFoundError,
    SchemaRegistryUnavailableError,
)

__all__ = [
    "ENV_PREFIX",
    "AvroCodec",
    "JsonSchemaCodec",
    "RegistryError",
    "SchemaIncompatibleError",
    "SchemaNotFoundError",
    "SchemaRegistryConfig",
    "SchemaRegistryUnavailableError",
    "SubjectNameStrategy",
    "avro_schema",
    "json_schema",
]
