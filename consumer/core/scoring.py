"""Scoring a feature frame: every bank, the lead, the best offer and the reasons behind it.

One ``inplace_predict`` per bank per batch. Reasons come from approximate (Saabas) contributions of the one
bank each result explains: the best offer, or the most likely bank when none approves. Rows are grouped by
that bank, so the cost is one extra tree walk per row, not one per bank. Everything stays column-wise
(``ScoreColumns``), and ``consumer.core.result_writer`` turns the columns into result bytes.
"""

from __future__ import annotations

import time
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from models.artifacts import ModelSet
from models.features import FeatureFrame


class Timer(Protocol):
    def __call__(self, stage: str) -> AbstractContextManager[Any]: ...


@dataclass
class ScoreColumns:
    """A batch's model outputs, one row per scored application."""

    bank_p: np.ndarray  # (rows, banks) approval probabilities
    approved: np.ndarray  # (rows, banks) probability >= the bank's threshold
    lead_p: np.ndarray  # (rows,)
    best: np.ndarray  # (rows,) best offer's bank index, -1 when no bank approves
    explained: np.ndarray  # (rows,) the bank the reasons explain
    reason_features: np.ndarray  # (rows, reasons) feature index within the explained bank's features
    reason_values: np.ndarray  # (rows, reasons) float32 contributions to its calibrated log-odds

    def predictions(self, models: ModelSet) -> dict[str, np.ndarray]:
        """Probabilities per model name (for drift and metrics)."""
        out = {b.name: self.bank_p[:, j] for j, b in enumerate(models.banks)}
        out["lead"] = self.lead_p
        return out


def score_columns(
    models: ModelSet, frame: FeatureFrame, top_k: int, timer: Timer, model_seconds: dict[str, float] | None = None
) -> ScoreColumns:
    """Every model on every row of ``frame``; ``model_seconds`` (if given) receives each model's predict time."""
    banks = models.banks
    seconds = model_seconds if model_seconds is not None else {}
    with timer("predict"):
        columns = []
        for bank in banks:
            started = time.perf_counter()
            columns.append(bank.probability(frame.columns(bank.features)))
            seconds[bank.name] = seconds.get(bank.name, 0.0) + time.perf_counter() - started
        started = time.perf_counter()
        lead_p = models.lead.probability(frame.columns(models.lead.features).astype(np.float64))
        seconds["lead"] = seconds.get("lead", 0.0) + time.perf_counter() - started
        bank_p = np.column_stack(columns)
    thresholds = np.array([b.threshold for b in banks])
    approved = bank_p >= thresholds
    has_offer = approved.any(axis=1)
    best = np.where(approved, bank_p, -1.0).argmax(axis=1)
    explained = np.where(has_offer, best, bank_p.argmax(axis=1))
    with timer("reasons"):
        features, values = _reasons(models, frame, explained, top_k)
    return ScoreColumns(bank_p, approved, lead_p, np.where(has_offer, best, -1), explained, features, values)


def _reasons(models: ModelSet, frame: FeatureFrame, explained: np.ndarray, top_k: int) -> tuple[np.ndarray, ...]:
    """Top ``top_k`` contributions by magnitude of each row's explained bank: (feature indices, values)."""
    n = len(explained)
    k = min(top_k, max(len(b.features) for b in models.banks))
    features = np.full((n, k), -1, dtype=np.intp)  # -1: no reason (a bank with fewer features than ``top_k``)
    values = np.zeros((n, k), dtype=np.float32)
    if k == 0:
        return features, values
    for j, bank in enumerate(models.banks):
        rows = np.flatnonzero(explained == j)
        if rows.size == 0:
            continue
        contribs = bank.contributions(frame.columns(bank.features)[rows])
        top = np.argsort(-np.abs(contribs), axis=1)[:, :k]
        features[rows, : top.shape[1]] = top
        values[rows, : top.shape[1]] = np.take_along_axis(contribs, top, axis=1)
    return features, values
