"""Reference profiles for drift: how the holdout set was distributed, bin by bin.

Numeric inputs keep decile edges plus a missing bin; categorical inputs keep their top categories plus
``other`` and ``missing``; each model keeps the decile edges of its score. ``bin_index`` puts a whole batch
column into those bins with one vectorised call, so the scorer can count a batch at the cost of a few numpy ops.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from models.features import BANK_FEATURES, CODED_FIELDS, FEATURE_INDEX, ONE_HOT_FIELDS, FeatureFrame, slug

NUMERIC_INPUTS: tuple[str, ...] = tuple(
    name
    for name in (*BANK_FEATURES, "log_time_on_site", "log_total_visits", "page_views_per_visit")
    if name not in {c[0] for c in CODED_FIELDS}
)
CODED_INPUTS: tuple[str, ...] = tuple(c[0] for c in CODED_FIELDS)
ONE_HOT_INPUTS: dict[str, tuple[str, ...]] = {name: values for name, values in ONE_HOT_FIELDS}
TOP_CATEGORIES = 10


@dataclass(frozen=True)
class BinProfile:
    """Bins of one input (or one model's score) and the reference share of each; the last bin is missing."""

    name: str
    kind: str  # "numeric" | "categorical"
    edges: tuple[float, ...]  # numeric: interior edges; categorical: the category codes kept
    expected: tuple[float, ...]  # len = bins + 1 (missing); categorical: codes + other + missing

    @property
    def bins(self) -> int:
        return len(self.expected)

    def bin_index(self, values: np.ndarray) -> np.ndarray:
        """The bin of every value (NaN -> the missing bin)."""
        missing = np.isnan(values)
        if self.kind == "numeric":
            idx = np.searchsorted(np.asarray(self.edges), values, side="right")
        else:
            codes = np.asarray(self.edges)
            match = values[:, None] == codes[None, :]
            idx = np.where(match.any(axis=1), match.argmax(axis=1), len(codes))  # not kept -> "other"
        return np.where(missing, self.bins - 1, idx)

    def counts(self, values: np.ndarray) -> np.ndarray:
        return np.bincount(self.bin_index(values), minlength=self.bins)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "kind": self.kind, "edges": list(self.edges), "expected": list(self.expected)}

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> BinProfile:
        return cls(raw["name"], raw["kind"], tuple(raw["edges"]), tuple(raw["expected"]))


def input_column(frame: FeatureFrame, name: str) -> np.ndarray:
    """The input ``name`` of a batch as one column: numeric, a category code, or a one-hot group's code."""
    if name in ONE_HOT_INPUTS:
        values = ONE_HOT_INPUTS[name]
        first = FEATURE_INDEX[f"{name}_{slug(values[0])}"]
        block = frame.matrix[:, first : first + len(values)]
        return np.where(block.any(axis=1), block.argmax(axis=1), np.nan)
    return frame.column(name).astype(np.float64)


def numeric_profile(name: str, values: np.ndarray) -> BinProfile:
    present = values[~np.isnan(values)]
    edges = tuple(np.unique(np.quantile(present, np.linspace(0.1, 0.9, 9))).tolist()) if present.size else ()
    return _with_expected(BinProfile(name, "numeric", edges, ()), values)


def categorical_profile(name: str, values: np.ndarray) -> BinProfile:
    present = values[~np.isnan(values)]
    codes, counts = np.unique(present, return_counts=True)
    top = tuple(sorted(codes[np.argsort(-counts, kind="stable")][:TOP_CATEGORIES].tolist()))
    return _with_expected(BinProfile(name, "categorical", top, ()), values)


def _with_expected(profile: BinProfile, values: np.ndarray) -> BinProfile:
    bins = len(profile.edges) + 2  # numeric: edges+1 bins; categorical: codes + other; both + missing
    shell = BinProfile(profile.name, profile.kind, profile.edges, (0.0,) * bins)
    counts = shell.counts(values)
    return BinProfile(profile.name, profile.kind, profile.edges, tuple((counts / max(1, counts.sum())).tolist()))


def input_profiles(frame: FeatureFrame) -> list[BinProfile]:
    """The reference profile of every drift-monitored input, from a (holdout) feature frame."""
    profiles = [numeric_profile(n, input_column(frame, n)) for n in NUMERIC_INPUTS]
    profiles += [categorical_profile(n, input_column(frame, n)) for n in (*CODED_INPUTS, *ONE_HOT_INPUTS)]
    return profiles


def psi(expected: np.ndarray, actual_counts: np.ndarray, floor: float = 1e-4) -> float:
    """Population stability index of observed bin counts against expected shares (empty bins floored)."""
    total = actual_counts.sum()
    if total == 0:
        return float("nan")
    e = np.maximum(np.asarray(expected, dtype=np.float64), floor)
    a = np.maximum(actual_counts / total, floor)
    return float(np.sum((a - e) * np.log(a / e)))
