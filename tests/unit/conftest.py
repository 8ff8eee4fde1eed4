"""Shared unit fixtures: the committed models (verified once per session) and a few world events.

Every unit test is hermetic: it runs in an empty working directory (so no ``configs/scorer.yaml`` of the checkout
or of wherever pytest was started is read unless a test names one) with none of the developer's ``CRM_SCORER_*``
variables or the tools' broker variables set.
"""

from __future__ import annotations

import os

import pytest

from consumer.core.engine import ScoringEngine
from consumer.service import build_engine
from consumer.settings import ENV_PREFIX, Settings, load_settings
from models.artifacts import ModelSet, load_models
from models.config import ModelsConfig
from producer_tools.servers.broker import BOOTSTRAP_ENV, BROKER_ENV


@pytest.fixture(autouse=True)
def hermetic(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> None:
    for name in list(os.environ):
        if name.startswith(ENV_PREFIX) or name in (BOOTSTRAP_ENV, BROKER_ENV):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path_factory.mktemp("cwd"))


@pytest.fixture(scope="session")
def model_set() -> ModelSet:
    return load_models(ModelsConfig())


@pytest.fixture
def settings() -> Settings:
    return load_settings(None)


@pytest.fixture
def engine(settings: Settings) -> ScoringEngine:
    return build_engine(settings)
