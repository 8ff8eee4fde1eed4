"""Training from the capture, with selected labels: each model on the rows production labelled for it.

Real labels exist only where the routing rule sent an application: a bank's rows are its own decisions on the
applications routed to it, the lead's are its closed conversions (converted, or the horizon closed without).
Each model is trained on its own rows (``models.train``'s fit: cross-validated tree count, Platt calibration,
MCC threshold, metrics on a holdout of the same rows), its features rebuilt from the captured event by the one
shared pipeline (``models.features``). ``only`` retrains one model and copies every other one from the parent
set byte for byte (sha256 verified on the way). ``warm_start`` continues a bank's parent booster on its routed
rows instead of starting afresh (the parent's trees carry what it knew of applications the rule never sends
to the bank; see docs/retraining.md for what that buys). The set is written with its lineage: capture dates,
rows per model, routing rules, the parent version.

Every check of the input (rows per model, both outcomes present) runs before anything is written.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from models.artifacts import ModelSet, load_models, verified_file
from models.calibration import calibrated, sigmoid
from models.capture_rows import CapturedRows
from models.config import BankConfig, ModelsConfig
from models.evaluation import measure
from models.features import build_features
from models.manifest import MANIFEST, Manifest
from models.profile import BinProfile, input_profiles, numeric_profile
from models.train import PROFILE_FILE, XGB_PARAMS, LabelledEvents, _fit_bank, _manifest, _split, _train_lead, _write
from schemas.errors import CaptureError

LEAD = "lead"
MIN_ROWS = 200  # fewer labelled rows than this cannot fill five folds and a holdout with both outcomes


@dataclass(frozen=True)
class SelectedLabels:
    """One model's captured rows: the events scored and what became of them."""

    name: str
    events: Sequence[dict[str, Any]]
    y: np.ndarray
    routing: tuple[str, ...]


def selected(rows: CapturedRows, name: str) -> SelectedLabels:
    """``name``'s rows of the capture.

    Raises:
        CaptureError: fewer than ``MIN_ROWS`` rows, or only one outcome among them.
    """
    idx = rows.rows_of(name)
    if len(idx) == 0:
        present = ", ".join(rows.models()) or "none"
        raise CaptureError(f"the capture holds no rows for {name} (models with rows: {present})")
    if len(idx) < MIN_ROWS:
        raise CaptureError(f"the capture holds {len(idx)} rows for {name}: at least {MIN_ROWS} are needed")
    y = rows.positive[idx].astype(np.int8)
    if y.min() == y.max():
        raise CaptureError(f"all {len(idx)} captured outcomes of {name} are {bool(y[0])}: nothing to rank")
    routing = tuple(sorted({str(r) for r in rows.routing[idx] if r is not None}))
    return SelectedLabels(name, [rows.events[i] for i in rows.event_index[idx]], y, routing)


@dataclass(frozen=True)
class FittedBank:
    """A bank model trained on its selected rows, ready to write and to predict with."""

    name: str
    booster: Any  # xgboost.Booster
    calibration: tuple[float, float]
    threshold: float
    trees: int
    features: tuple[str, ...]
    metrics: dict[str, Any]

    def probability(self, events: Sequence[dict[str, Any]]) -> np.ndarray:
        import xgboost as xgb

        x = build_features(events).columns(self.features)
        margin = self.booster.predict(xgb.DMatrix(x, missing=np.nan), output_margin=True)
        return sigmoid(calibrated(margin, self.calibration))


def fit_bank(
    labels: SelectedLabels,
    bank: BankConfig,
    seed: int,
    folds: int = 5,
    log: Callable[[str], None] = print,
    *,
    weight: np.ndarray | None = None,
    base: Any = None,
) -> FittedBank:
    """Train ``bank`` on ``labels`` (each row weighted by ``weight``; continuing booster ``base`` when given)."""
    x, y = build_features(labels.events).columns(bank.features), labels.y
    split = _split(len(y), seed, folds)
    log(f"training {bank.name} on {len(split.train)} of its {len(y)} labelled rows, {len(bank.features)} features")
    fitted = _fit_bank(x, y, split, seed, log, bank.name, weight=weight, base=base)
    cal = (fitted["calibration"]["a"], fitted["calibration"]["b"])
    model = FittedBank(
        bank.name, fitted["booster"], cal, fitted["threshold"], fitted["trees"], tuple(bank.features), {}
    )
    holdout = [labels.events[i] for i in split.holdout]
    quality = measure(y[split.holdout], model.probability(holdout), model.threshold)
    return replace(model, metrics=quality.as_dict())


@dataclass(frozen=True)
class CaptureTraining:
    """What to train from a capture: ``only`` one model (None: all), ``warm_start`` banks from the parent."""

    seed: int = 7
    folds: int = 5
    only: str | None = None
    warm_start: bool = False
    since: str | None = None  # as given, for the lineage


def train_from_capture(
    rows: CapturedRows,
    config: ModelsConfig,
    parent_dir: Path,
    out_dir: Path,
    plan: CaptureTraining,
    log: Callable[[str], None] = print,
) -> Manifest:
    """Train the models ``plan`` names on their captured rows, keep the others from the parent set, and write
    the new set (artifacts, reference profile, manifest with lineage) to ``out_dir``.

    Raises:
        CaptureError: a model to train has too few rows or one outcome only, or ``only`` is not a model of the
            configuration; nothing is written.
        ArtifactError: the parent set does not verify; nothing is written.
    """
    names = [b.name for b in config.banks] + [LEAD]
    if plan.only is not None and plan.only not in names:
        raise CaptureError(f"--bank {plan.only}: not a configured model ({', '.join(names)})")
    parent = load_models(config, parent_dir)
    labels = {n: selected(rows, n) for n in ([plan.only] if plan.only else names)}
    out_dir.mkdir(parents=True, exist_ok=True)
    models: dict[str, Any] = {}
    predictions = _parent_predictions(parent)
    for bank in config.banks:
        if bank.name not in labels:
            models[bank.name] = _copied(parent, bank.name, out_dir)
            continue
        base = _booster_of(parent, bank.name) if plan.warm_start else None
        fitted = fit_bank(labels[bank.name], bank, plan.seed, plan.folds, log, base=base)
        models[bank.name] = _bank_entry(fitted, out_dir)
        predictions[bank.name] = numeric_profile(bank.name, fitted.probability(rows.events))
    if LEAD in labels:
        models[LEAD], predictions[LEAD] = _lead(labels[LEAD], config, plan, out_dir, log)
    else:
        models[LEAD] = _copied(parent, LEAD, out_dir)
    profile = _profile(parent, rows, predictions, out_dir, rebuild_inputs=plan.only is None)
    holdout = sum(int(models[name]["metrics"]["n"]) for name in labels)  # each model's holdout of its own rows
    training = {"events": len(rows.events), "seed": plan.seed, "folds": plan.folds, "holdout": holdout}
    manifest = _manifest(training, profile, models, parent.version, lineage(rows, labels, plan))
    (out_dir / MANIFEST).write_text(manifest.to_json())
    return manifest


def lineage(rows: CapturedRows, labels: dict[str, SelectedLabels], plan: CaptureTraining) -> dict[str, Any]:
    """What the set was trained on: the capture's dates and counts, rows and routing rules per model."""
    summary = rows.summary
    return {
        "source": "capture",
        "capture_dates": list(summary.dates),
        "since": plan.since,
        "capture_rows": summary.rows,
        "duplicates_dropped": summary.duplicates,
        "rows_without_event": summary.without_event,
        "retrained": sorted(labels),
        "rows": {name: len(lab.y) for name, lab in labels.items()},
        "positive_rate": {name: round(float(lab.y.mean()), 4) for name, lab in labels.items()},
        "routing": sorted({r for lab in labels.values() for r in lab.routing}),
        "warm_start": plan.warm_start,
    }


def _bank_entry(fitted: FittedBank, out_dir: Path) -> dict[str, Any]:
    stored = _write(out_dir, f"{fitted.name}.ubj", bytes(fitted.booster.save_raw(raw_format="ubj")))
    return {
        "kind": "xgboost",
        "version": f"{fitted.name}-{stored['sha256'][:10]}",
        **stored,
        "features": list(fitted.features),
        "threshold": fitted.threshold,
        "calibration": {"a": fitted.calibration[0], "b": fitted.calibration[1]},
        "trees": fitted.trees,
        "max_depth": XGB_PARAMS["max_depth"],
        "metrics": fitted.metrics,
    }


def _lead(
    labels: SelectedLabels, config: ModelsConfig, plan: CaptureTraining, out_dir: Path, log: Callable[[str], None]
) -> tuple[dict[str, Any], BinProfile]:
    data = LabelledEvents(labels.events, {LEAD: labels.y})
    split = _split(len(labels.y), plan.seed, plan.folds)
    return _train_lead(build_features(labels.events), data, split, config, out_dir, log)


def _copied(parent: ModelSet, name: str, out_dir: Path) -> dict[str, Any]:
    """``name``'s entry of the parent set, its file copied byte for byte after its sha256 is checked."""
    assert parent.directory is not None
    entry = parent.manifest.entry(name)
    shutil.copyfile(verified_file(parent.directory, entry, name), out_dir / entry.file)
    return entry.model_dump(mode="json", exclude_unset=True)


def _booster_of(parent: ModelSet, name: str) -> Any:
    return next(b.booster for b in parent.banks if b.name == name)


def _parent_predictions(parent: ModelSet) -> dict[str, BinProfile]:
    if parent.directory is None or parent.manifest.reference_profile is None:
        return {}
    path = verified_file(parent.directory, parent.manifest.reference_profile, "reference_profile")
    raw = json.loads(path.read_text())
    return {name: BinProfile.from_dict(p) for name, p in raw["predictions"].items()}


def _profile(
    parent: ModelSet,
    rows: CapturedRows,
    predictions: dict[str, BinProfile],
    out_dir: Path,
    *,
    rebuild_inputs: bool,
) -> dict[str, str]:
    """The drift reference: every captured event's inputs when all models are retrained (the population the
    scorer sees), else the parent's; the prediction profile of a retrained model over every captured event."""
    inputs: list[dict[str, Any]]
    if rebuild_inputs or parent.directory is None or parent.manifest.reference_profile is None:
        inputs = [p.to_dict() for p in input_profiles(build_features(rows.events))]
    else:
        path = verified_file(parent.directory, parent.manifest.reference_profile, "reference_profile")
        inputs = json.loads(path.read_text())["inputs"]
    profile = {"inputs": inputs, "predictions": {k: v.to_dict() for k, v in predictions.items()}}
    return _write(out_dir, PROFILE_FILE, (json.dumps(profile, indent=1) + "\n").encode())
