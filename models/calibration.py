"""From a model's margin to a probability: the logistic function and Platt calibration, for training and serving.

Training fits a bank's calibration ``(a, b)`` on out-of-fold margins (``fit_platt``) and stores it in the
manifest; serving, the training's threshold search and its holdout evaluation all apply it with
``calibrated``, so the probabilities training measured are the ones the scorer publishes.
"""

from __future__ import annotations

import numpy as np


def sigmoid(log_odds: np.ndarray) -> np.ndarray:
    """The logistic function, element-wise."""
    return 1.0 / (1.0 + np.exp(-log_odds))


def calibrated(margin: np.ndarray, calibration: tuple[float, float]) -> np.ndarray:
    """Calibrated log-odds ``a * margin + b``, computed in float64 (XGBoost gives float32 margins)."""
    a, b = calibration
    return a * np.asarray(margin, dtype=np.float64) + b


def fit_platt(margin: np.ndarray, y: np.ndarray, weight: np.ndarray | None = None) -> tuple[float, float]:
    """The Platt calibration ``(a, b)`` of ``margin`` against 0/1 labels ``y`` (an unregularised logistic fit),
    each row weighted by ``weight`` when given."""
    from sklearn.linear_model import LogisticRegression

    clf = LogisticRegression(C=1e6, max_iter=1000).fit(margin.reshape(-1, 1), y, sample_weight=weight)
    return float(clf.coef_[0, 0]), float(clf.intercept_[0])
