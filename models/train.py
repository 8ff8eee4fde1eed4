"""Training: one XGBoost approval model per configured bank and the lead model, written as artifacts.

For every bank: a seeded 80/20 split into train and holdout; K-fold cross-validation with early stopping on
the train part picks the number of trees and gives out-of-fold margins, on which a Platt calibration and the
MCC-best decision threshold are fitted; the final booster is trained on the whole train part. The holdout gives
the reported metrics and the drift reference profiles. The same seed and data give the same bytes.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from models.artifacts import sha256_of
from models.calibration import calibrated, fit_platt, sigmoid
from models.config import ModelsConfig
from models.evaluation import Quality, best_mcc_threshold, measure
from models.features import FeatureFrame, build_features
from models.lead_model import fit_lead_model
from models.manifest import FORMAT, MANIFEST, Manifest, content_version
from models.pipeline import pipeline_version
from models.profile import BinProfile, input_profiles, numeric_profile

PROFILE_FILE = "reference_profile.json"
XGB_PARAMS: dict[str, Any] = {
    "objective": "binary:logistic",
    "eval_metric": "logloss",
    "tree_method": "hist",
    "eta": 0.08,
    "max_depth": 4,
    "min_child_weight": 5,
    "subsample": 0.8,
    "colsample_bytree": 0.9,
    "lambda": 1.0,
    "nthread": 2,
}
MAX_TREES = 400


@dataclass(frozen=True)
class LabelledEvents:
    """Decoded events with observed outcomes per model and, for the synthetic world, the oracle's probabilities."""

    events: Sequence[dict[str, Any]]
    outcomes: dict[str, np.ndarray]
    oracle: dict[str, np.ndarray] | None = None

    @classmethod
    def from_truth(cls, events: Sequence[dict[str, Any]], truth: Sequence[dict[str, Any]]) -> LabelledEvents:
        """From per-event truth dicts as ``crm-producer generate --labels`` writes them.

        Real outcomes carry no oracle probability ``p``: then there is no oracle, only outcomes.
        """
        banks = list(truth[0]["banks"]) if truth else []
        outcomes = {"lead": np.array([t["lead"]["converted"] for t in truth], dtype=np.int8)}
        for bank in banks:
            outcomes[bank] = np.array([t["banks"][bank]["approved"] for t in truth], dtype=np.int8)
        if not truth or "p" not in truth[0]["lead"]:
            return cls(events, outcomes, None)
        oracle = {"lead": np.array([t["lead"]["p"] for t in truth])}
        oracle |= {bank: np.array([t["banks"][bank]["p"] for t in truth]) for bank in banks}
        return cls(events, outcomes, oracle)


@dataclass
class _Split:
    train: np.ndarray
    holdout: np.ndarray
    folds: list[np.ndarray]


def _split(n: int, seed: int, folds: int) -> _Split:
    order = np.random.default_rng(seed).permutation(n)
    cut = int(n * 0.8)
    train = np.sort(order[:cut])
    return _Split(train, np.sort(order[cut:]), [np.sort(f) for f in np.array_split(order[:cut], folds)])


def _fit_bank(
    x: np.ndarray,
    y: np.ndarray,
    split: _Split,
    seed: int,
    log: Callable[[str], None],
    name: str,
    weight: np.ndarray | None = None,
    base: Any = None,
) -> dict:
    """Cross-validated tree count, Platt calibration and threshold, then the booster on the whole train part.

    ``weight``: a weight per row (None: all 1). ``base``: a booster to continue from (its trees are kept and
    new ones added; ``trees`` counts both).
    """
    import xgboost as xgb

    params = {**XGB_PARAMS, "seed": seed}
    w = (lambda rows: None) if weight is None else (lambda rows: weight[rows])
    oof = np.zeros(len(split.train))
    best: list[int] = []
    for k, valid in enumerate(split.folds):
        fit_rows = np.setdiff1d(split.train, valid)
        dtrain = xgb.DMatrix(x[fit_rows], label=y[fit_rows], weight=w(fit_rows), missing=np.nan)
        dvalid = xgb.DMatrix(x[valid], label=y[valid], weight=w(valid), missing=np.nan)
        booster = xgb.train(
            params,
            dtrain,
            MAX_TREES,
            evals=[(dvalid, "valid")],
            early_stopping_rounds=30,
            verbose_eval=False,
            xgb_model=base,
        )
        best.append(booster.best_iteration + 1)
        margins = booster.predict(dvalid, output_margin=True, iteration_range=(0, best[-1]))
        oof[np.searchsorted(split.train, valid)] = margins
        log(f"  {name}: fold {k + 1}/{len(split.folds)} trees={best[-1]}")
    trees = round(float(np.mean(best)))
    dall = xgb.DMatrix(x[split.train], label=y[split.train], weight=w(split.train), missing=np.nan)
    kept = 0 if base is None else base.num_boosted_rounds()
    booster = xgb.train(params, dall, max(trees - kept, 0), xgb_model=base)
    a, b = fit_platt(oof, y[split.train], w(split.train))
    threshold = best_mcc_threshold(y[split.train], sigmoid(calibrated(oof, (a, b))))
    return {"booster": booster, "trees": trees, "calibration": {"a": a, "b": b}, "threshold": threshold}


def _holdout_quality(p: np.ndarray, name: str, data: LabelledEvents, rows: np.ndarray, threshold: float) -> Quality:
    oracle = None if data.oracle is None else data.oracle[name][rows]
    return measure(data.outcomes[name][rows], p, threshold, oracle)


def _write(out_dir: Path, filename: str, payload: bytes) -> dict[str, str]:
    path = out_dir / filename
    path.write_bytes(payload)
    return {"file": filename, "sha256": sha256_of(path)}


def train(
    data: LabelledEvents,
    config: ModelsConfig,
    out_dir: Path,
    seed: int,
    folds: int = 5,
    log: Callable[[str], None] = print,
    *,
    parent: str | None = None,
    lineage: dict[str, Any] | None = None,
) -> Manifest:
    """Train every configured model on ``data``, write artifacts + manifest + profile to ``out_dir``.

    The manifest records the set's version (derived from its contents), the feature-pipeline version, and when
    given the ``parent`` set it was derived from and free-form training ``lineage`` (capture dates, rows per
    bank, routing rule). Returns the manifest (the typed model serving reads). Raises KeyError when ``data``
    has no outcomes for a configured bank.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    frame = build_features(data.events)
    split = _split(len(data.events), seed, folds)
    models: dict[str, Any] = {}
    predictions: dict[str, BinProfile] = {}
    for bank in config.banks:
        x, y = frame.columns(bank.features), data.outcomes[bank.name]
        log(f"training {bank.name} on {len(split.train)} events, {len(bank.features)} features")
        fitted = _fit_bank(x, y, split, seed, log, bank.name)
        booster = fitted["booster"]
        cal = fitted["calibration"]
        p = sigmoid(calibrated(booster.predict(_dmatrix(x[split.holdout]), output_margin=True), (cal["a"], cal["b"])))
        quality = _holdout_quality(p, bank.name, data, split.holdout, fitted["threshold"])
        stored = _write(out_dir, f"{bank.name}.ubj", bytes(booster.save_raw(raw_format="ubj")))
        models[bank.name] = {
            "kind": "xgboost",
            "version": f"{bank.name}-{stored['sha256'][:10]}",
            **stored,
            "features": bank.features,
            "threshold": fitted["threshold"],
            "calibration": cal,
            "trees": fitted["trees"],
            "max_depth": XGB_PARAMS["max_depth"],
            "metrics": quality.as_dict(),
        }
        predictions[bank.name] = numeric_profile(bank.name, p)
    models["lead"], predictions["lead"] = _train_lead(frame, data, split, config, out_dir, log)
    profile = {
        "inputs": [pr.to_dict() for pr in input_profiles(_rows(frame, split.holdout))],
        "predictions": {k: v.to_dict() for k, v in predictions.items()},
    }
    stored = _write(out_dir, PROFILE_FILE, (json.dumps(profile, indent=1) + "\n").encode())
    training = {"events": len(data.events), "seed": seed, "folds": folds, "holdout": len(split.holdout)}
    manifest = _manifest(training, stored, models, parent, lineage)
    (out_dir / MANIFEST).write_text(manifest.to_json())
    return manifest


def _manifest(
    training: dict[str, Any],
    profile: dict[str, str],
    models: dict[str, Any],
    parent: str | None,
    lineage: dict[str, Any] | None,
) -> Manifest:
    content: dict[str, Any] = {"format": FORMAT}
    if parent is not None:
        content["parent"] = parent
    content["pipeline"] = {"version": pipeline_version()}
    if lineage is not None:
        content["lineage"] = lineage
    content |= {"training": training, "reference_profile": profile, "models": models}
    return Manifest.model_validate({"version": content_version(content), **content})


def _dmatrix(x: np.ndarray) -> Any:
    import xgboost as xgb

    return xgb.DMatrix(x, missing=np.nan)


def _rows(frame: FeatureFrame, rows: np.ndarray) -> FeatureFrame:
    return FeatureFrame(frame.matrix[rows])


def _train_lead(
    frame: FeatureFrame, data: LabelledEvents, split: _Split, config: ModelsConfig, out_dir: Path, log: Callable
) -> tuple[dict[str, Any], BinProfile]:
    from sklearn.metrics import roc_auc_score

    features = tuple(config.lead.features)
    x, y = frame.columns(features).astype(np.float64), data.outcomes["lead"]
    log(f"training lead on {len(split.train)} events, {len(features)} features")
    oof = np.zeros(len(split.train))
    for k, valid in enumerate(split.folds):
        fit_rows = np.setdiff1d(split.train, valid)
        params = fit_lead_model(x[fit_rows], y[fit_rows], features)
        fold_p = sigmoid(params.margin(x[valid]))
        oof[np.searchsorted(split.train, valid)] = fold_p
        log(f"  lead: fold {k + 1}/{len(split.folds)} AUC={roc_auc_score(y[valid], fold_p):.4f}")
    threshold = best_mcc_threshold(y[split.train], oof)
    params = fit_lead_model(x[split.train], y[split.train], features)
    p = sigmoid(params.margin(x[split.holdout]))
    quality = _holdout_quality(p, "lead", data, split.holdout, threshold)
    stored = _write(out_dir, "lead.json", (params.to_json() + "\n").encode())
    entry = {
        "kind": "sklearn_logistic_regression",
        "version": f"lead-{stored['sha256'][:10]}",
        **stored,
        "features": list(features),
        "threshold": threshold,
        "metrics": quality.as_dict(),
    }
    return entry, numeric_profile("lead", p)
