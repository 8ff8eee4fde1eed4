"""Realised quality of one model over a window of joined outcomes, and what its predictions alone expect.

Pure numpy: probabilities ``p`` and labels ``y`` (0/1) in, a ``Quality`` out. The expected figures follow
the idea of NannyML's CBPE (confidence-based performance estimation): if the model is calibrated, each label
is a Bernoulli draw of its own probability, so the expected AUC, Brier score and positive rate follow from
``p`` alone. A realised figure drifting away from its expectation is concept drift: the inputs may look the
same, the relation between them and the outcome changed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

_EPS = 1e-12


@dataclass(frozen=True)
class Quality:
    """One model's figures over one window (NaN where a figure is undefined, e.g. AUC with one class)."""

    outcomes: int
    auc: float
    brier: float
    log_loss: float
    ece: float
    observed_rate: float
    predicted_rate: float
    precision: float
    recall: float
    expected_auc: float
    expected_brier: float


def quality(p: np.ndarray, y: np.ndarray, decided: np.ndarray | None = None, bins: int = 10) -> Quality:
    """Every figure of ``p`` against ``y``; ``decided`` is the model's decision (default ``p >= 0.5``): the
    score's ``approved``, i.e. its threshold, for a bank."""
    p = np.clip(np.asarray(p, dtype=np.float64), 0.0, 1.0)
    y = np.asarray(y, dtype=np.float64)
    if p.size == 0:
        nan = float("nan")
        return Quality(0, nan, nan, nan, nan, nan, nan, nan, nan, nan, nan)
    decided = p >= 0.5 if decided is None else np.asarray(decided, dtype=bool)
    tp = float(np.sum(decided & (y == 1)))
    return Quality(
        outcomes=int(p.size),
        auc=auc(p, y),
        brier=float(np.mean((p - y) ** 2)),
        log_loss=float(-np.mean(y * np.log(np.maximum(p, _EPS)) + (1 - y) * np.log(np.maximum(1 - p, _EPS)))),
        ece=ece(p, y, bins),
        observed_rate=float(np.mean(y)),
        predicted_rate=float(np.mean(p)),
        precision=tp / float(np.sum(decided)) if decided.any() else float("nan"),
        recall=tp / float(np.sum(y)) if y.any() else float("nan"),
        expected_auc=expected_auc(p),
        expected_brier=float(np.mean(p * (1 - p))),
    )


def auc(p: np.ndarray, y: np.ndarray) -> float:
    """Area under the ROC curve (Mann-Whitney with mid-ranks for ties); NaN when ``y`` holds one class."""
    positives = int(np.sum(y == 1))
    negatives = int(y.size - positives)
    if positives == 0 or negatives == 0:
        return float("nan")
    ranks = _mid_ranks(p)
    return float((np.sum(ranks[y == 1]) - positives * (positives + 1) / 2) / (positives * negatives))


def expected_auc(p: np.ndarray) -> float:
    """The AUC a calibrated model expects of itself: sum over pairs i != j of ``p_i (1 - p_j) [p_i > p_j]``
    (ties count half), over the sum of ``p_i (1 - p_j)``. O(n log n) through sorting."""
    p = np.asarray(p, dtype=np.float64)
    if p.size < 2:
        return float("nan")
    order = np.argsort(p, kind="mergesort")
    s = p[order]
    q = 1.0 - s
    # For each i: the negative mass of every j strictly below it, and half of those tied with it (j != i).
    below = np.concatenate(([0.0], np.cumsum(q)[:-1]))
    uniq, start, count = np.unique(s, return_index=True, return_counts=True)
    tie_mass = np.add.reduceat(q, start) if uniq.size else np.zeros(0)
    group = np.repeat(np.arange(uniq.size), count)
    strictly_below = below[start[group]]  # the negative mass of every j below the tie group
    tied_others = tie_mass[group] - q
    numerator = float(np.sum(s * (strictly_below + 0.5 * tied_others)))
    denominator = float(np.sum(p) * np.sum(1.0 - p) - np.sum(p * (1.0 - p)))
    return numerator / denominator if denominator > _EPS else float("nan")


def ece(p: np.ndarray, y: np.ndarray, bins: int = 10) -> float:
    """Expected calibration error: the outcome-weighted mean |observed - predicted| over equal-width bins."""
    index = np.minimum((p * bins).astype(np.intp), bins - 1)
    count = np.bincount(index, minlength=bins).astype(np.float64)
    gap = np.abs(np.bincount(index, weights=y, minlength=bins) - np.bincount(index, weights=p, minlength=bins))
    return float(np.sum(gap) / max(float(np.sum(count)), 1.0))


def _mid_ranks(values: np.ndarray) -> np.ndarray:
    order = np.argsort(values, kind="mergesort")
    ranks = np.empty(values.size, dtype=np.float64)
    ranks[order] = np.arange(1, values.size + 1)
    uniq, inverse, counts = np.unique(values, return_inverse=True, return_counts=True)
    if uniq.size == values.size:
        return ranks
    sums = np.bincount(inverse, weights=ranks)
    return np.asarray(sums[inverse] / counts[inverse])
