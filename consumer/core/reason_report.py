"""How good and how costly the banks' reasons are, measured on a feature frame (``crm-scorer reasons-report``).

Accuracy, per bank: the leaf-table contributions against XGBoost's own ``pred_contribs=True,
approx_contribs=True`` (the same Saabas attribution: they must agree to float32 precision), and how often the
published top reasons (the decision's sign, strongest first) name the same features as the same rule applied to
exact TreeSHAP (``pred_contribs=True``), as a set and in order.

Cost, per event: every bank's model alone (``inplace_predict``, no reasons), the scoring of the engine before
per-bank reasons (every bank predicted, then XGBoost's approximate contributions for the one bank each result
explained: the best offer, else the likeliest bank), and the scoring now (one ``pred_leaf`` pass per bank, the
leaf-table product, every bank's and the lead's top reasons). The variants run in turn on the same batches,
back to back on each batch, ``repeats`` times, and each keeps its fastest time per batch: a burst of the
machine's other load then inflates none of them.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from consumer.core.scoring import model_outputs
from models.artifacts import BankModel, ModelSet, feature_matrix
from models.calibration import sigmoid
from models.features import FeatureFrame
from models.reasons import top_reasons


@dataclass(frozen=True)
class BankAccuracy:
    """One bank's reasons against XGBoost's contributions, over ``rows`` applications."""

    bank: str
    rows: int
    max_abs_difference: float  # leaf table vs XGBoost's approximate contributions
    max_contribution: float  # the largest |contribution|, for scale
    within_float32: bool  # |difference| <= 1e-6 + 1e-6 * |contribution| everywhere
    same_top_set: float  # share of rows whose top reasons name the same features as exact TreeSHAP's
    same_top_order: float  # ... in the same order


def bank_accuracy(bank: BankModel, frame: FeatureFrame, k: int = 3) -> BankAccuracy:
    """See the module docstring. Exact TreeSHAP costs about a millisecond per row and bank."""
    x = frame.columns(bank.features)
    margin, ours = bank.explain(bank.leaves(x))
    approx = bank.contributions(x)
    exact = bank.calibration[0] * bank.booster.predict(feature_matrix(x), pred_contribs=True)[:, :-1]
    approved = sigmoid(margin) >= bank.threshold
    ours_top, _ = top_reasons(ours, approved, k)
    exact_top, _ = top_reasons(exact, approved, k)
    difference = np.abs(ours.astype(np.float64) - approx)
    return BankAccuracy(
        bank=bank.name,
        rows=len(x),
        max_abs_difference=float(difference.max(initial=0.0)),
        max_contribution=float(np.abs(approx).max(initial=0.0)),
        within_float32=bool(np.all(difference <= 1e-6 + 1e-6 * np.abs(approx))),
        same_top_set=float(np.mean(np.all(np.sort(ours_top, axis=1) == np.sort(exact_top, axis=1), axis=1))),
        same_top_order=float(np.mean(np.all(ours_top == exact_top, axis=1))),
    )


@dataclass(frozen=True)
class ReasonCost:
    """Microseconds per event, the sum of each variant's fastest time per batch over ``repeats`` rounds (every
    variant also scores the lead; none ranks offers)."""

    events: int
    predict_only_us: float  # every bank's inplace_predict, no reasons
    one_bank_us: float  # before: every bank predicted + the explained bank's XGBoost approximate contributions
    every_bank_us: float  # now: pred_leaf + leaf table for every bank, every bank's and the lead's top reasons

    @property
    def one_bank_reasons_us(self) -> float:
        return self.one_bank_us - self.predict_only_us

    @property
    def every_bank_reasons_us(self) -> float:
        return self.every_bank_us - self.predict_only_us


def reason_cost(models: ModelSet, frame: FeatureFrame, k: int = 3, batch: int = 1000, repeats: int = 5) -> ReasonCost:
    """Time the three variants of the module docstring on ``frame`` in batches of ``batch`` rows."""
    batches = [FeatureFrame(frame.matrix[s : s + batch]) for s in range(0, len(frame.matrix), batch)]
    variants: dict[str, Callable[[FeatureFrame], object]] = {
        "predict": lambda f: _predict_only(models, f),
        "one": lambda f: _one_bank_reasons(models, f, k),
        "every": lambda f: model_outputs(models, f, k, _no_timer),
    }
    best = {name: [float("inf")] * len(batches) for name in variants}
    for _ in range(repeats):
        for i, part in enumerate(batches):  # the variants back to back on each batch: a burst of load hits all
            for name, run in variants.items():
                started = time.perf_counter()
                run(part)
                best[name][i] = min(best[name][i], time.perf_counter() - started)
    per_event = 1e6 / max(1, len(frame.matrix))
    return ReasonCost(len(frame.matrix), *(sum(best[n]) * per_event for n in ("predict", "one", "every")))


def _predict_only(models: ModelSet, frame: FeatureFrame) -> np.ndarray:
    """Every bank's probability (and the lead's, which every variant computes)."""
    models.lead.probability(frame.columns(models.lead.features).astype(np.float64))
    return np.column_stack([b.probability(frame.columns(b.features)) for b in models.banks])


def _one_bank_reasons(models: ModelSet, frame: FeatureFrame, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The engine's reasons before every bank had its own: the explained bank's approximate contributions,
    rows grouped by that bank, the ``k`` largest by magnitude."""
    bank_p = _predict_only(models, frame)
    approved = bank_p >= np.array([b.threshold for b in models.banks])
    best = np.where(approved, bank_p, -1.0).argmax(axis=1)
    explained = np.where(approved.any(axis=1), best, bank_p.argmax(axis=1))
    features = np.full((len(explained), k), -1, dtype=np.intp)
    values = np.zeros((len(explained), k), dtype=np.float32)
    for j, bank in enumerate(models.banks):
        rows = np.flatnonzero(explained == j)
        if rows.size:
            contributions = bank.contributions(frame.columns(bank.features)[rows])
            top = np.argsort(-np.abs(contributions), axis=1)[:, :k]
            features[rows, : top.shape[1]] = top
            values[rows, : top.shape[1]] = np.take_along_axis(contributions, top, axis=1)
    return features, values


class _NoTimer:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


def _no_timer(stage: str) -> _NoTimer:
    return _NoTimer()
