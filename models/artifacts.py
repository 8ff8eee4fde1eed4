"""Model artifacts: the manifest, sha256 verification, and loading the models the scorer serves.

``manifest.json`` (:class:`models.manifest.Manifest`) lists every model with its kind, version, file, sha256,
features, decision threshold, calibration and metrics, plus its reference profile for drift. Every file is
verified against its sha256 *before* it is parsed, and every format is data only (XGBoost UBJSON, JSON
parameters): nothing is unpickled.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from models.calibration import calibrated, sigmoid
from models.config import ModelsConfig
from models.features import FEATURE_INDEX
from models.lead_model import LeadParameters
from models.leaf_table import LeafTable
from models.manifest import MANIFEST, Manifest, ModelEntry, StoredFile
from models.pipeline import check_pipeline
from models.tree_walk import TreeWalker, compiled
from schemas.errors import ArtifactError

__all__ = ["MANIFEST", "BankModel", "LeadModel", "ModelSet", "load_models", "read_manifest", "verified_file"]


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


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
        return calibrated(self.booster.inplace_predict(x, predict_type="margin"), self.calibration)

    def probability(self, x: np.ndarray) -> np.ndarray:
        return sigmoid(self.margin(x))

    def contributions(self, x: np.ndarray) -> np.ndarray:
        """Approximate (Saabas) per-feature contributions to the calibrated log-odds; one tree walk per row."""
        import xgboost as xgb

        # nthread=1: an OpenMP team would spin between batches and take a core from the other workers and the broker
        matrix = xgb.DMatrix(x, missing=np.nan, nthread=1)
        contribs = self.booster.predict(matrix, pred_contribs=True, approx_contribs=True)
        return self.calibration[0] * contribs[:, :-1]  # the last column is the bias

    @functools.cached_property
    def leaf_table(self) -> LeafTable:
        """Every leaf's margin and Saabas contributions (built once; ``load_models`` builds it at start)."""
        return LeafTable.of(self.booster)

    def leaves(self, x: np.ndarray | Any) -> np.ndarray:
        """The leaf each row lands in, per tree: one ``pred_leaf`` pass, (rows, trees). ``x`` is the rows
        (columns in ``features`` order) or an ``xgboost.DMatrix`` of them (``feature_matrix``), which banks
        with the same features can share."""
        matrix = x if not isinstance(x, np.ndarray) else feature_matrix(x)
        return np.asarray(self.booster.predict(matrix, pred_leaf=True, validate_features=False))

    def explain(self, leaves: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """From ``leaves``: calibrated log-odds (float64, the same as ``margin``) and every feature's
        contribution to them (float32, ``contributions`` to float32 precision)."""
        return self._calibrated(self.leaf_table.margin_and_contributions(leaves))

    @functools.cached_property
    def walker(self) -> TreeWalker:
        """The trees as flat arrays over the whole feature matrix (``models.features.FEATURE_NAMES`` columns)."""
        return TreeWalker.of(self.booster, self.leaf_table, [FEATURE_INDEX[name] for name in self.features])

    def explain_rows(self, matrix: np.ndarray, x: np.ndarray | Any | None = None) -> tuple[np.ndarray, np.ndarray]:
        """``explain`` of the leaves the rows of ``matrix`` (a ``FeatureFrame.matrix``) land in: one compiled
        walk when numba is there, else ``pred_leaf`` on ``x`` (this bank's columns, or their shared DMatrix)."""
        if compiled():
            return self._calibrated(self.walker.margin_and_contributions(matrix))
        return self.explain(self.leaves(x if x is not None else matrix[:, [FEATURE_INDEX[n] for n in self.features]]))

    def _calibrated(self, summed: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        a = np.float32(self.calibration[0])
        return calibrated(summed[:, -1], self.calibration), a * summed[:, :-1]


def feature_matrix(x: np.ndarray) -> Any:
    """An ``xgboost.DMatrix`` of rows ``x`` (NaN: missing) for ``BankModel.leaves``."""
    import xgboost as xgb

    return xgb.DMatrix(x, missing=np.nan, nthread=1)  # nthread=1: see ``BankModel.contributions``


@dataclass(frozen=True)
class LeadModel:
    version: str
    params: LeadParameters
    threshold: float

    @property
    def features(self) -> tuple[str, ...]:
        return self.params.features

    def probability(self, x: np.ndarray) -> np.ndarray:
        """Conversion probability per row of ``x``, the same for a row whatever batch it is scored in."""
        return sigmoid(self.params.margin(x))


@dataclass(frozen=True)
class ModelSet:
    """Everything the engine scores with, verified and loaded."""

    banks: tuple[BankModel, ...]
    lead: LeadModel
    manifest: Manifest
    directory: Path | None = None  # where it was loaded from (its reference profile lies there)

    @property
    def version(self) -> str:
        """The model set's version (the manifest's)."""
        return self.manifest.version

    def versions(self) -> dict[str, str]:
        return {**{b.name: b.version for b in self.banks}, "lead": self.lead.version}


def read_manifest(artifacts_dir: Path) -> dict[str, Any]:
    """The checked manifest as plain JSON values (see :meth:`Manifest.read`, which serving and training use).

    Raises:
        ArtifactError: it is missing, not JSON, or lacks a key (named).
    """
    return Manifest.read(artifacts_dir).model_dump(mode="json", exclude_unset=True)


def verified_file(
    artifacts_dir: Path, entry: StoredFile | ModelEntry | Mapping[str, Any], model: str, key: str = "file"
) -> Path:
    """The path of an artifact file after checking it exists and its sha256 matches the manifest."""
    if isinstance(entry, StoredFile | ModelEntry):
        entry = entry.model_dump()
    try:
        path = artifacts_dir / entry[key]
        expected = entry["sha256" if key == "file" else f"{key}_sha256"]
    except KeyError as exc:
        raise ArtifactError(f"model {model!r}: the manifest's entry has no {exc.args[0]!r}") from exc
    if not path.is_file():
        raise ArtifactError(f"model {model!r}: artifact {path} is missing")
    actual = sha256_of(path)
    if actual != expected:
        raise ArtifactError(
            f"model {model!r}: {path.name} sha256 {actual[:12]}... does not match the manifest's {expected[:12]}...; "
            "refusing to load a file that is not the one trained"
        )
    return path


def _check_features(name: str, configured: list[str], entry: ModelEntry) -> tuple[str, ...]:
    trained = list(entry.features)
    unknown = [f for f in trained if f not in FEATURE_INDEX]
    if unknown:
        raise ArtifactError(f"model {name!r}: manifest names feature(s) {unknown} the pipeline does not produce")
    if configured != trained:
        raise ArtifactError(f"model {name!r}: configured features differ from the {len(trained)} it was trained on")
    return tuple(trained)


def load_models(config: ModelsConfig, directory: Path | None = None) -> ModelSet:
    """Verify and load every configured model from ``directory`` (default: the store's active set when
    ``config.store_dir`` is set, else ``config.artifacts_dir``).

    Raises:
        ArtifactError: naming the model and the problem; a set built for another feature pipeline names both
            pipeline versions.
    """
    import xgboost as xgb

    root = Path(directory if directory is not None else models_dir(config))
    manifest = Manifest.read(root)
    check_pipeline(manifest.pipeline_version, f"model set {manifest.version} ({root.name})")
    banks = []
    for bank in config.banks:
        entry = manifest.entry(bank.name)
        features = _check_features(bank.name, bank.features, entry)
        path = verified_file(root, entry, bank.name)
        booster = xgb.Booster()
        try:
            booster.load_model(str(path))
        except xgb.core.XGBoostError as exc:
            raise ArtifactError(f"model {bank.name!r}: {path.name} is not a valid XGBoost model: {exc}") from exc
        booster.set_param({"nthread": 1})  # processes give parallelism; threads inside a batch only contend
        a, b = (entry.calibration.a, entry.calibration.b) if entry.calibration else (1.0, 0.0)
        threshold = bank.threshold if bank.threshold is not None else entry.threshold
        model = BankModel(bank.name, entry.version, features, threshold, booster, (a, b))
        try:
            model.leaf_table  # noqa: B018  built now, not on the first batch
            if compiled():  # the walk's arrays, and the loop compiled (or read from numba's cache) now
                model.explain_rows(np.zeros((1, len(FEATURE_INDEX))))
        except ValueError as exc:
            raise ArtifactError(f"model {bank.name!r}: {path.name} cannot be explained: {exc}") from exc
        banks.append(model)
    entry = manifest.entry("lead")
    _check_features("lead", config.lead.features, entry)
    params = LeadParameters.from_file(verified_file(root, entry, "lead"))
    return ModelSet(tuple(banks), LeadModel(entry.version, params, entry.threshold), manifest, root)


def models_dir(config: ModelsConfig) -> Path:
    """The directory the scorer serves: the store's active set when a store is configured, else artifacts_dir.

    Raises:
        ArtifactError: a store is configured and no set is active in it.
    """
    if config.store_dir is None:
        return Path(config.artifacts_dir)
    from models.store import ModelStore

    return ModelStore(config.store_dir).active_dir()
