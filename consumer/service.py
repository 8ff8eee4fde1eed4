"""Assembling the scorer from settings: verified models, the decoder, the result encoder, the engine.

Everything here is construction; nothing is scored. The registry client is built only when a URL is set.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from consumer.core.dedup import RecentScores
from consumer.core.engine import ScoringEngine
from consumer.settings import Settings
from models.artifacts import load_models
from schemas import ConfluentEncoder, EventDecoder, SchemaSource, SingleObjectEncoder, load_catalog


def registry_source(settings: Settings) -> Any | None:
    """The Schema Registry source when ``schema_registry.url`` is set (no network until first use)."""
    registry = settings.schema_registry
    if not registry.url:
        return None
    from schemas.registry import RegistrySchemaSource

    conf: dict[str, Any] = {}
    if registry.basic_auth_user_info is not None:
        conf["basic.auth.user.info"] = registry.basic_auth_user_info.get_secret_value()
    return RegistrySchemaSource.from_url(registry.url, **conf)


def result_encoder(settings: Settings, registry: Any | None) -> Callable[[dict[str, Any]], bytes]:
    """Results use the input's framing family: Confluent when a registry is configured, else single-object.

    Raises:
        RegistryUnavailableError, ConfigError: registering the result schema failed.
    """
    schema = load_catalog().score_result
    if registry is None:
        return SingleObjectEncoder(schema)
    from schemas.registry import value_subject

    schema_id = registry.register_schema(value_subject(settings.topics.output), schema.schema_str)
    return ConfluentEncoder(schema_id, schema)


def build_engine(settings: Settings, registry: SchemaSource | None = None) -> ScoringEngine:
    """A ready engine. Raises ArtifactError when a model cannot be verified or loaded."""
    registry = registry if registry is not None else registry_source(settings)
    capacity = settings.dedup.capacity if settings.dedup.enabled else 0
    return ScoringEngine(
        load_models(settings.models),
        EventDecoder(load_catalog(), registry),
        result_encoder(settings, registry),
        config_hash=settings.config_hash(),
        reasons=settings.models.reasons,
        recent=RecentScores[Any](capacity),
    )
