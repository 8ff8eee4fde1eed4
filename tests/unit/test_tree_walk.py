"""The compiled tree walk gives XGBoost's leaves' sums bit for bit (``models.tree_walk``)."""

from __future__ import annotations

import numpy as np
import pytest

from models.artifacts import ModelSet
from models.features import FEATURE_INDEX, FEATURE_NAMES
from models.tree_walk import compiled

pytestmark = pytest.mark.skipif(not compiled(), reason="numba is not installed: the banks use pred_leaf")


def _matrix(rows: int, seed: int, missing: float) -> np.ndarray:
    """Feature rows on the scale of the training data, some missing, some exactly on a split threshold."""
    rng = np.random.default_rng(seed)
    scale = rng.lognormal(3, 2, size=len(FEATURE_NAMES))
    x = rng.normal(size=(rows, len(FEATURE_NAMES))) * scale
    x[rng.random(x.shape) < missing] = np.nan
    return x


def test_walk_equals_pred_leaf_and_the_leaf_table(model_set: ModelSet) -> None:
    matrix = _matrix(3000, 7, 0.15)
    assert len(model_set.banks) == 5
    for bank in model_set.banks:
        x = np.ascontiguousarray(matrix[:, [FEATURE_INDEX[n] for n in bank.features]])
        expected = bank.leaf_table.margin_and_contributions(bank.leaves(x))
        walked = bank.walker.margin_and_contributions(matrix)
        assert walked.dtype == np.float32
        assert np.array_equal(walked.view(np.uint32), expected.view(np.uint32)), bank.name
        margin, _ = bank.explain_rows(matrix)
        assert np.array_equal(margin, bank.margin(x.astype(np.float32))), bank.name


def test_values_on_a_threshold_and_rows_all_missing_go_xgboosts_way(model_set: ModelSet) -> None:
    bank = model_set.banks[0]
    walker = bank.walker
    matrix = np.full((len(walker.columns) + 1, len(FEATURE_NAMES)), np.nan)
    inner = np.flatnonzero(walker.inner)
    for row, node in enumerate(inner):  # row r sits exactly on node r's threshold: it must go right
        matrix[row, walker.columns[node]] = walker.thresholds[node]
    x = np.ascontiguousarray(matrix[:, [FEATURE_INDEX[n] for n in bank.features]])
    expected = bank.leaf_table.margin_and_contributions(bank.leaves(x))
    assert np.array_equal(walker.margin_and_contributions(matrix), expected)


def test_an_empty_batch_walks_to_nothing(model_set: ModelSet) -> None:
    bank = model_set.banks[0]
    assert bank.walker.margin_and_contributions(np.zeros((0, len(FEATURE_NAMES)))).shape == (
        0,
        bank.leaf_table.features + 1,
    )
