"""Artifacts are verified before they are loaded; the manifest and the config must agree."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from models.artifacts import load_models
from models.config import DEFAULT_ARTIFACTS_DIR, BankConfig, ModelsConfig
from schemas.errors import ArtifactError


@pytest.fixture
def artifacts(tmp_path: Path) -> Path:
    target = tmp_path / "artifacts"
    shutil.copytree(DEFAULT_ARTIFACTS_DIR, target)
    return target


def test_committed_artifacts_load_with_every_configured_bank() -> None:
    models = load_models(ModelsConfig())
    assert [b.name for b in models.banks] == ["bank_a", "bank_b", "bank_c", "bank_d", "bank_e"]
    assert all(0 < b.threshold < 1 for b in models.banks)


def test_a_tampered_artifact_is_refused(artifacts: Path) -> None:
    path = artifacts / "bank_c.ubj"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(ArtifactError, match=r"'bank_c'.*sha256.*does not match"):
        load_models(ModelsConfig(artifacts_dir=artifacts))


def test_a_missing_artifact_is_refused(artifacts: Path) -> None:
    (artifacts / "lead.json").unlink()
    with pytest.raises(ArtifactError, match=r"'lead'.*missing"):
        load_models(ModelsConfig(artifacts_dir=artifacts))


def test_a_missing_manifest_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ArtifactError, match="no model manifest"):
        load_models(ModelsConfig(artifacts_dir=tmp_path))


def test_a_manifest_naming_an_unknown_feature_is_refused(artifacts: Path) -> None:
    manifest = json.loads((artifacts / "manifest.json").read_text())
    manifest["models"]["bank_a"]["features"][0] = "shoe_size"
    (artifacts / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ArtifactError, match=r"'bank_a'.*shoe_size"):
        load_models(ModelsConfig(artifacts_dir=artifacts))


def test_a_configured_bank_without_artifact_is_refused() -> None:
    config = ModelsConfig(banks=[BankConfig(name="bank_a"), BankConfig(name="bank_z")])
    with pytest.raises(ArtifactError, match=r"'bank_z' is configured but the manifest has no entry"):
        load_models(config)


def test_a_bank_added_with_its_artifact_is_scored_without_code_changes(artifacts: Path) -> None:
    # a new partner bank: same model file under a new name, added to the manifest and the config
    manifest = json.loads((artifacts / "manifest.json").read_text())
    shutil.copy(artifacts / "bank_a.ubj", artifacts / "bank_f.ubj")
    manifest["models"]["bank_f"] = manifest["models"]["bank_a"] | {"file": "bank_f.ubj", "version": "bank_f-1"}
    (artifacts / "manifest.json").write_text(json.dumps(manifest))
    config = ModelsConfig(artifacts_dir=artifacts, banks=[BankConfig(name="bank_a"), BankConfig(name="bank_f")])
    models = load_models(config)
    assert [b.version for b in models.banks] == [manifest["models"]["bank_a"]["version"], "bank_f-1"]
