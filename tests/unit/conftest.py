"""Shared unit fixtures: the committed models (verified once per session) and a few world events."""

from __future__ import annotations

import pytest

from consumer.core.engine import ScoringEngine
from consumer.service import build_engine
from consumer.settings import Settings, load_settings
from models.artifacts import ModelSet, load_models
from models.config import ModelsConfig


@pytest.fixture(scope="session")
def model_set() -> ModelSet:
    return load_models(ModelsConfig())


@pytest.fixture
def settings() -> Settings:
    return load_settings(None)


@pytest.fixture
def engine(settings: Settings) -> ScoringEngine:
    return build_engine(settings)
