"""Vectorised draws the world is built from: categories from share tables, ordinals from a latent, gaps.

Every function takes the caller's ``numpy.random.Generator``; nothing here touches global random state.
"""

from __future__ import annotations

from collections.abc import Sequence
from statistics import NormalDist

import numpy as np

Shares = Sequence[float]


def normalised(shares: Shares) -> np.ndarray:
    """The shares as probabilities summing to one."""
    p = np.asarray(shares, dtype=np.float64)
    return p / p.sum()


def categorical(rng: np.random.Generator, n: int, shares: Shares) -> np.ndarray:
    """``n`` category codes (0-based) drawn with the given shares."""
    cum = np.cumsum(normalised(shares))
    return np.minimum(np.searchsorted(cum, rng.random(n), side="right"), len(cum) - 1)


def categorical_by_group(rng: np.random.Generator, group: np.ndarray, table: Sequence[Shares]) -> np.ndarray:
    """One category code per row, drawn from ``table[group[row]]`` (a share row per group)."""
    cum = np.cumsum(np.stack([normalised(row) for row in table]), axis=1)
    u = rng.random(len(group))
    codes = (u[:, None] >= cum[group]).sum(axis=1)
    return np.minimum(codes, cum.shape[1] - 1)


def ordinal(latent: np.ndarray, shares: Shares) -> np.ndarray:
    """Cut a standard-normal ``latent`` into ordered categories with the given marginal shares."""
    cum = np.cumsum(normalised(shares))[:-1]
    cuts = np.array([NormalDist().inv_cdf(min(max(c, 1e-12), 1 - 1e-12)) for c in cum])
    return np.searchsorted(cuts, latent, side="right")


def negative_binomial(rng: np.random.Generator, mean: np.ndarray, dispersion: float) -> np.ndarray:
    """Over-dispersed counts (gamma-Poisson mixture) with the given means; variance = mean + mean^2/dispersion."""
    rate = rng.gamma(dispersion, np.asarray(mean, dtype=np.float64) / dispersion)
    return rng.poisson(rate).astype(np.float64)


def blank_out(rng: np.random.Generator, column: np.ndarray, rate: float | np.ndarray) -> np.ndarray:
    """A copy of ``column`` with a ``rate`` share of rows set missing (NaN for numbers, None for text)."""
    out = column.copy()
    hit = rng.random(len(column)) < rate
    out[hit] = None if out.dtype == object else np.nan
    return out


def labels(codes: np.ndarray, vocabulary: Sequence[str]) -> np.ndarray:
    """Category codes as an object array of the vocabulary's strings."""
    return np.asarray(vocabulary, dtype=object)[codes]


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))
