"""Scoring a feature frame: every bank with its reasons, the lead with its reasons, and the ranked offers.

One compiled walk per bank per batch (``models.tree_walk``; XGBoost's ``pred_leaf`` where numba is missing)
lands every row in a leaf of every tree and sums the bank's precomputed leaf vectors (``models.leaf_table``):
its margin (XGBoost's own, to the last bit) and every feature's approximate (Saabas) contribution at once, so
reasons for every bank cost no tree walk of their own. An approval's reasons are the features that pushed its
score up the most, a decline's those that pulled it down the most (at most ``top_k`` each, only of that sign).
The lead model is linear: its contributions are exact, relative to the average lead, its one-hot fields summed
per field.

Everything stays column-wise (``ScoreColumns``), and ``consumer.core.result_writer`` turns the columns into
result bytes.
"""

from __future__ import annotations

import time
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from consumer.core.offers import OfferBook, OfferColumns
from models.artifacts import ModelSet, feature_matrix
from models.calibration import sigmoid
from models.features import FeatureFrame
from models.reasons import ReasonInputs, reason_inputs, top_reasons
from models.tree_walk import compiled


class Timer(Protocol):
    def __call__(self, stage: str) -> AbstractContextManager[Any]: ...


@dataclass
class Reasons:
    """Up to ``k`` reasons per row of one model: ``feature`` indexes its reason names (-1: none)."""

    feature: np.ndarray  # (rows, k) intp
    value: np.ndarray  # (rows, k) float32 contribution to the calibrated log-odds
    missing: np.ndarray  # (rows, k) bool: the reason's input was missing
    up: np.ndarray  # (rows,) bool: the reasons pushed the score up (an approval)


@dataclass
class ScoreColumns:
    """A batch's model outputs, one row per scored application."""

    bank_p: np.ndarray  # (rows, banks) approval probabilities
    approved: np.ndarray  # (rows, banks) probability >= the bank's threshold
    lead_p: np.ndarray  # (rows,)
    best: np.ndarray  # (rows,) the first offer's bank index, -1 when there is no offer
    explained: np.ndarray  # (rows,) the bank the top-level reasons repeat: the best offer's, else the likeliest
    bank_reasons: list[Reasons]  # one per bank
    lead_reasons: Reasons
    offers: OfferColumns

    def predictions(self, models: ModelSet) -> dict[str, np.ndarray]:
        """Probabilities per model name (for drift and metrics)."""
        out = {b.name: self.bank_p[:, j] for j, b in enumerate(models.banks)}
        out["lead"] = self.lead_p
        return out


@dataclass
class ModelOutputs:
    """Every model's probabilities and reasons for a batch, before offers are ranked."""

    bank_p: np.ndarray
    approved: np.ndarray
    lead_p: np.ndarray
    bank_reasons: list[Reasons]
    lead_reasons: Reasons


def score_columns(
    models: ModelSet,
    frame: FeatureFrame,
    top_k: int,
    timer: Timer,
    model_seconds: dict[str, float] | None = None,
    book: OfferBook | None = None,
) -> ScoreColumns:
    """Every model on every row of ``frame``; ``model_seconds`` (if given) receives each model's predict time.

    ``book`` holds the banks' products and the ranking (default: no products, ranked by cost).
    """
    book = book if book is not None else OfferBook([b.name for b in models.banks], {})
    out = model_outputs(models, frame, top_k, timer, model_seconds)
    offers = book.offers(frame.column("loan_amount"), frame.column("loan_term"), out.bank_p, out.approved)
    best = offers.best_bank(book.products)
    explained = np.where(best >= 0, best, out.bank_p.argmax(axis=1))
    return ScoreColumns(
        out.bank_p, out.approved, out.lead_p, best, explained, out.bank_reasons, out.lead_reasons, offers
    )


def model_outputs(
    models: ModelSet, frame: FeatureFrame, top_k: int, timer: Timer, model_seconds: dict[str, float] | None = None
) -> ModelOutputs:
    """Every bank's and the lead's probabilities and top ``top_k`` reasons (see the module docstring)."""
    banks = models.banks
    seconds = model_seconds if model_seconds is not None else {}
    inputs: dict[tuple[str, ...], np.ndarray] = {}  # banks with the same features share them
    shared: dict[tuple[str, ...], Any] = {}  # ... and, without the compiled walk, their DMatrix
    explained = []
    with timer("predict"):
        walked = frame.matrix.astype(np.float32) if compiled() else frame.matrix  # as a DMatrix holds it
        for bank in banks:
            started = time.perf_counter()
            if bank.features not in inputs:
                inputs[bank.features] = frame.columns(bank.features)
                if not compiled():
                    shared[bank.features] = feature_matrix(inputs[bank.features])
            explained.append(bank.explain_rows(walked, shared.get(bank.features)))
            seconds[bank.name] = seconds.get(bank.name, 0.0) + time.perf_counter() - started
        started = time.perf_counter()
        lead_x = frame.columns(models.lead.features).astype(np.float64)
        lead_p = models.lead.probability(lead_x)
        seconds["lead"] = seconds.get("lead", 0.0) + time.perf_counter() - started
    with timer("reasons"):
        bank_p = sigmoid(np.column_stack([margin for margin, _ in explained]))
        approved = bank_p >= np.array([b.threshold for b in banks])
        bank_reasons = [
            _reasons(reason_inputs(bank.features), inputs[bank.features], contributions, approved[:, j], top_k)
            for j, (bank, (_, contributions)) in enumerate(zip(banks, explained, strict=True))
        ]
        lead_contributions = models.lead.params.contributions(lead_x)
        lead_up = lead_p >= models.lead.threshold
        lead_reasons = _reasons(reason_inputs(models.lead.features), lead_x, lead_contributions, lead_up, top_k)
    return ModelOutputs(bank_p, approved, lead_p, bank_reasons, lead_reasons)


def _reasons(inputs: ReasonInputs, x: np.ndarray, contributions: np.ndarray, up: np.ndarray, k: int) -> Reasons:
    feature, value = top_reasons(inputs.summed(contributions), up, k)
    missing = inputs.missing(x, feature)
    return Reasons(feature, value.astype(np.float32), missing, up)
