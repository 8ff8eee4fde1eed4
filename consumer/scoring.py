"""Scoring a feature frame: every bank, the lead, the best offer and the reasons behind it.

One ``inplace_predict`` per bank per batch. Reasons come from approximate (Saabas) contributions of the one
bank each result explains: the best offer, or the most likely bank when none approves. Rows are grouped by
that bank, so the cost is one extra tree walk per row, not one per bank.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from models.artifacts import ModelSet
from models.features import FeatureFrame


class Timer(Protocol):
    def __call__(self, stage: str) -> AbstractContextManager[Any]: ...


@dataclass(frozen=True, slots=True)
class Scores:
    """The model outputs of one application, shaped as the score result's fields."""

    lead: dict[str, Any]
    banks: list[dict[str, Any]]
    best_offer: str | None
    reasons: list[dict[str, Any]]


def score_frame(models: ModelSet, frame: FeatureFrame, top_k: int, timer: Timer) -> tuple[list[Scores], dict]:
    """Scores of every row of ``frame`` and the raw probabilities per model (for drift and metrics)."""
    banks = models.banks
    with timer("predict"):
        bank_p = np.column_stack([b.probability(frame.columns(b.features)) for b in banks])
        lead_p = models.lead.probability(frame.columns(models.lead.features).astype(np.float64))
    thresholds = np.array([b.threshold for b in banks])
    approved = bank_p >= thresholds
    has_offer = np.asarray(approved.any(axis=1))
    best = np.where(approved, bank_p, -1.0).argmax(axis=1)
    explained = np.where(has_offer, best, bank_p.argmax(axis=1))
    with timer("reasons"):
        reasons = _reasons(models, frame, explained, top_k)
    lead_version = models.lead.version
    versions = [b.version for b in banks]
    names = [b.name for b in banks]
    bank_p_list, approved_list, lead_list = bank_p.tolist(), approved.tolist(), lead_p.tolist()
    out = []
    for row in range(len(lead_list)):
        p_row, ok_row = bank_p_list[row], approved_list[row]
        out.append(
            Scores(
                lead={
                    "score": round(1000 * lead_list[row]),
                    "probability": lead_list[row],
                    "model_version": lead_version,
                },
                banks=[
                    {"bank": names[j], "probability": p_row[j], "approved": ok_row[j], "model_version": versions[j]}
                    for j in range(len(names))
                ],
                best_offer=names[best[row]] if has_offer[row] else None,
                reasons=reasons[row],
            )
        )
    predictions = {b.name: bank_p[:, j] for j, b in enumerate(banks)}
    predictions["lead"] = lead_p
    return out, predictions


def _reasons(models: ModelSet, frame: FeatureFrame, explained: np.ndarray, top_k: int) -> list[list[dict]]:
    reasons: list[list[dict]] = [[] for _ in range(len(explained))]
    if top_k == 0:
        return reasons
    for j, bank in enumerate(models.banks):
        rows = np.flatnonzero(explained == j)
        if rows.size == 0:
            continue
        contribs = bank.contributions(frame.columns(bank.features)[rows])
        top = np.argsort(-np.abs(contribs), axis=1)[:, :top_k]
        values = np.take_along_axis(contribs, top, axis=1).tolist()
        for r, feats, vals in zip(rows.tolist(), top.tolist(), values, strict=True):
            reasons[r] = [{"feature": bank.features[f], "contribution": v} for f, v in zip(feats, vals, strict=True)]
    return reasons
