"""Assembling the scorer from settings: verified models, the decoder, the result framing, the engine.

Everything here is construction; nothing is scored. The registry client is built only when a URL is set.
"""

from __future__ import annotations

from typing import Any

from consumer.core.dedup import RecentScores
from consumer.core.engine import ScoringEngine
from consumer.core.offers import OfferBook
from consumer.core.result_writer import result_schema
from consumer.settings import Settings
from models.artifacts import ModelSet, load_models
from schemas import EventDecoder, SchemaSource, load_catalog
from schemas.framing import confluent_header, single_object_header


def registry_source(settings: Settings) -> Any | None:
    """The Schema Registry source when ``schema_registry.url`` is set (no network until first use)."""
    conf = settings.schema_registry.client_config()
    if not conf:
        return None
    from schemas.registry import RegistrySchemaSource

    return RegistrySchemaSource.from_url(**conf)


def result_header(settings: Settings, registry: Any | None) -> bytes:
    """Results use the input's framing family: Confluent when a registry is configured, else single-object.

    Raises:
        RegistryUnavailableError, ConfigError: registering the result schema failed.
    """
    schema = result_schema()
    if registry is None:
        return single_object_header(schema)
    from schemas.registry import value_subject

    return confluent_header(registry.register_schema(value_subject(settings.topics.output), schema.schema_str))


def build_engine(
    settings: Settings,
    registry: SchemaSource | None = None,
    header: bytes | None = None,
    models: ModelSet | None = None,
) -> ScoringEngine:
    """A ready engine for the stream. ``header`` (the results' framing header) and ``models``, when the caller
    already has them; else registered (see :func:`result_header`) and loaded now. Raises ArtifactError when a
    model cannot be verified or loaded."""
    registry = registry if registry is not None else registry_source(settings)
    header = header if header is not None else result_header(settings, registry)
    return _engine(settings, EventDecoder(load_catalog(), registry), header, models)


def build_offline_engine(settings: Settings) -> ScoringEngine:
    """An engine for events read from the JSON view (``crm-scorer score``): it never contacts the Schema
    Registry, whatever ``schema_registry.url`` says, and frames its results single-object (they are decoded
    back into the JSON view). Raises ArtifactError as ``build_engine``."""
    return _engine(settings, EventDecoder(load_catalog()), single_object_header(result_schema()))


def _engine(
    settings: Settings, decoder: EventDecoder, result_header: bytes, models: ModelSet | None = None
) -> ScoringEngine:
    capacity = settings.dedup.capacity if settings.dedup.enabled else 0
    return ScoringEngine(
        models if models is not None else load_models(settings.models),
        decoder,
        result_header,
        config_hash=settings.config_hash(),
        reasons=settings.models.reasons,
        recent=RecentScores[bytes](capacity),
        offers=OfferBook.of(settings.models),
        reason_codes=settings.models.reason_codes,
        statement_languages=settings.results.statement_languages,
    )
