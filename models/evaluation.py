"""Model quality measures: discrimination (AUC, MCC), calibration (Brier, ECE), and the oracle ratio."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from sklearn.metrics import brier_score_loss, matthews_corrcoef, roc_auc_score


def expected_calibration_error(y: np.ndarray, p: np.ndarray, bins: int = 10) -> float:
    """ECE over ``bins`` equal-width probability bins: sum of |mean(y) - mean(p)| weighted by bin share."""
    idx = np.minimum((p * bins).astype(int), bins - 1)
    total = 0.0
    for b in range(bins):
        mask = idx == b
        if mask.any():
            total += mask.mean() * abs(float(y[mask].mean()) - float(p[mask].mean()))
    return total


def best_mcc_threshold(y: np.ndarray, p: np.ndarray) -> float:
    """The decision threshold (on a 0.01 grid) that maximises the Matthews correlation."""
    grid = np.round(np.arange(0.05, 0.951, 0.01), 2)
    scores = [matthews_corrcoef(y, p >= t) for t in grid]
    return float(grid[int(np.argmax(scores))])


@dataclass(frozen=True)
class Quality:
    n: int
    positive_rate: float
    auc: float
    mcc: float
    brier: float
    ece: float
    oracle_auc: float | None
    threshold: float

    @property
    def auc_ratio(self) -> float | None:
        return None if self.oracle_auc is None else self.auc / self.oracle_auc

    def as_dict(self) -> dict[str, float | int | None]:
        return {**asdict(self), "auc_ratio": self.auc_ratio}


def measure(y: np.ndarray, p: np.ndarray, threshold: float, oracle_p: np.ndarray | None = None) -> Quality:
    """Every quality figure of predictions ``p`` for outcomes ``y`` (and the oracle's AUC when known)."""
    return Quality(
        n=len(y),
        positive_rate=float(y.mean()),
        auc=float(roc_auc_score(y, p)),
        mcc=float(matthews_corrcoef(y, p >= threshold)),
        brier=float(brier_score_loss(y, p)),
        ece=expected_calibration_error(y, p),
        oracle_auc=None if oracle_p is None else float(roc_auc_score(y, oracle_p)),
        threshold=threshold,
    )


def quality_table(rows: dict[str, Quality]) -> str:
    """A Markdown table of the measures per model."""
    lines = [
        "| model | n | positive rate | AUC | oracle AUC | AUC / oracle | MCC | threshold | Brier | ECE |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, q in rows.items():
        oracle = "n/a" if q.oracle_auc is None else f"{q.oracle_auc:.4f}"
        ratio = "n/a" if q.auc_ratio is None else f"{q.auc_ratio:.4f}"
        lines.append(
            f"| {name} | {q.n} | {q.positive_rate:.3f} | {q.auc:.4f} | {oracle} | {ratio} | {q.mcc:.4f} "
            f"| {q.threshold:.2f} | {q.brier:.4f} | {q.ece:.4f} |"
        )
    return "\n".join(lines)
