"""The lead model: a standard scaler and a logistic regression, kept as plain parameters.

scikit-learn fits it (``fit_lead_model``); serving needs only numpy and a JSON file, so loading a model
executes no code (no pickle). NaN inputs are imputed with the training means, i.e. 0 after scaling.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class LeadParameters:
    features: tuple[str, ...]
    mean: np.ndarray
    scale: np.ndarray
    coef: np.ndarray
    intercept: float

    def margin(self, x: np.ndarray) -> np.ndarray:
        """Log-odds of conversion for rows of ``x`` (columns in ``features`` order), the same for a row whatever
        batch it is in.

        The margin is summed row by row (numpy's per-row reduction) instead of ``z @ coef``: BLAS blocks a
        matrix product differently for different row counts, which changed the last bits of a lead's score
        with the size of the batch it landed in.
        """
        z = (x - self.mean) / self.scale
        z[np.isnan(z)] = 0.0
        return (z * self.coef).sum(axis=1) + self.intercept

    def contributions(self, x: np.ndarray) -> np.ndarray:
        """Exact per-feature contributions to the log-odds (relative to the average lead)."""
        z = (x - self.mean) / self.scale
        z[np.isnan(z)] = 0.0
        return z * self.coef

    def to_json(self) -> str:
        return json.dumps(
            {
                "kind": "standard_scaler+logistic_regression",
                "features": list(self.features),
                "mean": self.mean.tolist(),
                "scale": self.scale.tolist(),
                "coef": self.coef.tolist(),
                "intercept": self.intercept,
            },
            indent=1,
        )

    @classmethod
    def from_file(cls, path: Path) -> LeadParameters:
        raw = json.loads(path.read_text())
        return cls(
            features=tuple(raw["features"]),
            mean=np.asarray(raw["mean"], dtype=np.float64),
            scale=np.asarray(raw["scale"], dtype=np.float64),
            coef=np.asarray(raw["coef"], dtype=np.float64),
            intercept=float(raw["intercept"]),
        )


def fit_lead_model(x: np.ndarray, y: np.ndarray, features: tuple[str, ...], c: float = 1.0) -> LeadParameters:
    """Fit scaler + logistic regression with scikit-learn and keep their parameters."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    scaler = StandardScaler().fit(x)
    mean = np.asarray(scaler.mean_, dtype=np.float64)
    scale = np.where(scaler.scale_ > 0, scaler.scale_, 1.0)
    z = np.nan_to_num((x - mean) / scale, nan=0.0)
    clf = LogisticRegression(C=c, max_iter=2000).fit(z, y)
    return LeadParameters(features, mean, scale, clf.coef_[0].astype(np.float64), float(clf.intercept_[0]))
