"""``manifest.json`` as one typed model, written by training (``models.train``) and read by serving
(``models.artifacts.load_models``) and the model card.

A manifest that lacks a key, or holds one of the wrong type, is an ``ArtifactError`` naming the file and every
such key (``models.bank_a.threshold: Field required``), never a ``KeyError`` deep in the loader.

A manifest is a *model set*: ``version`` names it (a manifest written before sets had versions reads as the
version derived from its contents, ``content_version``), ``parent`` the set it was derived from, ``pipeline``
the feature-pipeline version it was built for (``models.pipeline``), ``lineage`` what training tells of its data.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from schemas.errors import ArtifactError

MANIFEST = "manifest.json"
FORMAT = 1


class _Part(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)  # a newer trainer may add keys an older server ignores


class StoredFile(_Part):
    """A file beside the manifest and the sha256 it must have."""

    file: str
    sha256: str


class Calibration(_Part):
    """Platt calibration of a margin: p = sigmoid(a * margin + b)."""

    a: float = 1.0
    b: float = 0.0


class Metrics(_Part):
    """Holdout quality (``models.evaluation.Quality``) and the share of the oracle's AUC reached."""

    n: int
    positive_rate: float
    auc: float
    mcc: float
    brier: float
    ece: float
    oracle_auc: float | None
    threshold: float
    auc_ratio: float | None = None


class ModelEntry(_Part):
    """One trained model: what it is, its file, the features it was trained on, its threshold and metrics."""

    kind: str
    version: str
    file: str
    sha256: str
    features: list[str]
    threshold: float
    calibration: Calibration | None = None  # bank models; None reads as the identity
    trees: int | None = None
    max_depth: int | None = None
    metrics: Metrics


class Training(_Part):
    events: int
    seed: int
    folds: int
    holdout: int


class Pipeline(_Part):
    """The feature pipeline a set was built for: ``models.pipeline.pipeline_version()`` at training."""

    version: str


VERSION_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"  # a directory name in the store, a label value


def content_version(manifest: dict[str, Any]) -> str:
    """The version a manifest's contents give it: 12 hex digits of the sha256 of its canonical JSON (every key
    but ``version``), so the same models, profile and pipeline always give the same version."""
    content = {k: v for k, v in manifest.items() if k != "version"}
    return hashlib.sha256(json.dumps(content, sort_keys=True, separators=(",", ":")).encode()).hexdigest()[:12]


class Manifest(_Part):
    format: int = FORMAT
    version: str = Field(pattern=VERSION_PATTERN)  # filled by ``_versioned`` when the file has none
    parent: str | None = None  # the set this one was derived from (retrained from)
    pipeline: Pipeline | None = None  # None: written before pipeline versions were recorded
    lineage: dict[str, Any] | None = None  # free-form: capture dates, rows per bank, routing rule, ...
    training: Training | None = None  # what the model card tells; serving needs none of it
    reference_profile: StoredFile | None = None
    models: dict[str, ModelEntry]

    @model_validator(mode="before")
    @classmethod
    def _versioned(cls, data: Any) -> Any:
        if isinstance(data, dict) and "version" not in data:
            return {"version": content_version(data), **data}
        return data

    @property
    def pipeline_version(self) -> str | None:
        return self.pipeline.version if self.pipeline is not None else None

    def entry(self, name: str) -> ModelEntry:
        """The entry of model ``name``. Raises ArtifactError when there is none."""
        try:
            return self.models[name]
        except KeyError as exc:
            raise ArtifactError(f"model {name!r} is configured but the manifest has no entry for it") from exc

    def to_json(self) -> str:
        """The file's text: the keys training set, in their order, one space of indent."""
        return json.dumps(self.model_dump(mode="json", exclude_unset=True), indent=1) + "\n"

    @classmethod
    def read(cls, artifacts_dir: Path) -> Manifest:
        """Parse and check ``artifacts_dir/manifest.json``.

        Raises:
            ArtifactError: it is missing, not JSON, or lacks a key or holds one of the wrong type (each named).
        """
        path = artifacts_dir / MANIFEST
        try:
            return cls.model_validate_json(path.read_bytes())
        except FileNotFoundError as exc:
            raise ArtifactError(f"no model manifest at {path}: run `crm-train` or set models.artifacts_dir") from exc
        except ValidationError as exc:
            raise ArtifactError(f"{path} is not a valid manifest: {_problems(exc)}") from exc


def _problems(exc: ValidationError) -> str:
    if any(err["type"] == "json_invalid" for err in exc.errors()):
        return f"not valid JSON ({exc.errors()[0]['msg']})"
    return "; ".join(".".join(str(p) for p in err["loc"]) + f": {err['msg']}" for err in exc.errors())
