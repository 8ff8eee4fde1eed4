"""A tree ensemble's margin and approximate (Saabas) contributions from the leaves a row lands in.

Saabas' attribution walks a row from a tree's root to its leaf and credits each split's feature with the change
in the node's mean value (the cover-weighted mean of the leaves below it). The path is fixed by the leaf, so each
leaf carries one vector: the credit of every feature along its path, plus the leaf's value. For a batch, one
``pred_leaf`` pass per model names each row's leaf in every tree, and one sparse product (a row's leaves as a
0/1 row of a sparse matrix times the table of leaf vectors) sums them: the margin and every contribution.

That is XGBoost's ``pred_contribs=True, approx_contribs=True`` (``CalculateContributionsApprox``) computed
once per leaf instead of once per row, and the margin is XGBoost's own to the last bit: a row's sum starts from
the base margin and adds the trees' leaf values in tree order in float32, as XGBoost's predictor does
(``tests/unit/test_reasons.py`` checks both on the committed models).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

# The objectives whose margin is the log-odds of base_score (and those whose margin is base_score itself).
_LOGIT_OBJECTIVES = ("binary:logistic", "binary:logitraw", "reg:logistic")
_IDENTITY_OBJECTIVES = ("reg:squarederror",)


@dataclass(frozen=True)
class LeafTable:
    """Per node of every tree: the Saabas contribution of each feature on the path to it, and its value."""

    offsets: np.ndarray  # (trees,) int32: the first row of each tree's nodes in ``table``
    table: np.ndarray  # (nodes + 1, features + 1) float32: contributions, then the leaf value; last row: base
    trees: int

    @property
    def features(self) -> int:
        return int(self.table.shape[1] - 1)

    @classmethod
    def of(cls, booster: Any) -> LeafTable:
        """The table of an ``xgboost.Booster`` (read from its JSON model, full float32 precision).

        Raises:
            ValueError: the objective is not one whose base margin this module knows, or a tree is not
                a plain numeric tree (categorical splits, vector leaves).
        """
        model = json.loads(booster.save_raw(raw_format="json"))["learner"]
        features = int(model["learner_model_param"]["num_feature"])
        trees = model["gradient_booster"]["model"]["trees"]
        base = _base_margin(model)
        sizes = [len(t["left_children"]) for t in trees]
        offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int32)
        table = np.zeros((sum(sizes) + 1, features + 1), dtype=np.float32)
        for tree, start in zip(trees, offsets.tolist(), strict=True):
            table[start : start + len(tree["left_children"])] = _tree_vectors(tree, features)
        table[-1, features] = base
        return cls(offsets, table, len(trees))

    def margin_and_contributions(self, leaves: np.ndarray) -> np.ndarray:
        """For ``pred_leaf`` output ``leaves`` (rows, trees): (rows, features + 1) float32, the features'
        contributions and, in the last column, the margin (base + every tree's leaf value, XGBoost's sum)."""
        from scipy.sparse import csr_matrix

        leaves = leaves.reshape(len(leaves), self.trees)  # XGBoost gives a one-tree model's leaves as a vector
        rows = leaves.shape[0]
        width = self.trees + 1
        index = np.empty((rows, width), dtype=np.int32)
        index[:, 0] = self.table.shape[0] - 1  # the base first: XGBoost's sum starts from the base margin
        np.add(leaves, self.offsets, out=index[:, 1:], casting="unsafe")
        ones = np.ones(rows * width, dtype=np.float32)
        pointers = np.arange(0, rows * width + 1, width, dtype=np.int32)
        picked = csr_matrix((ones, index.ravel(), pointers), shape=(rows, self.table.shape[0]))
        # scipy sums each row's entries in order, in float32: base, tree 0, tree 1, ... as XGBoost does
        return np.asarray(picked @ self.table)


def _base_margin(model: dict[str, Any]) -> np.float32:
    objective = model["objective"]["name"]
    base = np.float32(float(model["learner_model_param"]["base_score"].strip("[]")))
    if objective in _IDENTITY_OBJECTIVES:
        return base
    if objective not in _LOGIT_OBJECTIVES:
        raise ValueError(f"objective {objective!r}: only {_LOGIT_OBJECTIVES + _IDENTITY_OBJECTIVES} are explained")
    # XGBoost computes -logf(1/base - 1) in float32; glibc's logf is correctly rounded, numpy's float32 log is not
    # always (one ulp off for some bases): the log is taken in double and rounded once, which is logf's answer.
    odds = np.float32(np.float32(1.0) / base) - np.float32(1.0)
    return np.float32(-math.log(float(odds)))


def _tree_vectors(tree: dict[str, Any], features: int) -> np.ndarray:
    """(nodes, features + 1): each node's path contributions (only leaves are ever gathered) and its value."""
    left, right = tree["left_children"], tree["right_children"]
    split, value = tree["split_indices"], np.asarray(tree["split_conditions"], dtype=np.float32)
    if tree.get("categories_nodes") or int(tree["tree_param"].get("size_leaf_vector", "1")) > 1:
        raise ValueError("categorical splits and vector leaves are not explained")
    hess = np.asarray(tree["sum_hessian"], dtype=np.float32)
    mean = _node_means(left, right, value, hess)
    out = np.zeros((len(left), features + 1), dtype=np.float64)
    stack = [0]
    while stack:
        node = stack.pop()
        if left[node] == -1:
            out[node, features] = value[node]
            continue
        for child in (left[node], right[node]):
            out[child, :features] = out[node, :features]
            out[child, split[node]] += float(mean[child]) - float(mean[node])
            stack.append(child)
    return out.astype(np.float32)


def _node_means(left: list[int], right: list[int], value: np.ndarray, hess: np.ndarray) -> np.ndarray:
    """Each node's cover-weighted mean leaf value, in float32 as XGBoost's ``FillNodeMeanValues``."""
    mean = np.zeros(len(left), dtype=np.float32)
    order: list[int] = []
    stack = [0]
    while stack:  # parents before children; filled in reverse, so children come first
        node = stack.pop()
        order.append(node)
        if left[node] != -1:
            stack += (left[node], right[node])
    for node in reversed(order):
        if left[node] == -1:
            mean[node] = value[node]
        else:
            a, b = left[node], right[node]
            mean[node] = np.float32(mean[a] * hess[a] + mean[b] * hess[b]) / hess[node]
    return mean
