"""Model sets: versions, the feature-pipeline version, the store's record, and the `crm-scorer models` command."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from consumer.commands.cli import main
from models.artifacts import load_models
from models.config import DEFAULT_ARTIFACTS_DIR, ModelsConfig
from models.manifest import MANIFEST, Manifest, content_version
from models.pipeline import catalogue_digest_text, module_digest_text, pipeline_version
from models.store import RECORD, Activation, ModelStore, StoreError
from schemas.errors import ArtifactError
from tests.model_sets import flip_a_byte, small_model_set, store_with_two_sets

MODELS = ["bank_a", "bank_b", "bank_c", "bank_d", "bank_e", "lead"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("trained") / "set"
    small_model_set(out, parent=Manifest.read(DEFAULT_ARTIFACTS_DIR).version)
    return out


@pytest.fixture
def two_sets(tmp_path: Path, trained: Path) -> tuple[ModelStore, str, str]:
    return store_with_two_sets(tmp_path / "store", trained)


def other_pipeline(directory: Path) -> None:
    manifest = json.loads((directory / MANIFEST).read_text())
    manifest["pipeline"] = {"version": "0123456789abcdef"}
    (directory / MANIFEST).write_text(json.dumps(manifest))


def test_the_pipeline_version_ignores_layout_comments_and_docstrings_but_not_code() -> None:
    base = module_digest_text('"""Doc."""\nLIMIT = (1, 2)\n\ndef f(x):\n    """Doc."""\n    return x * LIMIT[0]\n')
    relaid = module_digest_text(
        '"""Other doc."""\nLIMIT = (\n    1,\n    2,\n)  # why\n\ndef f(x):\n    return x * LIMIT[0]\n'
    )
    changed = module_digest_text('"""Doc."""\nLIMIT = (1, 3)\n\ndef f(x):\n    return x * LIMIT[0]\n')
    assert base == relaid and base != changed
    assert catalogue_digest_text("a: {up: x}  # note\n") == catalogue_digest_text("a:\n  up: x\n")
    assert len(pipeline_version()) == 16


def test_the_committed_set_names_its_version_and_pipeline() -> None:
    manifest = Manifest.read(DEFAULT_ARTIFACTS_DIR)
    raw = json.loads((DEFAULT_ARTIFACTS_DIR / MANIFEST).read_text())
    assert manifest.version == raw["version"] == content_version(raw)
    assert manifest.pipeline_version == pipeline_version()
    assert load_models(ModelsConfig()).version == manifest.version


def test_a_manifest_without_a_version_reads_as_its_contents_version(tmp_path: Path) -> None:
    shutil.copytree(DEFAULT_ARTIFACTS_DIR, tmp_path / "set")
    raw = json.loads((tmp_path / "set" / MANIFEST).read_text())
    raw.pop("version")
    (tmp_path / "set" / MANIFEST).write_text(json.dumps(raw))
    assert Manifest.read(tmp_path / "set").version == Manifest.read(DEFAULT_ARTIFACTS_DIR).version


def test_a_set_built_for_another_pipeline_is_refused_naming_both_versions(tmp_path: Path) -> None:
    shutil.copytree(DEFAULT_ARTIFACTS_DIR, tmp_path / "set")
    other_pipeline(tmp_path / "set")
    with pytest.raises(ArtifactError, match=f"feature pipeline 0123456789abcdef.*runs pipeline {pipeline_version()}"):
        load_models(ModelsConfig(), tmp_path / "set")


def test_training_writes_version_parent_pipeline_and_lineage(trained: Path) -> None:
    manifest = Manifest.read(trained)
    assert manifest.parent == Manifest.read(DEFAULT_ARTIFACTS_DIR).version
    assert manifest.pipeline_version == pipeline_version()
    assert manifest.lineage is not None and manifest.lineage["events"] == 2000
    assert manifest.version == content_version(json.loads((trained / MANIFEST).read_text()))


def test_activate_and_rollback_keep_the_record_and_the_history(two_sets: tuple[ModelStore, str, str]) -> None:
    store, first, second = two_sets
    assert set(store.versions()) == {first, second}
    activation = store.activate(second, MODELS, "ops", "retrained")
    assert store.active() == second and activation.manifest_sha256 == store.manifest_sha256(second)
    assert Activation.from_json(activation.to_json()) == activation
    back = store.rollback(MODELS, "ops", "")
    assert store.active() == first and back.reason == f"rollback from {second}"
    assert [h["version"] for h in store.history()] == [first, second, first]
    with pytest.raises(StoreError, match="nothing to roll back to"):
        store.rollback(MODELS, "ops", "")


@pytest.mark.parametrize(
    ("spoil", "problem"),
    [
        (lambda d: flip_a_byte(d / "bank_c.ubj"), "bank_c file bank_c.ubj sha256 does not match"),
        (lambda d: (d / "lead.json").unlink(), "lead file lead.json is missing"),
        (other_pipeline, "built for feature pipeline 0123456789abcdef"),
    ],
)
def test_a_spoilt_set_is_refused_and_nothing_changes(two_sets: tuple[ModelStore, str, str], spoil, problem) -> None:
    store, first, second = two_sets
    spoil(store.directory(second))
    record = (store.root / RECORD).read_bytes()
    with pytest.raises(StoreError, match=f"refusing model set {second}: {problem}"):
        store.activate(second, MODELS, "ops", "")
    assert (store.root / RECORD).read_bytes() == record and store.active() == first


def test_an_unknown_version_is_named_with_the_sets_there_are(two_sets: tuple[ModelStore, str, str]) -> None:
    store, first, _ = two_sets
    with pytest.raises(StoreError, match=f"model set 'nope' is not in the store .*{first}"):
        store.activate("nope", MODELS, "ops", "")
    with pytest.raises(StoreError, match="not in the store"):
        store.directory("../store")


def test_a_set_missing_a_configured_bank_is_refused(two_sets: tuple[ModelStore, str, str]) -> None:
    store, _, second = two_sets
    assert store.problems(second, [*MODELS, "bank_f"]) == [f"{second}: configured model(s) bank_f not in the manifest"]


def test_models_verify_prints_one_line_per_problem_and_fails(
    two_sets: tuple[ModelStore, str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    store, first, second = two_sets
    flip_a_byte(store.directory(second) / "bank_a.ubj")
    flip_a_byte(store.directory(second) / "reference_profile.json")
    assert main(["models", "--store", str(store.root), "verify"]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert f"{first}: ok" in lines
    assert sorted(lines) == sorted(
        [
            f"{first}: ok",
            f"{second}: bank_a file bank_a.ubj sha256 does not match the manifest",
            f"{second}: reference_profile file reference_profile.json sha256 does not match the manifest",
        ]
    )


def test_models_activate_of_an_unknown_version_is_one_line_and_changes_nothing(
    two_sets: tuple[ModelStore, str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    store, first, _ = two_sets
    assert main(["models", "--store", str(store.root), "activate", "nope"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("crm-scorer: model set 'nope' is not in the store") and "\n" not in err
    assert store.active() == first


def test_models_list_marks_the_active_set(two_sets: tuple[ModelStore, str, str], capsys) -> None:
    store, first, second = two_sets
    assert main(["models", "--store", str(store.root), "list"]) == 0
    out = capsys.readouterr().out
    assert f"* {first} " in out and f"  {second}  " in out and f" {first} " in out.split(second)[1]
    assert "bank_c bank_c-" in out


@pytest.mark.parametrize(
    ("spoil", "problem"),
    [
        (lambda d: flip_a_byte(d / "bank_c.ubj"), "bank_c file bank_c.ubj sha256 does not match the manifest"),
        (
            other_pipeline,
            f"built for feature pipeline 0123456789abcdef, this scorer runs pipeline {pipeline_version()}",
        ),
    ],
)
def test_models_activate_of_a_spoilt_set_is_one_line_and_changes_nothing(
    two_sets: tuple[ModelStore, str, str], capsys: pytest.CaptureFixture[str], spoil, problem: str
) -> None:
    store, first, second = two_sets
    spoil(store.directory(second))
    record = (store.root / RECORD).read_bytes()
    assert main(["models", "--store", str(store.root), "activate", second]) == 2  # refused before any broker is asked
    assert capsys.readouterr().err == f"crm-scorer: refusing model set {second}: {problem}\n"
    assert (store.root / RECORD).read_bytes() == record and store.active() == first
