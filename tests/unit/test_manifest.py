"""The manifest is one typed model: training writes it, serving reads it, and a missing key is named."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from models.artifacts import load_models
from models.config import DEFAULT_ARTIFACTS_DIR, ModelsConfig
from models.manifest import MANIFEST, Manifest
from schemas.errors import ArtifactError


@pytest.fixture
def artifacts(tmp_path: Path) -> Path:
    target = tmp_path / "artifacts"
    shutil.copytree(DEFAULT_ARTIFACTS_DIR, target)
    return target


def edit(artifacts: Path, change: Callable[[dict[str, Any]], object]) -> None:
    path = artifacts / MANIFEST
    manifest = json.loads(path.read_text())
    change(manifest)
    path.write_text(json.dumps(manifest))


def test_the_committed_manifest_reads_and_writes_back_byte_for_byte() -> None:
    manifest = Manifest.read(DEFAULT_ARTIFACTS_DIR)
    assert manifest.to_json() == (DEFAULT_ARTIFACTS_DIR / MANIFEST).read_text()
    assert manifest.models["lead"].calibration is None and manifest.models["bank_a"].calibration is not None


def test_a_missing_key_is_named_not_a_key_error(artifacts: Path) -> None:
    edit(artifacts, lambda m: m["models"]["bank_a"].pop("threshold"))
    pattern = r"manifest\.json is not a valid manifest: models\.bank_a\.threshold: Field required"
    with pytest.raises(ArtifactError, match=pattern):
        load_models(ModelsConfig(artifacts_dir=artifacts))


def test_a_missing_section_is_named(artifacts: Path) -> None:
    edit(artifacts, lambda m: m.pop("models"))
    with pytest.raises(ArtifactError, match=r"models: Field required"):
        Manifest.read(artifacts)


def test_a_manifest_that_is_not_json_is_named(artifacts: Path) -> None:
    (artifacts / MANIFEST).write_text("{not json")
    with pytest.raises(ArtifactError, match="not valid JSON"):
        load_models(ModelsConfig(artifacts_dir=artifacts))


def test_keys_a_newer_trainer_adds_are_ignored(artifacts: Path) -> None:
    edit(artifacts, lambda m: m["models"]["bank_a"].update(learning_rate=0.1))
    assert load_models(ModelsConfig(artifacts_dir=artifacts)).banks[0].name == "bank_a"
