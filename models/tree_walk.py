"""Every tree of a bank walked in compiled code: the margin and Saabas contributions of a batch in one call.

``LeafTable`` turns a row's leaves into its margin and contributions; XGBoost's ``pred_leaf`` names those leaves,
but each call builds a DMatrix, serialises a JSON configuration and allocates a (rows, trees) array, about a
quarter of a millisecond per bank before the first row: what makes small batches expensive. ``TreeWalker`` holds
the same trees as flat arrays (split feature as a column of the batch's feature matrix, threshold, children,
default direction) and one numba-compiled loop walks every row through every tree and adds the leaf's row of the
table as it lands, so a bank costs one call with no per-batch setup.

Bit for bit what XGBoost and ``LeafTable`` give: a feature value is rounded to float32 as a DMatrix stores it
(once per batch, for every bank),
a split sends ``value < threshold`` left and a missing (NaN) value the tree's default way, and a row's sum
starts from the base margin and adds the leaves' rows in tree order in float32, the order of the sparse product
(``tests/unit/test_tree_walk.py`` compares leaves, margins and contributions with both on the committed models).

numba compiles the loop once per process (cached on disk where the package directory is writable). Where numba
does not import, ``compiled()`` is False and the banks take the ``pred_leaf`` path: same results, slower.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from models.leaf_table import LeafTable

try:
    import numba
except ImportError:  # pragma: no cover - numba ships wheels for every platform the image targets
    numba = None


def compiled() -> bool:
    """Whether the compiled walk is available (else banks fall back to XGBoost's ``pred_leaf``)."""
    return numba is not None


_BLOCK = 16  # rows walked side by side through one tree: their independent loads overlap


def _walk_and_sum(
    x: np.ndarray,
    columns: np.ndarray,
    thresholds: np.ndarray,
    left: np.ndarray,
    right: np.ndarray,
    default_left: np.ndarray,
    roots: np.ndarray,
    depths: np.ndarray,
    table: np.ndarray,
    credit_start: np.ndarray,
    credit_column: np.ndarray,
    credit_value: np.ndarray,
    out: np.ndarray,
) -> None:
    """For each row of ``x``: ``out[row] = table[base] + sum over trees of table[leaf]`` in float32, in tree order.

    A leaf is its own child, so every row takes its tree's depth in steps, with no test for having arrived; a
    block of rows takes each step together (one row's step does not wait for another's loads). A leaf's row of
    the table is zero but for the few features split on its path (``credit_*``, CSR) and its value (the last
    column): only those are added. Adding +0.0 never changes a float32 sum that is not -0.0, and a sum starting
    at +0.0 never becomes -0.0, so the result is the full row's sum, bit for bit.
    """
    rows, trees, width = x.shape[0], roots.shape[0], table.shape[1]
    base = table.shape[0] - 1
    last = np.uint64(width - 1)
    nodes = np.empty(_BLOCK, dtype=np.uint64)  # unsigned indices: no negative-index wraparound per load
    acc = np.empty((_BLOCK, width), dtype=np.float32)
    for start in range(0, rows, _BLOCK):
        block = min(_BLOCK, rows - start)
        for i in range(block):
            for j in range(width):
                acc[i, j] = np.float32(0.0) + table[base, j]
        for tree in range(trees):
            root = np.uint64(roots[tree])
            for i in range(block):
                nodes[i] = root
            for _ in range(depths[tree]):
                for i in range(block):
                    node = nodes[i]
                    value = x[start + i, columns[node]]
                    # branch-free: left when below the threshold, or missing with the default left
                    go_left = np.uint64(value < thresholds[node]) | (np.uint64(value != value) & default_left[node])
                    right_child = right[node]
                    nodes[i] = right_child - go_left * (right_child - left[node])
            for i in range(block):
                leaf = nodes[i]
                acc[i, last] += table[leaf, last]
                for k in range(credit_start[leaf], credit_start[leaf + np.uint64(1)]):
                    acc[i, credit_column[k]] += credit_value[k]
        for i in range(block):
            for j in range(width):
                out[start + i, j] = acc[i, j]


if numba is not None:
    try:
        _walk_and_sum = numba.njit(cache=True, nogil=True, boundscheck=False)(_walk_and_sum)
    except RuntimeError:  # no writable cache directory (a read-only image): compiled in memory at every start
        _walk_and_sum = numba.njit(cache=False, nogil=True, boundscheck=False)(_walk_and_sum)


@dataclass(frozen=True)
class TreeWalker:
    """One bank's trees as flat arrays indexed like ``LeafTable.table``'s rows (node ids offset per tree)."""

    columns: np.ndarray  # (nodes,) uint64: the split's column in the batch's feature matrix
    thresholds: np.ndarray  # (nodes,) float32
    left: np.ndarray  # (nodes,) uint64 global node id; a leaf is its own child
    right: np.ndarray  # (nodes,) uint64
    default_left: np.ndarray  # (nodes,) uint64: 1 where a missing value goes left
    roots: np.ndarray  # (trees,) uint64: each tree's root (its offset)
    depths: np.ndarray  # (trees,) int64: the longest path from the root to a leaf
    credit_start: np.ndarray  # (nodes + 1,) uint64: node n's non-zero contributions are [start[n], start[n + 1])
    credit_column: np.ndarray  # uint64: their columns of the table
    credit_value: np.ndarray  # float32: their values (the table's own)
    table: LeafTable

    @classmethod
    def of(cls, booster: Any, table: LeafTable, columns: Sequence[int]) -> TreeWalker:
        """The walker of an ``xgboost.Booster`` whose feature ``i`` is column ``columns[i]`` of the matrices it
        will walk (``table`` is the booster's ``LeafTable``)."""
        model = json.loads(booster.save_raw(raw_format="json"))["learner"]
        trees = model["gradient_booster"]["model"]["trees"]
        column_of = np.asarray(columns, dtype=np.int64)
        keys = ("columns", "thresholds", "left", "right", "default")
        parts: dict[str, list[np.ndarray]] = {k: [] for k in keys}
        depths = []
        for tree, offset in zip(trees, table.offsets.tolist(), strict=True):
            left = np.asarray(tree["left_children"], dtype=np.int64)
            right = np.asarray(tree["right_children"], dtype=np.int64)
            leaf = left == -1
            own = np.arange(len(left), dtype=np.int64) + offset
            parts["columns"].append(np.where(leaf, 0, column_of[np.asarray(tree["split_indices"], dtype=np.int64)]))
            parts["thresholds"].append(np.asarray(tree["split_conditions"], dtype=np.float32))
            parts["left"].append(np.where(leaf, own, left + offset))
            parts["right"].append(np.where(leaf, own, right + offset))
            parts["default"].append(np.asarray(tree["default_left"], dtype=np.int64))
            depths.append(_depth(left.tolist(), right.tolist()))
        joined = {k: np.concatenate(v) for k, v in parts.items()}
        index = {k: joined[k].astype(np.uint64) for k in ("columns", "left", "right", "default")}
        credits = table.table[:-1, :-1]  # every node's feature contributions (the base row and the values apart)
        nodes, columns_nz = np.nonzero(credits)  # row-major: each node's columns in order
        start = np.zeros(len(credits) + 1, dtype=np.int64)
        np.cumsum(np.bincount(nodes, minlength=len(credits)), out=start[1:])
        return cls(
            index["columns"],
            joined["thresholds"],
            index["left"],
            index["right"],
            index["default"],
            table.offsets.astype(np.uint64),
            np.asarray(depths, dtype=np.int64),
            start.astype(np.uint64),
            columns_nz.astype(np.uint64),
            credits[nodes, columns_nz],
            table,
        )

    @property
    def inner(self) -> np.ndarray:
        """(nodes,) bool: a split, not a leaf (a leaf is its own child)."""
        return self.left != np.arange(len(self.left), dtype=np.uint64)

    def margin_and_contributions(self, matrix: np.ndarray) -> np.ndarray:
        """``LeafTable.margin_and_contributions`` of the leaves ``matrix``'s rows land in (``matrix``: the batch's
        whole feature matrix; float64 is rounded to float32 here, as a DMatrix stores it: pass the float32
        matrix once for every bank): (rows, features + 1) float32."""
        out = np.empty((matrix.shape[0], self.table.table.shape[1]), dtype=np.float32)
        matrix = np.ascontiguousarray(matrix, dtype=np.float32)
        _walk_and_sum(
            matrix,
            self.columns,
            self.thresholds,
            self.left,
            self.right,
            self.default_left,
            self.roots,
            self.depths,
            self.table.table,
            self.credit_start,
            self.credit_column,
            self.credit_value,
            out,
        )
        return out


def _depth(left: list[int], right: list[int]) -> int:
    """The number of splits on a tree's longest root-to-leaf path."""
    deepest, stack = 0, [(0, 0)]
    while stack:
        node, depth = stack.pop()
        if left[node] == -1:
            deepest = max(deepest, depth)
        else:
            stack += [(left[node], depth + 1), (right[node], depth + 1)]
    return deepest
