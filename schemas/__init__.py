"""Avro schemas (every version kept) and the small codec the scorer and the producer tools share.

The Schema Registry adapter is ``schemas.registry.RegistrySchemaSource``; it is not re-exported here so that
importing the codec never imports confluent_kafka.
"""

from schemas.catalog import SchemaCatalog, SchemaVersion, load_catalog
from schemas.codec import DecodedBatch, EventDecoder, RecordDecoder, ResultDecoder
from schemas.framing import (
    FRAMINGS,
    ConfluentEncoder,
    Framing,
    SchemaSource,
    SingleObjectEncoder,
    framing_of,
)

__all__ = [
    "FRAMINGS",
    "ConfluentEncoder",
    "DecodedBatch",
    "EventDecoder",
    "Framing",
    "RecordDecoder",
    "ResultDecoder",
    "SchemaCatalog",
    "SchemaSource",
    "SchemaVersion",
    "SingleObjectEncoder",
    "framing_of",
    "load_catalog",
]
