"""Model artifacts: the manifest, sha256 verification, and loading the models the scorer serves.

``manifest.json`` lists every model with its kind, version, file, sha256, features, decision threshold,
calibration and metrics, plus its reference profile for drift. Every file is verified against its sha256
*before* it is parsed, and every format is data only (XGBoost UBJSON, JSON parameters): nothing is unpickled.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from models.config import ModelsConfig
from models.features import FEATURE_INDEX
from models.lead_model import LeadParameters
from schemas.errors import ArtifactError

MANIFEST = "manifest.json"


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _sigmoid(margin: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-margin))


@dataclass(frozen=True)
class BankModel:
    """One bank's approval model: an XGBoost booster plus Platt calibration of its margin."""

    name: str
    version: str
    features: tuple[str, ...]
    threshold: float
    booster: Any  # xgboost.Booster
    calibration: tuple[float, float]  # p = sigmoid(a * margin + b)

    def margin(self, x: np.ndarray) -> np.ndarray:
        """Calibrated log-odds of approval for rows of ``x`` (columns in ``features`` order)."""
        raw = self.booster.inplace_predict(x, predict_type="margin")
        a, b = self.calibration
        return a * np.asarray(raw, dtype=np.float64) + b

    def probability(self, x: np.ndarray) -> np.ndarray:
        return _sigmoid(self.margin(x))

    def contributions(self, x: np.ndarray) -> np.ndarray:
        """Approximate (Saabas) per-feature contributions to the calibrated log-odds; one tree walk per row."""
        import xgboost as xgb

        # nthread=1: an OpenMP team would spin between batches and take a core from the other workers and the broker
        matrix = xgb.DMatrix(x, missing=np.nan, nthread=1)
        contribs = self.booster.predict(matrix, pred_contribs=True, approx_contribs=True)
        return self.calibration[0] * contribs[:, :-1]  # the last column is the bias


@dataclass(frozen=True)
class LeadModel:
    version: str
    params: LeadParameters
    threshold: float

    @property
    def features(self) -> tuple[str, ...]:
        return self.params.features

    def probability(self, x: np.ndarray) -> np.ndarray:
        """Conversion probability per row of ``x``, the same for a row whatever batch it is scored in.

        The margin is summed row by row (numpy's per-row reduction) instead of ``z @ coef``: BLAS blocks a
        matrix product differently for different row counts, which changed the last bits of a lead's score
        with the size of the batch it landed in.
        """
        params = self.params
        z = (x - params.mean) / params.scale
        z[np.isnan(z)] = 0.0
        return _sigmoid((z * params.coef).sum(axis=1) + params.intercept)


@dataclass(frozen=True)
class ModelSet:
    """Everything the engine scores with, verified and loaded."""

    banks: tuple[BankModel, ...]
    lead: LeadModel
    manifest: dict[str, Any]

    def versions(self) -> dict[str, str]:
        return {**{b.name: b.version for b in self.banks}, "lead": self.lead.version}


def read_manifest(artifacts_dir: Path) -> dict[str, Any]:
    """Parse ``manifest.json``; raises ArtifactError when it is missing or not JSON."""
    path = artifacts_dir / MANIFEST
    try:
        return dict(json.loads(path.read_text()))
    except FileNotFoundError as exc:
        raise ArtifactError(f"no model manifest at {path}: run `crm-train` or set models.artifacts_dir") from exc
    except json.JSONDecodeError as exc:
        raise ArtifactError(f"{path} is not valid JSON: {exc}") from exc


def verified_file(artifacts_dir: Path, entry: dict[str, Any], model: str, key: str = "file") -> Path:
    """The path of an artifact file after checking it exists and its sha256 matches the manifest."""
    path = artifacts_dir / entry[key]
    if not path.is_file():
        raise ArtifactError(f"model {model!r}: artifact {path} is missing")
    expected = entry["sha256" if key == "file" else f"{key}_sha256"]
    actual = sha256_of(path)
    if actual != expected:
        raise ArtifactError(
            f"model {model!r}: {path.name} sha256 {actual[:12]}... does not match the manifest's {expected[:12]}...; "
            "refusing to load a file that is not the one trained"
        )
    return path


def _entry(manifest: dict[str, Any], name: str) -> dict[str, Any]:
    try:
        return dict(manifest["models"][name])
    except KeyError as exc:
        raise ArtifactError(f"model {name!r} is configured but the manifest has no entry for it") from exc


def _check_features(name: str, configured: list[str], entry: dict[str, Any]) -> tuple[str, ...]:
    trained = list(entry["features"])
    unknown = [f for f in trained if f not in FEATURE_INDEX]
    if unknown:
        raise ArtifactError(f"model {name!r}: manifest names feature(s) {unknown} the pipeline does not produce")
    if configured != trained:
        raise ArtifactError(f"model {name!r}: configured features differ from the {len(trained)} it was trained on")
    return tuple(trained)


def load_models(config: ModelsConfig) -> ModelSet:
    """Verify and load every configured model. Raises ArtifactError naming the model and the problem."""
    import xgboost as xgb

    root = Path(config.artifacts_dir)
    manifest = read_manifest(root)
    banks = []
    for bank in config.banks:
        entry = _entry(manifest, bank.name)
        features = _check_features(bank.name, bank.features, entry)
        path = verified_file(root, entry, bank.name)
        booster = xgb.Booster()
        try:
            booster.load_model(str(path))
        except xgb.core.XGBoostError as exc:
            raise ArtifactError(f"model {bank.name!r}: {path.name} is not a valid XGBoost model: {exc}") from exc
        booster.set_param({"nthread": 1})  # processes give parallelism; threads inside a batch only contend
        calibration = entry.get("calibration", {"a": 1.0, "b": 0.0})
        threshold = bank.threshold if bank.threshold is not None else float(entry["threshold"])
        banks.append(
            BankModel(bank.name, entry["version"], features, threshold, booster, (calibration["a"], calibration["b"]))
        )
    entry = _entry(manifest, "lead")
    _check_features("lead", config.lead.features, entry)
    params = LeadParameters.from_file(verified_file(root, entry, "lead"))
    return ModelSet(tuple(banks), LeadModel(entry["version"], params, float(entry["threshold"])), manifest)
