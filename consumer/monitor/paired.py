"""Champion and challenger on the same outcomes: the paired comparison that decides whether a challenger wins.

The monitor joins a challenger's scores like a second model (``<model>:challenger``, see ``join``), so every
outcome of a shadowed application has two rows: the champion's and the challenger's, under one outcome id.
``paired_rows`` reads the challenger's latest rows and the champion's rows of the same outcomes; ``compare``
computes both realised AUCs, their difference with DeLong's variance for two correlated AUCs (DeLong, DeLong
and Clarke-Pearson 1988: the same positives and negatives under both models), both Brier scores, and the verdict.

**Winning** (``Paired.wins``): at least ``min_outcomes`` paired outcomes with both classes, the one-sided 95%
lower bound of AUC(challenger) - AUC(champion) above zero, and the challenger's Brier score no higher than
the champion's. ``crm-scorer models promote`` reads the verdict from the monitor's metrics.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from consumer.monitor.quality import auc
from consumer.monitor.store import partition_prefix
from consumer.monitor.windows import Reader

CHALLENGER = ":challenger"  # a challenger's rows are those of the model named <model>:challenger
Z_95 = 1.6448536269514722  # one-sided 95%


@dataclass(frozen=True)
class Paired:
    """The paired figures of one model's champion and challenger."""

    outcomes: int
    champion_auc: float
    challenger_auc: float
    auc_difference: float  # challenger minus champion
    lower_bound: float  # one-sided 95% lower bound of the difference (DeLong)
    champion_brier: float
    challenger_brier: float
    wins: bool


def challenger_of(model: str) -> str:
    return model + CHALLENGER


def paired_rows(
    store: Reader, partitions: Iterable[int], model: str, count: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(champion p, challenger p, outcome) of the challenger's latest ``count`` rows whose champion row is kept."""
    pairs: list[tuple[int, float, float, float]] = []
    for partition in partitions:
        prefix = partition_prefix(partition)
        start = prefix + f"row/{challenger_of(model)}/".encode()
        for taken, (_, value) in enumerate(store.scan_back(start, start + b"\xff")):
            if taken >= count:
                break
            row = json.loads(value)
            champion_key = store.get(prefix + f"rid/{row['outcome_id']}".encode())
            champion = store.get(champion_key) if champion_key is not None else None
            if champion is not None:
                p = float(json.loads(champion)["probability"])
                pairs.append((row["scored_at"], p, float(row["probability"]), float(row["positive"])))
    pairs.sort()
    chosen = np.array(pairs[-count:], dtype=np.float64).reshape(-1, 4)
    return chosen[:, 1], chosen[:, 2], chosen[:, 3]


def compare(champion: np.ndarray, challenger: np.ndarray, y: np.ndarray, min_outcomes: int) -> Paired:
    """The paired figures and the verdict (see the module docstring)."""
    a, b = auc(champion, y), auc(challenger, y)
    difference, sd = b - a, delong_sd(champion, challenger, y)
    lower = difference - Z_95 * sd if not math.isnan(sd) else float("nan")
    brier_a = float(np.mean((champion - y) ** 2)) if y.size else float("nan")
    brier_b = float(np.mean((challenger - y) ** 2)) if y.size else float("nan")
    wins = bool(y.size >= min_outcomes and lower > 0 and brier_b <= brier_a)
    return Paired(int(y.size), a, b, difference, lower, brier_a, brier_b, wins)


def delong_sd(p: np.ndarray, q: np.ndarray, y: np.ndarray) -> float:
    """Standard deviation of AUC(q) - AUC(p) on the same outcomes ``y`` (DeLong); NaN with one class."""
    positive, negative = y == 1, y != 1
    m, n = int(positive.sum()), int(negative.sum())
    if m < 2 or n < 2:
        return float("nan")
    v10 = np.column_stack([_placements(s[positive], s[negative]) for s in (p, q)])  # per positive
    v01 = np.column_stack([1.0 - _placements(s[negative], s[positive]) for s in (p, q)])  # per negative
    s10, s01 = np.cov(v10, rowvar=False), np.cov(v01, rowvar=False)
    contrast = np.array([-1.0, 1.0])
    variance = float(contrast @ s10 @ contrast / m + contrast @ s01 @ contrast / n)
    return math.sqrt(max(variance, 0.0))


def _placements(of: np.ndarray, among: np.ndarray) -> np.ndarray:
    """For each value of ``of``: the share of ``among`` below it, ties counting half."""
    ordered = np.sort(among)
    below = np.searchsorted(ordered, of, side="left")
    not_above = np.searchsorted(ordered, of, side="right")
    return (below + not_above) / (2.0 * ordered.size)
